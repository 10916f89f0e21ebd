"""One call life cycle: the content switch read at call time, errors recorded alike on every path, response
attributes kept when later steps fail, long conversations, and no key leaking through stream chunks."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import textwrap
import warnings

import pytest
from opentelemetry.trace import StatusCode

from respan_auto import content
from respan_auto.testing.otlp_receiver import OtlpReceiver
from tests.conftest import REPO, user

MODEL = "mistral-small-latest"


@pytest.fixture(autouse=True)
def _content_switch_restored(monkeypatch):
    monkeypatch.delenv("RESPAN_TRACE_CONTENT", raising=False)
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    content.reset()
    yield
    content.reset()


def has_content(span) -> bool:
    prefixes = ("gen_ai.prompt.", "gen_ai.completion.", "gen_ai.input", "gen_ai.output")
    return any(k.startswith(prefixes) for k in span.attributes)


def test_content_switch_takes_effect_at_the_next_call_from_every_source(client, spans, monkeypatch):
    def one() -> object:
        client.chat.complete(model=MODEL, messages=user("hello"))
        span = spans.finished()[-1]
        spans.clear()
        return span

    assert has_content(one())
    content.set_from_code(False)  # what Respan(trace_content=False) says, after the instrumentor started
    assert not has_content(one())
    content.set_from_code(True)
    assert has_content(one())
    monkeypatch.setenv("RESPAN_TRACE_CONTENT", "false")
    assert not has_content(one())
    content.set_from_code(True)  # "off" anywhere wins over "on" elsewhere
    assert not has_content(one())
    monkeypatch.delenv("RESPAN_TRACE_CONTENT")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "no_content")
    assert not has_content(one())
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_only")
    assert has_content(one())


def test_content_off_hides_the_error_message_too(client, spans):
    content.set_from_code(False)
    with pytest.raises(Exception) as raised:
        client.chat.complete(model=MODEL, messages=user("secret prompt #500"))
    (span,) = spans.finished()
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes["exception.type"].endswith(type(raised.value).__name__)
    for value in event.attributes.values():
        assert str(raised.value) not in str(value)
    assert "File " in event.attributes["exception.stacktrace"]  # the frames stay, the message goes
    assert "secret prompt" not in json.dumps({k: str(v) for k, v in span.attributes.items()})


def test_under_the_launcher_respan_trace_content_false_keeps_content_out(server):
    code = """
        import os
        from respan_auto import Respan
        try:
            from mistralai.client import Mistral
        except ImportError:
            from mistralai import Mistral
        client = Mistral(api_key="k", server_url=os.environ["STANDIN_URL"])
        Respan(trace_content=False)
        client.chat.complete(model="m", messages=[{"role": "user", "content": "my private words"}])
        for _ in client.chat.stream(model="m", messages=[{"role": "user", "content": "more private words"}]):
            pass
    """
    with OtlpReceiver() as rx:
        env = {
            "RESPAN_API_KEY": "rk-test-0000000000",
            "RESPAN_BASE_URL": rx.base_url,
            "STANDIN_URL": server.url,
            "PATH": str(__import__("os").environ["PATH"]),
        }
        result = subprocess.run(
            [sys.executable, "-m", "respan_auto.cli", sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            env=env,
            cwd=str(REPO),
            timeout=120,
        )
        exported = b"".join(e.raw for e in rx.exports)
        names = [s.name for s in rx.spans]
    assert result.returncode == 0, result.stderr
    assert names.count("chat m") == 2
    assert b"private" not in exported


def test_response_attributes_survive_a_failing_chunk_event_step(client, spans, instrument, monkeypatch):
    from opentelemetry.sdk.trace import Span

    def broken(self, *args, **kwargs):
        raise RuntimeError("events failed")

    instrument(chunk_events=True)
    monkeypatch.setattr(Span, "add_event", broken)
    chunks = list(client.chat.stream(model=MODEL, messages=user("story #usage-chunk")))
    (span,) = spans.finished()
    a = span.attributes
    assert chunks and span.events == ()
    assert a["gen_ai.response.model"] and a["gen_ai.usage.output_tokens"] > 0
    assert a["gen_ai.completion.0.content"]
    assert a["respan.stream.completed"] is True


def test_sdk_errors_are_the_calls_error_on_every_path(client, new_client, spans):
    with pytest.raises(Exception) as plain:
        client.chat.complete(model=MODEL, messages=user("x #401"))
    with pytest.raises(Exception):  # noqa: B017 - the SDK's error class differs by generation
        for _ in client.chat.stream(model=MODEL, messages=user("x #500")):
            pass

    async def run():
        with pytest.raises(Exception):  # noqa: B017 - the SDK's error class differs by generation
            await new_client().chat.complete_async(model=MODEL, messages=user("x #500"))

    asyncio.run(run())
    finished = spans.finished()
    assert len(finished) == 3
    for span in finished:
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["error.type"]
        assert span.attributes["http.response.status_code"] in (401, 500)
    assert finished[0].attributes["error.type"] == type(plain.value).__qualname__


def test_a_stream_failing_validation_records_no_http_status(client, spans):
    with pytest.raises(Exception) as raised:
        for _ in client.chat.stream(model=MODEL, messages=user("x #malformed")):
            pass
    (span,) = spans.finished()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == type(raised.value).__qualname__
    assert "http.response.status_code" not in span.attributes  # the HTTP answer was a 200: not an HTTP error


def test_cancellation_is_recorded_alike_for_plain_and_streamed_calls(new_client, spans):
    async def cancel(coro_factory):
        task = asyncio.ensure_future(coro_factory())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def stream_slowly():
        stream = await new_client().chat.stream_async(model=MODEL, messages=user("slow story #slow #chunks=40"))
        async for _ in stream:
            pass

    async def main():
        await cancel(stream_slowly)

    asyncio.run(main())
    (span,) = spans.finished()
    assert span.attributes["error.type"] == "CancelledError"
    assert span.status.status_code is StatusCode.ERROR


def test_a_failure_in_the_apps_own_with_block_is_an_interrupted_stream_not_a_failed_call(client, spans):
    with pytest.raises(ValueError), client.chat.stream(model=MODEL, messages=user("story #chunks=5")) as stream:
        for _ in stream:
            raise ValueError("the app's own bug")
    (span,) = spans.finished()
    assert span.attributes["respan.stream.completed"] is False
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in span.attributes


def test_a_long_conversation_keeps_the_request_keys_and_warns_nothing(client, spans, caplog):
    messages = [{"role": "system", "content": "be brief"}]
    for i in range(1000):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"})
    messages.append({"role": "user", "content": "last question"})
    with caplog.at_level("WARNING"):
        client.chat.complete(model=MODEL, messages=messages, temperature=0.2)
    (span,) = spans.finished()
    a = span.attributes
    assert a["gen_ai.request.model"] == MODEL
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "mistral_ai"
    assert a["gen_ai.request.temperature"] == 0.2
    assert a["gen_ai.prompt.0.content"] == "be brief"
    indexed = [k for k in a if re.fullmatch(r"gen_ai\.prompt\.\d+\.content", k)]
    assert a[f"gen_ai.prompt.{len(indexed) - 1}.content"] == "last question"
    assert a["respan.prompt.omitted_messages"] == len(messages) - len(indexed)
    assert len(json.loads(a["gen_ai.input.messages"])) == len(messages)
    assert span.dropped_attributes == 0
    assert not [r for r in caplog.records if "Attributes dict is full" in r.getMessage()]


def test_a_dropped_coroutine_warns_as_the_bare_sdk_does(client, sdk):
    async def drop():
        coro = client.chat.complete_async(model=MODEL, messages=user("never awaited"))
        del coro

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(drop())
        import gc

        gc.collect()
    texts = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert texts, "a dropped coroutine always warns"
    assert all("traced" not in text for text in texts)
    assert any("complete_async" in text for text in texts)


def test_no_key_leaks_through_stream_chunks(server):
    """A key the model repeats, split over many chunks, never leaves whole, even with chunk events on."""
    key = "sk-mistral-sentinel-0xBEEF4242"
    code = f"""
        import os
        from respan_auto import Respan
        respan = Respan(is_auto_instrument=True)
        try:
            from mistralai.client import Mistral
        except ImportError:
            from mistralai import Mistral
        client = Mistral(api_key="k", server_url=os.environ["STANDIN_URL"])
        for _ in client.chat.stream(model="m", messages=[{{"role": "user", "content": "say {key} #chunks=40"}}]):
            pass
    """
    with OtlpReceiver() as rx:
        env = {
            "RESPAN_API_KEY": "rk-test-0000000000",
            "RESPAN_BASE_URL": rx.base_url,
            "RESPAN_CHUNK_EVENTS": "true",
            "STANDIN_URL": server.url,
            "PYTHONPATH": str(REPO),
        }
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=120
        )
        exported = b"".join(e.raw for e in rx.exports)
        spans = [s for s in rx.spans if s.name == "chat m"]
    assert result.returncode == 0, result.stderr
    (span,) = spans
    assert len(span.events) > 10  # the events are there, with timing and sizes only
    assert key.encode() not in exported
    assert b"0xBEEF" not in exported
    assert "[REDACTED]" in span.attributes["gen_ai.completion.0.content"]


def test_stream_metrics_time_to_first_chunk_and_per_chunk(client, spans, instrument):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    instrument(meter_provider=MeterProvider(metric_readers=[reader]))
    chunks = list(client.chat.stream(model=MODEL, messages=user("story #chunks=7")))
    client.chat.complete(model=MODEL, messages=user("plain"))
    points = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points[metric.name] = metric.data.data_points
    (first,) = points["gen_ai.client.operation.time_to_first_chunk"]
    (per_chunk,) = points["gen_ai.client.operation.time_per_output_chunk"]
    assert first.count == 1  # the plain call has no chunks
    assert per_chunk.count == len(chunks) - 1  # one per chunk after the first
    assert first.attributes["gen_ai.request.model"] == MODEL
    assert sum(p.count for p in points["gen_ai.client.operation.duration"]) == 2
    span = next(s for s in spans.finished() if "respan.stream.chunk_count" in s.attributes)
    assert abs(first.sum - span.attributes["gen_ai.response.time_to_first_chunk"]) < 1e-6


def test_another_instrumentor_on_top_leaves_no_coroutine_of_ours_unawaited(server):
    """An app that instruments OpenInference itself, over ours, and never iterates a stream (OpenInference's
    stream is no async context manager): the warnings are exactly those the app gets without us."""
    pytest.importorskip("openinference.instrumentation.mistralai")
    pytest.importorskip("mistralai.client")
    code = """
        import asyncio, gc, os, sys, warnings
        warnings.simplefilter("always")
        from opentelemetry.sdk.trace import TracerProvider
        from openinference.instrumentation.mistralai import MistralAIInstrumentor as Other
        provider = TracerProvider()
        if sys.argv[1] == "ours":
            from respan_auto.instrumentation.mistralai import MistralAIInstrumentor
            MistralAIInstrumentor().instrument(tracer_provider=provider)
        Other().instrument(tracer_provider=provider)
        from mistralai.client import Mistral
        client = Mistral(api_key="k", server_url=os.environ["STANDIN_URL"])

        async def main():
            stream = await client.chat.stream_async(model="m", messages=[{"role": "user", "content": "hi"}])
            try:
                async with stream:
                    pass
            except TypeError:
                print("app saw TypeError")
        asyncio.run(main())
        gc.collect()
    """

    def warnings_of(arm: str) -> list[str]:
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), arm],
            capture_output=True,
            text=True,
            env={**__import__("os").environ, "STANDIN_URL": server.url, "PYTHONPATH": str(REPO)},
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert "app saw TypeError" in result.stdout
        return sorted(line for line in result.stderr.splitlines() if "never awaited" in line)

    with_us, without_us = warnings_of("ours"), warnings_of("bare")
    assert with_us == without_us
    assert not [line for line in with_us if "traced" in line or "respan" in line]


def test_content_off_hides_a_decorated_functions_error_message(spans):
    from respan_auto import task

    content.set_from_code(False)

    @task(name="leaky")
    def leaky(prompt):
        raise ValueError(f"cannot handle {prompt}")

    with pytest.raises(ValueError):
        leaky("my private prompt")
    (span,) = spans.finished()
    assert "private" not in json.dumps([dict(e.attributes) for e in span.events])
    assert span.status.status_code is StatusCode.ERROR


@pytest.mark.parametrize(
    ("code", "line"),
    [
        ("Respan(trace_content='false')", None),
        ("Respan(trace_content='maybe')", "trace_content"),
        ("Respan()", None),
    ],
)
def test_respan_reads_content_arguments_as_written(code, line):
    script = f"""
        from respan_auto import Respan, content
        {code}
        print("content", content.enabled())
    """
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("RESPAN_", "OTEL_"))}
    env.update(PYTHONPATH=str(REPO), HOME=str(REPO / ".no-home"), RESPAN_LOCAL_STORE="/dev/null")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    expected = "content False" if "'false'" in code else "content True"
    assert expected in result.stdout
    assert "Traceback" not in result.stderr
    if line:
        assert line in result.stderr


def test_a_stream_behind_another_proxy_is_still_followed():
    """A layer above may hand us the SDK's stream inside a proxy that forwards ``__next__`` only as an attribute."""
    import wrapt
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from respan_auto.instrumentation.mistralai.call import Telemetry
    from respan_auto.instrumentation.mistralai.stream import wrap_stream

    class Stream:
        def __init__(self, chunks):
            self._chunks = iter(chunks)

        def __iter__(self):
            return self

        def __next__(self):
            return next(self._chunks)

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry(provider.get_tracer("t"), NoOpMeterProvider().get_meter("t"), capture_content=True)
    chunks = [{"data": {"id": "x", "model": "m", "choices": [{"index": 0, "delta": {"content": c}}]}} for c in "abc"]
    call = telemetry.begin(None, {"model": "m"}, stream=True)
    stream = wrap_stream(call, wrapt.ObjectProxy(Stream(chunks)))
    call.detach()
    assert list(stream) == chunks
    (span,) = exporter.get_finished_spans()
    assert span.attributes["respan.stream.chunk_count"] == 3
    assert span.attributes["gen_ai.completion.0.content"] == "abc"
