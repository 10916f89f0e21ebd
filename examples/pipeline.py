"""Decorators: a workflow with a task, both around Mistral calls.

python examples/pipeline.py && respan-instrument traces --limit 1
"""

from _standin import mistral_client

from respan_auto import Respan, task, workflow
from respan_auto.instrumentation.mistralai import MistralAIInstrumentor

respan = Respan(instrumentations=[MistralAIInstrumentor()])
client = mistral_client()


@task(name="generate_outline")
def outline(topic: str) -> str:
    response = client.chat.complete(
        model="mistral-large-latest",
        messages=[
            {"role": "user", "content": f"Create a brief outline about: {topic}"},
        ],
    )
    return response.choices[0].message.content


@workflow(name="content_pipeline")
def pipeline(topic: str):
    plan = outline(topic)
    response = client.chat.complete(
        model="mistral-large-latest",
        messages=[
            {"role": "user", "content": f"Write content from this outline: {plan}"},
        ],
    )
    print(response.choices[0].message.content)


pipeline("Benefits of API gateways")
respan.flush()
