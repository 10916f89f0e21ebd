"""Basic chat, with no tracing code: run it under the launcher and it is traced.

respan-instrument python examples/basic_chat.py
respan-instrument traces
"""

from _standin import mistral_client

client = mistral_client()

response = client.chat.complete(
    model="mistral-large-latest",
    messages=[{"role": "user", "content": "Say hello in three languages."}],
)
print(response.choices[0].message.content)
