"""With and without instrumentation the app sees the same results, types and errors."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import user

MODEL = "mistral-small-latest"


def _outcome(fn):
    """What a caller observes: the value's type and content, or the exception's type and text."""
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001
        return ("raised", type(exc), str(exc))
    if isinstance(value, list):
        return ("chunks", [type(v) for v in value], [v.model_dump() for v in value])
    return ("value", type(value), value.model_dump())


SCENARIOS = {
    "complete": lambda c: c.chat.complete(model=MODEL, messages=user("same"), temperature=0.2, n=2),
    "complete-tools": lambda c: c.chat.complete(model=MODEL, messages=user("#tools")),
    "complete-500": lambda c: c.chat.complete(model=MODEL, messages=user("#500")),
    "complete-async": lambda c: asyncio.run(c.chat.complete_async(model=MODEL, messages=user("same"))),
    "stream": lambda c: list(c.chat.stream(model=MODEL, messages=user("same #usage-chunk"))),
    "stream-split-args": lambda c: list(c.chat.stream(model=MODEL, messages=user("#split-args"))),
    "stream-malformed": lambda c: list(c.chat.stream(model=MODEL, messages=user("#malformed"))),
    "stream-async": lambda c: asyncio.run(_adrain(c)),
}


async def _adrain(client):
    stream = await client.chat.stream_async(model=MODEL, messages=user("same"))
    return [chunk async for chunk in stream]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_results_identical_with_and_without(scenario, new_client, uninstrumented, spans):
    run = SCENARIOS[scenario]
    with uninstrumented():
        before = _outcome(lambda: run(new_client()))
    after = _outcome(lambda: run(new_client()))
    assert after == before
    assert len(spans.finished()) == 1  # and it was traced
