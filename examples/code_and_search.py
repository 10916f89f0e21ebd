"""Fill-in-the-middle code completion and embeddings, with no tracing code: run it under the launcher.

respan-instrument python examples/code_and_search.py
respan-instrument traces
"""

from _standin import mistral_client

client = mistral_client()

completion = client.fim.complete(
    model="codestral-latest",
    prompt="def is_even(n):\n    ",
    suffix="\n\nprint(is_even(4))",
)
print(completion.choices[0].message.content)

vectors = client.embeddings.create(model="mistral-embed", inputs=["How do I reset my password?", "Shipping times"])
print(f"{len(vectors.data)} vectors of {len(vectors.data[0].embedding)} dimensions")
