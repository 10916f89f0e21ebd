"""Streaming, with no tracing code: run it under the launcher and it is traced.

respan-instrument python examples/streaming.py
"""

from _standin import mistral_client

client = mistral_client()

stream = client.chat.stream(
    model="mistral-large-latest",
    messages=[{"role": "user", "content": "Write a haiku about Python."}],
)
for chunk in stream:
    content = chunk.data.choices[0].delta.content
    if content:
        print(content, end="", flush=True)
print()
