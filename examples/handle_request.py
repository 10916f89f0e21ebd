"""propagate_attributes: per-request customer, thread and metadata on every span.

python examples/handle_request.py && respan-instrument traces --limit 1
"""

from _standin import mistral_client

from respan_auto import Respan, propagate_attributes, workflow
from respan_auto.instrumentation.mistralai import MistralAIInstrumentor

respan = Respan(
    instrumentations=[MistralAIInstrumentor()],
    metadata={"service": "chat-api", "version": "1.0.0"},
)
client = mistral_client()


@workflow(name="handle_request")
def handle_request(user_id: str, question: str):
    with propagate_attributes(
        customer_identifier=user_id,
        thread_identifier="conv_001",
        metadata={"plan": "pro"},  # merged with default metadata
    ):
        response = client.chat.complete(
            model="mistral-large-latest",
            messages=[{"role": "user", "content": question}],
        )
        print(response.choices[0].message.content)


handle_request("user_123", "What does an API gateway do?")
respan.flush()
