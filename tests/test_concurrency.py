"""Concurrent calls: every span carries its own request and response, never another's."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import user

MODEL = "mistral-small-latest"


def _check_own(spans, count: int) -> None:
    finished = spans.finished()
    assert len(finished) == count
    seen = set()
    for span in finished:
        prompt = span.attributes["gen_ai.prompt.0.content"]
        tag = prompt.split()[0]
        assert tag.startswith("req-")
        # the reply echoes the prompt: a mix-up between calls would show here
        assert f"Offline stand-in reply to: {tag}" in span.attributes["gen_ai.completion.0.content"]
        assert span.attributes["gen_ai.request.temperature"] == int(tag[4:]) / 100
        seen.add(tag)
    assert len(seen) == count


def test_twenty_threads(client, spans):
    def call(i: int) -> str:
        if i % 2:
            chunks = list(client.chat.stream(model=MODEL, messages=user(f"req-{i} streamed"), temperature=i / 100))
            return "".join(c.data.choices[0].delta.content for c in chunks if c.data.choices)
        return (
            client.chat.complete(model=MODEL, messages=user(f"req-{i} plain"), temperature=i / 100)
            .choices[0]
            .message.content
        )

    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = list(pool.map(call, range(20)))
    assert all(reply.startswith(f"Offline stand-in reply to: req-{i} ") for i, reply in enumerate(replies))
    _check_own(spans, 20)


def test_twenty_concurrent_async_streams(new_client, spans):
    async def one(client, i: int) -> str:
        stream = await client.chat.stream_async(
            model=MODEL, messages=user(f"req-{i} async #slow #chunks=3"), temperature=i / 100
        )
        parts = []
        async with stream as s:
            async for chunk in s:
                parts.append(chunk.data.choices[0].delta.content)
        return "".join(parts)

    async def main() -> list[str]:
        client = new_client()
        return await asyncio.gather(*(one(client, i) for i in range(20)))

    replies = asyncio.run(main())
    assert all(reply.startswith(f"Offline stand-in reply to: req-{i} ") for i, reply in enumerate(replies))
    _check_own(spans, 20)
