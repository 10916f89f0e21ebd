"""The wrappers themselves, on plain functions: exception identity and never raising into the app."""

from __future__ import annotations

import asyncio
import logging

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import StatusCode

from respan_auto.instrumentation.mistralai import patch
from respan_auto.instrumentation.mistralai.call import Telemetry


class BoomError(Exception):
    pass


@pytest.fixture
def telemetry(spans):
    return Telemetry(spans.provider.get_tracer("t"), NoOpMeterProvider().get_meter("t"), capture_content=True)


def test_sync_reraises_the_very_same_exception_object(telemetry, spans):
    error = BoomError("x")

    def failing(**kwargs):
        raise error

    wrapper = patch.chat_wrappers(telemetry)["complete"]
    with pytest.raises(BoomError) as raised:
        wrapper(failing, None, (), {"model": "m", "messages": []})
    assert raised.value is error
    assert spans.one().status.status_code is StatusCode.ERROR


def test_async_reraises_the_very_same_exception_object(telemetry, spans):
    error = BoomError("y")

    async def failing(**kwargs):
        raise error

    wrapper = patch.chat_wrappers(telemetry)["complete_async"]
    with pytest.raises(BoomError) as raised:
        asyncio.run(wrapper(failing, None, (), {"model": "m", "messages": []}))
    assert raised.value is error
    assert spans.one().attributes["error.type"] == "BoomError"


class Hostile:
    """A response whose every attribute read fails."""

    def __getattr__(self, name):
        raise RuntimeError(f"no {name}")


def test_extraction_failures_never_reach_the_caller(telemetry, spans, caplog):
    caplog.set_level(logging.DEBUG, logger="respan_auto")
    result = Hostile()
    wrapper = patch.chat_wrappers(telemetry)["complete"]
    assert wrapper(lambda **kw: result, None, (), {"model": "m", "messages": [Hostile()]}) is result
    assert len(spans.finished()) == 1
    stream_wrapper = patch.chat_wrappers(telemetry)["stream"]
    items = [Hostile(), Hostile()]
    assert list(stream_wrapper(lambda **kw: iter(items), None, (), {"model": "m"})) == items
    assert len(spans.finished()) == 2
    assert all(r.levelno <= logging.DEBUG for r in caplog.records if r.name == "respan_auto")


def test_unknown_stream_object_passes_through_and_ends_span(telemetry, spans):
    sentinel = object()
    wrapper = patch.chat_wrappers(telemetry)["stream"]
    assert wrapper(lambda **kw: sentinel, None, (), {"model": "m"}) is sentinel
    assert len(spans.finished()) == 1
