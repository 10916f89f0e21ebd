"""Load against the loopback Mistral server: every span correct, and memory back where it was.

Heavy, so CI runs it in one session (tests(3) sets RESPAN_LOAD_TESTS=1); set it yourself to run it anywhere.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import user

pytestmark = pytest.mark.skipif(os.environ.get("RESPAN_LOAD_TESTS") != "1", reason="set RESPAN_LOAD_TESTS=1")

MODEL = "mistral-small-latest"


def _check(spans, expected_tags):
    finished = spans.finished()
    assert len(finished) == len(expected_tags)
    tags = []
    for span in finished:
        tag = span.attributes["gen_ai.prompt.0.content"].split()[0]
        assert span.attributes["gen_ai.completion.0.content"].startswith(f"Offline stand-in reply to: {tag}")
        assert span.end_time is not None
        tags.append(tag)
    assert sorted(tags) == sorted(expected_tags)


LIVE_TYPES = (
    "Call",
    "_StreamState",
    "StreamAccumulator",
    "StreamProxy",
    "ClosableStreamProxy",
    "AsyncStreamProxy",
    "ClosableAsyncStreamProxy",
    "Span",
)


def _live() -> dict[str, int]:
    counts: dict[str, int] = {}
    for obj in gc.get_objects():
        name = type(obj).__name__
        if name in LIVE_TYPES and type(obj).__module__.startswith(("respan_auto", "opentelemetry.sdk")):
            counts[name] = counts.get(name, 0) + 1
    return counts


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))


def _rss_added_kib(work) -> int:
    gc.collect()
    rss = _rss_kib()
    work()
    gc.collect()
    return _rss_kib() - rss


@pytest.mark.timeout(600)
def test_32_threads_by_100_calls(client, spans):
    def job(thread: int) -> None:
        for call in range(100):
            tag = f"t{thread}-c{call}"
            if call % 10 == 0:
                list(client.chat.stream(model=MODEL, messages=user(f"{tag} streamed #chunks=3")))
            else:
                client.chat.complete(model=MODEL, messages=user(f"{tag} plain"))

    def run() -> None:
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(job, range(32)))

    job(99)  # warm caches (pydantic models, connections) before measuring
    spans.clear()
    _check_memory_and_spans(run, spans, [f"t{t}-c{c}" for t in range(32) for c in range(100)])


def _check_memory_and_spans(work, spans, tags) -> None:
    rss_kib = _rss_added_kib(work)
    _check(spans, tags)
    finished = len(spans.finished())
    spans.clear()  # the test exporter keeps every span: let them go, then nothing of ours may remain
    gc.collect()
    leftover = {k: v for k, v in _live().items() if v > 0 and k != "Span"}
    assert leftover == {}, leftover
    assert finished == len(tags)
    assert rss_kib < 200 * 1024, rss_kib


@pytest.mark.timeout(600)
def test_1000_concurrent_async_streams(sdk, server, spans, instrument):
    http = importlib.import_module("httpx2" if sdk.generation >= 3 else "httpx")

    async def main() -> list[str]:
        async_client = http.AsyncClient(limits=http.Limits(max_connections=250), timeout=120)
        client = sdk.client(server.url, async_client=async_client)

        async def one(i: int) -> str:
            stream = await client.chat.stream_async(model=MODEL, messages=user(f"s{i} #chunks=4"))
            async with stream as s:
                return "".join([c.data.choices[0].delta.content async for c in s])

        try:
            return await asyncio.gather(*(one(i) for i in range(1000)))
        finally:
            await async_client.aclose()

    replies: list[str] = []

    def run() -> None:
        replies.extend(asyncio.run(main()))
        for span in spans.finished():
            assert span.attributes["respan.stream.chunk_count"] == 4
            assert span.attributes["respan.stream.completed"] is True

    _check_memory_and_spans(run, spans, [f"s{i}" for i in range(1000)])
    assert all(reply.startswith(f"Offline stand-in reply to: s{i} ") for i, reply in enumerate(replies))
