"""Telemetry that never loses data and never hurts the app: outage, limits, black hole, spool, fork, secrets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider

from respan_auto.config import Settings
from respan_auto.export import destinations
from respan_auto.export.limits import Redactor
from respan_auto.export.provider import span_limits
from respan_auto.testing.otlp_receiver import OtlpReceiver
from tests.conftest import REPO

LAUNCHER = str(Path(sys.executable).parent / "respan-instrument")
RESPAN_KEY = "rk-respan-sentinel-0xC0FFEE42"
MISTRAL_KEY = "sk-mistral-sentinel-0xBEEF4242"


def pipeline(base_url: str, **env: str):
    """The real export stack for one Respan destination, on a provider of its own."""
    settings = Settings.load(
        environ={"RESPAN_API_KEY": "x" * 12, "RESPAN_BASE_URL": base_url, "OTEL_BSP_SCHEDULE_DELAY": "200", **env}
    )
    (destination,) = destinations.build(settings, {}, None)
    provider = TracerProvider(span_limits=span_limits())
    provider.add_span_processor(destination.processor)
    return provider.get_tracer("reliability"), destination


def lost(destination) -> int:
    return destination.waiting.dropped + destination.sender.counts.dropped + destination.sender.counts.refused


def test_outage_loses_nothing_and_stays_bounded():
    """~100 spans/s for 14 s; the endpoint answers 503 for 10 of them."""
    with OtlpReceiver() as rx:
        tracer, destination = pipeline(rx.base_url, RESPAN_MAX_QUEUE_SIZE="4096")
        names, peak = [], 0
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < 14:
            rx.status = 503 if 2 <= elapsed < 12 else 200
            name = f"span-{len(names)}"
            tracer.start_span(name).end()
            names.append(name)
            peak = max(peak, destination.sender.queued_spans + destination.waiting.spans)
            time.sleep(0.01)
        rx.status = 200
        assert destination.flush(40)
        received = [s.name for s in rx.spans]
    assert sorted(set(received)) == sorted(names)  # every span arrived
    assert lost(destination) == 0
    assert peak <= 1400  # what 10 s of outage queues, and no more


def test_full_queue_drops_the_oldest_and_counts_them():
    with OtlpReceiver() as rx:
        rx.delay = 1.0  # the first request stays unanswered while the rest queue up behind it
        tracer, destination = pipeline(rx.base_url, RESPAN_MAX_QUEUE_SIZE="10", OTEL_BSP_SCHEDULE_DELAY="60000")
        for i in range(10):
            tracer.start_span(f"first-{i}").end()
        deadline = time.monotonic() + 5
        while destination.sender.idle and time.monotonic() < deadline:  # until the first ten are on the wire
            time.sleep(0.01)
        for i in range(50):
            tracer.start_span(f"later-{i}").end()
        rx.delay = 0
        assert destination.flush(10)
        sent = [s.name for s in rx.spans]
    assert destination.sender.counts.dropped == 40
    assert sent == [f"first-{i}" for i in range(10)] + [f"later-{i}" for i in range(40, 50)]


def run_app(code: str, env: dict, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
    full.update(env, PYTHONPATH=str(REPO))
    started = time.time()
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full, timeout=timeout
    )
    return result, time.time() - started


SPANS_THEN_EXIT = """
    import sys, time
    from respan_auto import Respan
    from opentelemetry import trace
    respan = Respan()
    tracer = trace.get_tracer("app")
    for i in range(int(sys.argv[1]) if len(sys.argv) > 1 else 20):
        tracer.start_span(f"s{i}").end()
    print(time.time(), flush=True)
"""


def test_exit_report_counts_dropped_spans():
    with OtlpReceiver() as rx:
        code = """
            import time
            from respan_auto import Respan
            from opentelemetry import trace
            Respan()
            tracer = trace.get_tracer("app")
            for i in range(10):
                tracer.start_span(f"first{i}").end()
            time.sleep(0.5)  # the export thread has taken them and waits on the slow endpoint
            for i in range(50):
                tracer.start_span(f"later{i}").end()
        """
        rx.delay = 1.0
        env = {"RESPAN_API_KEY": RESPAN_KEY, "RESPAN_BASE_URL": rx.base_url, "RESPAN_MAX_QUEUE_SIZE": "10"}
        result, _ = run_app(code, env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("40 spans were dropped") == 1, result.stderr
    assert "RESPAN_MAX_QUEUE_SIZE" in result.stderr


def black_hole() -> socket.socket:
    """Accepts connections (the kernel's backlog does) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def test_black_hole_endpoint_delays_exit_no_more_than_the_deadline():
    sock = black_hole()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/api"
        env = {"RESPAN_API_KEY": RESPAN_KEY, "RESPAN_BASE_URL": url, "RESPAN_EXIT_TIMEOUT": "2"}
        result, _ = run_app(SPANS_THEN_EXIT, env)
        finished = time.time()
    finally:
        sock.close()
    assert result.returncode == 0, result.stderr
    exit_delay = finished - float(result.stdout.strip())
    assert exit_delay < 2.0 + 1.0, exit_delay
    assert "did not reach" in result.stderr


def test_spool_written_at_exit_and_delivered_by_the_next_run(tmp_path):
    spool = tmp_path / "spool"
    sock = black_hole()
    try:
        env = {
            "RESPAN_API_KEY": RESPAN_KEY,
            "RESPAN_BASE_URL": f"http://127.0.0.1:{sock.getsockname()[1]}/api",
            "RESPAN_SPOOL_DIR": str(spool),
            "RESPAN_EXIT_TIMEOUT": "1",
        }
        result, _ = run_app(SPANS_THEN_EXIT, env)
    finally:
        sock.close()
    assert result.returncode == 0, result.stderr
    assert "spooled to" in result.stderr
    files = list(spool.glob("*.otlp.gz"))
    assert files
    with OtlpReceiver() as rx:
        env = {"RESPAN_API_KEY": RESPAN_KEY, "RESPAN_BASE_URL": rx.base_url, "RESPAN_SPOOL_DIR": str(spool)}
        flushed = subprocess.run(
            [LAUNCHER, "flush"],
            capture_output=True,
            text=True,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("RESPAN_")}, **env},
            timeout=60,
        )
        names = sorted(s.name for s in rx.spans)
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    assert names == sorted(f"s{i}" for i in range(20))
    assert list(spool.glob("*.otlp.gz")) == []  # deleted once accepted


def test_the_next_run_delivers_the_spool_by_itself(tmp_path):
    spool = tmp_path / "spool"
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    tracer_provider = TracerProvider()
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer_provider.get_tracer("t").start_span("from-an-earlier-run").end()
    from respan_auto.export.spool import Spool

    raw = encode_spans(memory.get_finished_spans()).SerializeToString()
    Spool(str(spool), "respan").write([(raw, 1)])
    with OtlpReceiver() as rx:
        env = {"RESPAN_API_KEY": RESPAN_KEY, "RESPAN_BASE_URL": rx.base_url, "RESPAN_SPOOL_DIR": str(spool)}
        result, _ = run_app(SPANS_THEN_EXIT.replace("respan = Respan()", "respan = Respan(); time.sleep(1)"), env)
        names = {s.name for s in rx.spans}
    assert result.returncode == 0, result.stderr
    assert "from-an-earlier-run" in names
    assert list(spool.glob("*.otlp.gz")) == []


def test_prefork_workers_export_each_span_exactly_once():
    code = """
        import os, sys
        from respan_auto import Respan
        from opentelemetry import trace
        respan = Respan()
        tracer = trace.get_tracer("app")
        tracer.start_span("parent-before-fork").end()  # still queued when the workers fork
        pids = []
        for w in range(4):
            pid = os.fork()
            if pid == 0:
                for i in range(25):
                    tracer.start_span(f"w{w}-{i}").end()
                sys.exit(0)
            pids.append(pid)
        print([os.waitpid(p, 0)[1] for p in pids])
    """
    with OtlpReceiver() as rx:
        result, _ = run_app(code, {"RESPAN_API_KEY": RESPAN_KEY, "RESPAN_BASE_URL": rx.base_url})
        names = [s.name for s in rx.spans]
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[0, 0, 0, 0]"
    expected = ["parent-before-fork"] + [f"w{w}-{i}" for w in range(4) for i in range(25)]
    assert sorted(names) == sorted(expected)  # each exactly once: nothing duplicated from the parent's queue


def test_oversized_content_is_truncated_and_marked(monkeypatch):
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "1000")
    settings = Settings.load()
    assert settings.max_attribute_length == 1000
    with OtlpReceiver() as rx:
        tracer, destination = pipeline(rx.base_url, OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT="1000")
        span = tracer.start_span("big", attributes={"gen_ai.prompt.0.content": "x" * 1_000_000, "small": "ok"})
        span.add_event("chunk", {"content": "y" * 5000})
        span.end()
        assert destination.flush(10)
        (received,) = rx.spans
    prompt = received.attributes["gen_ai.prompt.0.content"]
    assert prompt == "x" * 1000 + "…[truncated]"
    assert received.attributes["small"] == "ok"
    assert received.attributes["respan.truncated"] == ["gen_ai.prompt.0.content", "content"]
    assert received.events[0]["content"].endswith("…[truncated]")


def test_batches_are_split_under_the_size_limit():
    with OtlpReceiver() as rx:
        tracer, destination = pipeline(rx.base_url, RESPAN_MAX_EXPORT_BYTES="70000", OTEL_BSP_SCHEDULE_DELAY="60000")
        for i in range(100):
            tracer.start_span(f"s{i}", attributes={"payload": "z" * 5000}).end()
        assert destination.flush(10)
        sizes = [len(e.raw) for e in rx.exports]
        assert len(rx.spans) == 100
    assert len(sizes) > 1
    assert max(sizes) <= 70_000


def test_redaction_policy_patterns_and_hook():
    redactor = Redactor(
        secrets=[MISTRAL_KEY], patterns=[r"\b\d{4}-\d{4}-\d{4}-\d{4}\b"], hook=lambda text: text.replace("Paris", "P.")
    )
    text = (
        f"key {MISTRAL_KEY}; header Authorization: Bearer abc.def.ghijklmnop; sk-proj-AAAAAAAAAAAAAAAAAAAA; "
        "AKIAABCDEFGHIJKLMNOP; card 1234-5678-9012-3456; weather in Paris; the token count"
    )
    out = redactor(text)
    for secret in (MISTRAL_KEY, "abc.def.ghijklmnop", "sk-proj-AAAA", "AKIAABCD", "1234-5678-9012-3456", "Paris"):
        assert secret not in out
    assert out.count("[REDACTED]") == 5
    assert out.endswith("the token count")
    assert "weather in P." in out
    assert Redactor(builtin=False)("Bearer abcdefghijklmnop") == "Bearer abcdefghijklmnop"


def test_secrets_never_leave_on_success_and_error_paths(server):
    """Sentinel keys: in no exported byte, log line or stderr, though the user pasted one into a prompt."""
    code = """
        import logging, os
        logging.basicConfig(level=logging.WARNING)
        logging.getLogger("respan_auto").setLevel(logging.DEBUG)
        from respan_auto import Respan, workflow
        respan = Respan(is_auto_instrument=True)
        try:
            from mistralai.client import Mistral
        except ImportError:
            from mistralai import Mistral
        client = Mistral(api_key=os.environ["MISTRAL_API_KEY"], server_url=os.environ["STANDIN_URL"])

        @workflow(name="leaky")
        def leaky(note):
            client.chat.complete(model="m", messages=[{"role": "user", "content": "my key is " + note}])
            for marker in ("#401", "#500", "#malformed"):
                try:
                    for _ in client.chat.stream(model="m", messages=[{"role": "user", "content": marker + note}]):
                        pass
                except Exception as error:
                    print("app saw", type(error).__name__)

        leaky(os.environ["MISTRAL_API_KEY"] + " and " + os.environ["RESPAN_API_KEY"])
    """
    with OtlpReceiver() as rx:
        env = {
            "RESPAN_API_KEY": RESPAN_KEY,
            "MISTRAL_API_KEY": MISTRAL_KEY,
            "RESPAN_BASE_URL": rx.base_url,
            "STANDIN_URL": server.url,
        }
        result, _ = run_app(code, env)
        exported = b"".join(e.raw for e in rx.exports)
        spans = rx.spans
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("app saw") == 3
    assert len([s for s in spans if s.name == "chat m"]) == 4
    for key in (RESPAN_KEY, MISTRAL_KEY):
        assert key.encode() not in exported
        assert key not in result.stderr
        assert key not in json.dumps([s.attributes for s in spans] + [s.events for s in spans])
    prompt = next(s for s in spans if s.name == "chat m").attributes["gen_ai.prompt.0.content"]
    assert prompt == "my key is [REDACTED] and [REDACTED]"
