"""Streams: the proxy behaves like the SDK's stream, and the span ends exactly once."""

from __future__ import annotations

import asyncio
import gc
import json
import logging

import pytest
from opentelemetry.trace import StatusCode

from respan_auto.testing.mistral_server import RESPONSE_MODEL, TOOL_ARGUMENTS
from tests.conftest import user

MODEL = "mistral-small-latest"


def drain(stream) -> list:
    return [chunk for chunk in stream]


async def adrain(stream) -> list:
    return [chunk async for chunk in stream]


def dumps(chunks) -> list:
    return [c.model_dump() for c in chunks]


def test_sync_stream_passes_chunks_through_and_records_everything(client, uninstrumented, spans, sdk):
    prompt = user("tell me a story #usage-chunk")
    with uninstrumented():
        expected = dumps(drain(client.chat.stream(model=MODEL, messages=prompt)))

    stream = client.chat.stream(model=MODEL, messages=prompt)
    assert isinstance(stream, sdk.eventstreaming.EventStream)
    assert stream.response.status_code == 200
    assert spans.finished() == []  # the span lives as long as the stream
    chunks = drain(stream)
    assert dumps(chunks) == expected

    span = spans.one()
    a = span.attributes
    text = "".join(c.data.choices[0].delta.content for c in chunks if c.data.choices)
    assert a["gen_ai.completion.0.content"] == text
    assert json.loads(a["gen_ai.output.messages"])[0]["parts"] == [{"type": "text", "content": text}]
    assert a["respan.stream.chunk_count"] == len(chunks)
    assert a["respan.stream.completed"] is True
    assert a["gen_ai.response.model"] == RESPONSE_MODEL
    assert a["gen_ai.response.id"] == chunks[0].data.id
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    # usage came in a trailing chunk with no choices
    assert chunks[-1].data.choices == []
    assert a["gen_ai.usage.input_tokens"] == chunks[-1].data.usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == chunks[-1].data.usage.completion_tokens
    assert a["llm.usage.total_tokens"] == chunks[-1].data.usage.total_tokens
    assert 0 < a["gen_ai.response.time_to_first_chunk"] < 5
    assert 0 <= a["respan.stream.chunk_gap.mean"] <= a["respan.stream.chunk_gap.max"] < 5
    assert a["gen_ai.request.stream"] is True
    assert span.events == ()  # summarised, not replayed: chunk events are opt-in
    assert span.status.status_code is StatusCode.UNSET


def test_async_stream_with_async_with(new_client, uninstrumented, spans, sdk):
    prompt = user("an async story")

    async def plain():
        stream = await new_client().chat.stream_async(model=MODEL, messages=prompt)
        async with stream as s:
            return dumps(await adrain(s))

    async def traced():
        stream = await new_client().chat.stream_async(model=MODEL, messages=prompt)
        assert isinstance(stream, sdk.eventstreaming.EventStreamAsync)
        async with stream as entered:
            assert entered is stream
            return dumps(await adrain(entered))

    with uninstrumented():
        expected = asyncio.run(plain())
    assert asyncio.run(traced()) == expected
    span = spans.one()
    assert span.attributes["respan.stream.completed"] is True
    assert span.attributes["gen_ai.completion.0.content"].startswith("Offline stand-in reply to: an async story")


def test_with_yields_the_proxy(client, spans):
    stream = client.chat.stream(model=MODEL, messages=user("context managed"))
    with stream as entered:
        assert entered is stream
        first = next(entered)
    assert first.data.choices[0].delta.content
    span = spans.one()  # ended on exit, partial output kept
    assert span.attributes["respan.stream.completed"] is False
    assert span.attributes["respan.stream.chunk_count"] == 1
    assert span.attributes["gen_ai.completion.0.content"] == first.data.choices[0].delta.content
    assert span.status.status_code is StatusCode.UNSET


@pytest.mark.parametrize("how", ["close", "gc", "with"])
def test_break_then_close_gc_or_exit_ends_span_once(client, spans, sdk, how, caplog):
    caplog.set_level(logging.WARNING)
    if how == "close" and not hasattr(sdk.eventstreaming.EventStream, "close"):
        pytest.skip("this mistralai's EventStream has no close()")
    stream = client.chat.stream(model=MODEL, messages=user("one two three four five six"))
    assert hasattr(stream, "close") == hasattr(sdk.eventstreaming.EventStream, "close")
    if how == "close":
        for _ in stream:
            break
        stream.close()
        stream.close()
    elif how == "gc":
        for _ in stream:
            break
        del stream
        gc.collect()
    else:
        with stream as s:
            for _ in s:
                break
    span = spans.one()
    assert span.attributes["respan.stream.completed"] is False
    assert span.attributes["respan.stream.chunk_count"] == 1
    assert span.status.status_code is StatusCode.UNSET
    gc.collect()
    assert len(spans.finished()) == 1
    assert "ended span" not in caplog.text


def test_abandoned_async_stream_ends_on_close(client, spans, sdk):
    if not hasattr(sdk.eventstreaming.EventStreamAsync, "close"):
        pytest.skip("this mistralai's EventStreamAsync has no close()")

    async def run():
        stream = await client.chat.stream_async(model=MODEL, messages=user("a b c d e f"))
        async for _ in stream:
            break
        await stream.close()

    asyncio.run(run())
    assert spans.one().attributes["respan.stream.completed"] is False


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_error_while_iterating_is_recorded_and_reraised(new_client, uninstrumented, spans, is_async):
    prompt = user("#malformed")

    def consume(make):
        c = make()
        if is_async:

            async def run():
                return await adrain(await c.chat.stream_async(model=MODEL, messages=prompt))

            return asyncio.run(run())
        return drain(c.chat.stream(model=MODEL, messages=prompt))

    with uninstrumented(), pytest.raises(Exception) as plain:
        consume(new_client)
    with pytest.raises(Exception) as traced:
        consume(new_client)
    assert type(traced.value) is type(plain.value)
    span = spans.one()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == type(traced.value).__qualname__
    assert span.attributes["respan.stream.chunk_count"] == 1
    assert "respan.stream.completed" in span.attributes


def test_http_error_on_stream_open(client, spans):
    with pytest.raises(Exception) as raised:
        client.chat.stream(model=MODEL, messages=user("#500"))
    assert raised.value.status_code == 500
    span = spans.one()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == type(raised.value).__qualname__


@pytest.mark.parametrize("marker", ["#tools", "#split-args"])
def test_tool_call_deltas_are_merged(client, spans, marker):
    chunks = drain(client.chat.stream(model=MODEL, messages=user(f"weather? {marker}")))
    fragments = [tc.function.arguments for c in chunks for ch in c.data.choices for tc in (ch.delta.tool_calls or [])]
    assert "".join(fragments) == TOOL_ARGUMENTS
    if marker == "#split-args":
        assert len(fragments) == 3
    a = spans.one().attributes
    assert json.loads(a["gen_ai.completion.0.tool_calls"]) == [
        {"type": "tool_call", "id": "call_weather_1", "name": "get_weather", "arguments": json.loads(TOOL_ARGUMENTS)}
    ]
    assert a["gen_ai.response.finish_reasons"] == ("tool_calls",)


def test_time_to_first_chunk_measures_the_wait(client, spans):
    drain(client.chat.stream(model=MODEL, messages=user("patience #slow #chunks=3")))
    a = spans.one().attributes
    assert a["gen_ai.response.time_to_first_chunk"] >= 0.045
    assert a["respan.stream.chunk_count"] == 3


def test_span_is_not_current_while_user_iterates(client, spans):
    from opentelemetry import trace

    outside = trace.get_current_span()
    for _ in client.chat.stream(model=MODEL, messages=user("ctx")):
        assert trace.get_current_span() is outside


def test_chunk_events_are_opt_in_timing_only_and_capped_by_span_limit(sdk, server, spans, instrument, monkeypatch):
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(span_limits=SpanLimits(max_events=5))
    provider.add_span_processor(SimpleSpanProcessor(spans.exporter))
    monkeypatch.setattr(spans, "provider", provider)
    instrument(chunk_events=True)
    client = sdk.client(server.url)
    chunks = drain(client.chat.stream(model=MODEL, messages=user("many pieces #chunks=40")))
    span = spans.one()
    text = "".join(c.data.choices[0].delta.content for c in chunks)
    assert len(chunks) == 40
    assert len(span.events) == 5
    assert span.attributes["respan.stream.chunk_count"] == 40
    assert span.attributes["gen_ai.completion.0.content"] == text
    for event in span.events:
        assert set(event.attributes) == {"index", "size"}
        piece = chunks[event.attributes["index"]].data.choices[0].delta.content
        assert event.attributes["size"] == len(piece)


def test_chunk_events_follow_the_variable_and_never_carry_text(sdk, server, spans, instrument, monkeypatch):
    monkeypatch.setenv("RESPAN_CHUNK_EVENTS", "true")
    instrument()
    client = sdk.client(server.url)
    secret = "sk-" + "a1" * 20
    chunks = drain(client.chat.stream(model=MODEL, messages=user(f"repeat {secret} #chunks=6")))
    span = spans.one()
    assert [e.attributes["index"] for e in span.events] == list(range(len(chunks)))
    assert all(set(e.attributes) == {"index", "size"} for e in span.events)
    assert secret[:6] not in repr([dict(e.attributes) for e in span.events])
