"""The instrumentor in a pipeline of your own: spans printed to the console at the end.

    python examples/otel_console.py

Run it plainly, not under respan-instrument (which brings its own pipeline).
"""

from _standin import mistral_client
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from respan_auto.instrumentation.mistralai import MistralAIInstrumentor

provider = TracerProvider()
provider.add_span_processor(
    BatchSpanProcessor(ConsoleSpanExporter(formatter=lambda span: f"{span.to_json(indent=2)}\n"))
)
MistralAIInstrumentor().instrument(tracer_provider=provider)

client = mistral_client()
response = client.chat.complete(
    model="mistral-large-latest",
    messages=[{"role": "user", "content": "Say hello in three languages."}],
)
print(response.choices[0].message.content)

stream = client.chat.stream(
    model="mistral-large-latest",
    messages=[{"role": "user", "content": "Write a haiku about Python."}],
)
for chunk in stream:
    content = chunk.data.choices[0].delta.content
    if content:
        print(content, end="", flush=True)
print("\n")
provider.force_flush()
