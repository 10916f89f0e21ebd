"""The export path on the standard stack: each defect the hand-made one had, and the standard variables.

Apps run as real subprocesses exporting to loopback receivers; pipelines in this process use the
real destinations (``respan_auto.export.destinations``) on a provider of their own.
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import pytest
from opentelemetry import trace

from respan_auto.config import Settings
from respan_auto.export import destinations
from respan_auto.export.pipeline import spool_for, spool_sender
from respan_auto.export.spool import Spool
from respan_auto.testing.otlp_receiver import OtlpReceiver
from tests.test_reliability import RESPAN_KEY, lost, pipeline, run_app

SPANS = """
    import os, sys, time
    from respan_auto import Respan
    from opentelemetry import trace
    respan = Respan()
    tracer = trace.get_tracer("app")
    for i in range(int(os.environ.get("SPANS", "5"))):
        tracer.start_span(f"s{i}", attributes={"prompt": os.environ.get("PROMPT", "hello")}).end()
    print("done", flush=True)
"""


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def respan_env(rx: OtlpReceiver, **more: str) -> dict[str, str]:
    return {"RESPAN_API_KEY": RESPAN_KEY, "RESPAN_BASE_URL": rx.base_url, **more}


# ---- defects of the hand-made path -------------------------------------------------------------------------------


def test_a_lone_surrogate_costs_only_its_own_value():
    with OtlpReceiver() as rx:
        tracer, destination = pipeline(rx.base_url)
        tracer.start_span("good-1", attributes={"p": "fine"}).end()
        tracer.start_span("bad", attributes={"p": "half a pair \ud83d here", "q": "intact", "r": ("a", "\udc00")}).end()
        tracer.start_span("good-2", attributes={"p": "naïve ☕"}).end()
        assert destination.flush(10)
        by_name = {s.name: s.attributes for s in rx.spans}
    assert set(by_name) == {"good-1", "bad", "good-2"}
    assert by_name["bad"]["p"] == "half a pair ? here"
    assert by_name["bad"]["q"] == "intact"
    assert by_name["bad"]["r"] == ["a", "?"]
    assert by_name["good-2"]["p"] == "naïve ☕"


def test_a_retryable_failure_after_a_split_resends_only_what_failed():
    with OtlpReceiver() as rx:
        tracer, destination = pipeline(rx.base_url, RESPAN_MAX_EXPORT_BYTES="70000", OTEL_BSP_SCHEDULE_DELAY="60000")
        for i in range(40):
            tracer.start_span(f"s{i}", attributes={"payload": "z" * 5000}).end()

        def fail_after_the_first_requests() -> None:
            while len(rx.exports) < 2:
                time.sleep(0.001)
            rx.status = 503
            time.sleep(1.0)
            rx.status = 200

        import threading

        flipper = threading.Thread(target=fail_after_the_first_requests)
        flipper.start()
        assert destination.flush(30)
        flipper.join()
        names = [s.name for s in rx.spans]
        failed = [e for e in rx.exports if not e.spans]
    assert failed, "the endpoint never failed: the test did not test anything"
    assert sorted(names) == sorted(f"s{i}" for i in range(40))  # each exactly once
    assert lost(destination) == 0


@pytest.mark.parametrize("retry_after", ["soon", "1", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_any_retry_after_keeps_the_batch(retry_after):
    with OtlpReceiver(status=429) as rx:
        rx.retry_after = retry_after
        tracer, destination = pipeline(rx.base_url)
        tracer.start_span("kept").end()
        deadline = time.monotonic() + 10
        while not rx.exports and time.monotonic() < deadline:
            destination.flush(0.2)
        rx.status = 200
        assert destination.flush(20)
        names = [s.name for s in rx.spans]
    assert names == ["kept"]
    assert lost(destination) == 0


def test_the_wire_carries_the_standard_encoders_bytes():
    """Our encoder feeds the standard exporter's send step: the body is what the standard encoder would write."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    with OtlpReceiver() as rx:
        settings = Settings.load(environ={"RESPAN_API_KEY": RESPAN_KEY, "RESPAN_BASE_URL": rx.base_url})
        (destination,) = destinations.build(settings, {}, None)
        assert destination.processor.batch_processor.span_exporter.send_encoded is not None
        seen = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(seen))  # the same spans, as they ended
        provider.add_span_processor(destination.processor)
        tracer = provider.get_tracer("wire")
        parent = tracer.start_span("parent", attributes={"gen_ai.request.model": "m", "n": 3, "f": 0.5, "b": True})
        with trace.use_span(parent, end_on_exit=True):
            child = tracer.start_span("child", attributes={"list": ("a", "b"), "ints": (1, 2), "text": "naïve ☕"})
            child.add_event("e", {"k": "v"})
            child.set_status(trace.Status(trace.StatusCode.ERROR, "why"))
            child.end()
        assert destination.flush(10)
        (export,) = rx.exports
    assert export.raw == encode_spans(seen.get_finished_spans()).SerializePartialToString()


def test_a_span_our_encoder_refuses_goes_through_the_standard_encoder():
    """An int beyond int64 is one the standard encoder drops (and logs); ours hands the batch over to it whole."""
    with OtlpReceiver() as rx:
        tracer, destination = pipeline(rx.base_url)
        tracer.start_span("huge", attributes={"big": 2**64, "kept": "yes"}).end()
        tracer.start_span("plain").end()
        assert destination.flush(10)
        by_name = {s.name: s.attributes for s in rx.spans}
    assert set(by_name) == {"huge", "plain"}
    assert by_name["huge"]["kept"] == "yes"
    assert "big" not in by_name["huge"]


def test_proxy_variables_are_honoured(monkeypatch):
    """Requests go through HTTP_PROXY as the standard exporter's would (the variables are read once)."""
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with OtlpReceiver() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        tracer, destination = pipeline("http://127.0.0.2:9/api")  # nothing listens there: only the proxy can answer
        for i in range(3):
            tracer.start_span(f"via-proxy-{i}").end()
            assert destination.flush(10)
        assert sorted(s.name for s in proxy.spans) == ["via-proxy-0", "via-proxy-1", "via-proxy-2"]
        assert {export.path for export in proxy.exports} == {"http://127.0.0.2:9/api/v2/traces"}


def test_an_oversized_span_is_not_delivered_and_is_counted_with_its_cause():
    with OtlpReceiver() as rx:
        code = (
            SPANS
            + """
    cjk = "語" * 30000  # 30,000 characters, 90,000 bytes: under the length limit, over the request limit
    tracer.start_span("huge", attributes={"a": cjk, "b": cjk}).end()
"""
        )
        result, _ = run_app(code, respan_env(rx, RESPAN_MAX_EXPORT_BYTES="100000"))
        names = sorted(s.name for s in rx.spans)
    assert result.returncode == 0, result.stderr
    assert names == [f"s{i}" for i in range(5)]
    assert "1 span was dropped" in result.stderr
    assert "1 larger than a request may be (RESPAN_MAX_EXPORT_BYTES)" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [("RESPAN_MAX_EXPORT_BYTES", "100"), ("RESPAN_EXIT_TIMEOUT", "inf"), ("RESPAN_MAX_QUEUE_BYTES", "1")],
)
def test_an_unusable_value_is_named_once_and_the_default_used(variable, value):
    with OtlpReceiver() as rx:
        result, _ = run_app(SPANS, respan_env(rx, **{variable: value}))
        names = sorted(s.name for s in rx.spans)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(f"ignoring {variable}={value!r}") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert names == [f"s{i}" for i in range(5)]


def test_failures_stay_one_line():
    env = {"RESPAN_API_KEY": RESPAN_KEY, "RESPAN_BASE_URL": f"http://127.0.0.1:{closed_port()}/api"}
    code = SPANS + "    respan.flush(3)\n    tracer.start_span('more').end()\n    respan.flush(2)\n"
    result, _ = run_app(code, {**env, "RESPAN_EXIT_TIMEOUT": "1"})
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert sum("cannot reach" in line for line in lines) == 1, result.stderr
    assert not any("Transient error" in line or "Traceback" in line for line in lines), result.stderr
    assert "6 spans did not reach" in result.stderr


def test_a_failed_spool_write_says_so(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    env = {
        "RESPAN_API_KEY": RESPAN_KEY,
        "RESPAN_BASE_URL": f"http://127.0.0.1:{closed_port()}/api",
        "RESPAN_SPOOL_DIR": str(blocker / "spool"),
        "RESPAN_EXIT_TIMEOUT": "1",
    }
    result, _ = run_app(SPANS, env)
    assert result.returncode == 0, result.stderr
    assert "spans spooled" not in result.stderr  # none were: no cause is counted 0
    assert "5 spans could not be spooled" in result.stderr


def test_a_slow_collector_never_gets_a_request_twice(tmp_path):
    """A request unanswered at the deadline, to an endpoint that answered before, is reported, not spooled."""
    spool = tmp_path / "spool"
    code = (
        SPANS
        + """
    assert respan.flush(10)
    open(os.environ["SLOW_FLAG"], "w").close()
    for _ in range(500):  # until the collector has been slowed down
        if os.path.exists(os.environ["SLOW_FLAG"] + ".ack"):
            break
        time.sleep(0.01)
    tracer.start_span("late").end()
"""
    )
    with OtlpReceiver() as rx:
        flag = tmp_path / "slow"
        env = respan_env(rx, RESPAN_SPOOL_DIR=str(spool), RESPAN_EXIT_TIMEOUT="2", SLOW_FLAG=str(flag))

        import threading

        def slow_down_when_told() -> None:
            while not flag.exists():
                time.sleep(0.005)
            rx.delay = 4.0
            Path(str(flag) + ".ack").touch()

        threading.Thread(target=slow_down_when_told, daemon=True).start()
        result, _ = run_app(code, env)
        time.sleep(4.5)  # the collector finishes storing the late request
        names = sorted(s.name for s in rx.spans)
    assert result.returncode == 0, result.stderr
    assert "not answered before exit" in result.stderr
    assert list(spool.glob("*.otlp.gz")) == []
    assert names == sorted([f"s{i}" for i in range(5)] + ["late"])  # each exactly once


def test_the_spool_is_bounded_and_a_refused_request_is_not_kept(tmp_path):
    settings = Settings.load(environ={"RESPAN_SPOOL_MAX_BYTES": "65536", "RESPAN_SPOOL_DIR": str(tmp_path)})
    spool = Spool(str(tmp_path), "respan", settings.spool_max_bytes)
    noise = os.urandom(30_000)  # incompressible, so that each file keeps its size
    spool.write([(noise, 3), (noise, 4), (noise, 5)])
    files = sorted(tmp_path.glob("*.otlp.gz"))
    assert len(files) == 2  # the oldest went to keep the folder under its bound
    assert spool.evicted_spans == 3
    with OtlpReceiver(status=401) as rx:
        settings = Settings.load(environ={**respan_env(rx), "RESPAN_SPOOL_DIR": str(tmp_path)})
        (destination,) = destinations.build(settings, {}, None)
        result = spool_for(settings, destination).deliver(spool_sender(destination))
    assert result.refused == 9
    assert list(tmp_path.glob("*.otlp.gz")) == []


def test_spool_sends_are_not_traced(tmp_path):
    from opentelemetry.instrumentation.utils import is_instrumentation_enabled

    from respan_auto.export.transport import HandoffSession

    seen: list[bool] = []
    original = HandoffSession.deliver

    def watching(self, payload):
        seen.append(is_instrumentation_enabled())
        return original(self, payload)

    with OtlpReceiver() as rx:
        settings = Settings.load(environ={**respan_env(rx), "RESPAN_SPOOL_DIR": str(tmp_path)})
        (destination,) = destinations.build(settings, {}, None)
        Spool(str(tmp_path), "respan").write([(b"", 1)])
        HandoffSession.deliver = watching  # type: ignore[method-assign]
        try:
            delivered = spool_for(settings, destination).deliver(spool_sender(destination)).delivered
        finally:
            HandoffSession.deliver = original  # type: ignore[method-assign]
    assert delivered == 1
    assert seen == [False]


def test_memory_is_bounded_in_bytes_and_exit_is_quick_with_the_endpoint_down():
    code = """
        import os, time
        from respan_auto import Respan
        from opentelemetry import trace

        def rss_mb():
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024

        Respan()
        tracer = trace.get_tracer("app")
        before = rss_mb()
        for i in range(300):
            prompt = (str(i) + "x" * 1_000_000)
            tracer.start_span(f"s{i}", attributes={"gen_ai.prompt.0.content": prompt}).end()
            del prompt
        time.sleep(1)
        print(round(rss_mb() - before), time.time(), flush=True)
    """
    env = {
        "RESPAN_API_KEY": RESPAN_KEY,
        "RESPAN_BASE_URL": f"http://127.0.0.1:{closed_port()}/api",
        "RESPAN_EXIT_TIMEOUT": "2",
    }
    result, _ = run_app(code, env)
    finished = time.time()
    assert result.returncode == 0, result.stderr
    grown, printed = result.stdout.split()
    # 300 x 1 MB prompts (600+ MB when they were cut only at export), cut to 64 K characters as they end
    assert int(grown) < 150, f"RSS grew by {grown} MB"
    assert finished - float(printed) < 2 + 1.5
    assert "300 spans did not reach" in result.stderr


# ---- the standard variables ----------------------------------------------------------------------------------------


def test_respan_and_an_otlp_endpoint_both_receive_and_it_is_said_once():
    with OtlpReceiver() as respan, OtlpReceiver() as collector:
        env = respan_env(
            respan,
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.base_url,
            OTEL_EXPORTER_OTLP_HEADERS="x-tenant=acme,authorization=Basic%20abc",
        )
        result, _ = run_app(SPANS, env)
        to_respan, to_collector = respan.exports, collector.exports
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("are both set: spans go to both") == 1
    assert sorted(s.name for e in to_respan for s in e.spans) == [f"s{i}" for i in range(5)]
    assert sorted(s.name for e in to_collector for s in e.spans) == [f"s{i}" for i in range(5)]
    assert {e.path for e in to_collector} == {"/api/v1/traces"}
    assert {e.headers["authorization"] for e in to_respan} == {f"Bearer {RESPAN_KEY}"}
    assert all("x-tenant" not in e.headers for e in to_respan)  # the collector's headers stay with the collector
    assert {e.headers["authorization"] for e in to_collector} == {"Basic abc"}


@pytest.mark.parametrize("compression", ["gzip", "deflate", "none"])
def test_otlp_compression(compression):
    with OtlpReceiver() as rx:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.base_url, "OTEL_EXPORTER_OTLP_COMPRESSION": compression}
        result, _ = run_app(SPANS, env)
        encodings = {e.headers.get("content-encoding", "none") for e in rx.exports}
        names = sorted(s.name for s in rx.spans)
    assert result.returncode == 0, result.stderr
    assert encodings == {compression}
    assert names == [f"s{i}" for i in range(5)]


def test_otlp_timeout_bounds_each_request():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # accepts connections, never answers
    try:
        code = SPANS + "    started = time.time()\n    respan.flush(4)\n    print(round(time.time() - started, 1))\n"
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{listener.getsockname()[1]}",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
            "RESPAN_EXIT_TIMEOUT": "0",
        }
        result, _ = run_app(code, env)
    finally:
        listener.close()
    assert result.returncode == 0, result.stderr
    assert re.search(r"cannot reach .* \((ReadTimeout|Timeout|ConnectionError)\)", result.stderr), result.stderr


def test_bsp_variables_shape_the_batches():
    with OtlpReceiver() as rx:
        code = SPANS + "    time.sleep(1.5)\n"
        env = respan_env(rx, SPANS="12", OTEL_BSP_MAX_EXPORT_BATCH_SIZE="5", OTEL_BSP_SCHEDULE_DELAY="100")
        result, _ = run_app(code, env)
        sizes = [len(e.spans) for e in rx.exports]
    assert result.returncode == 0, result.stderr
    assert sum(sizes) == 12
    assert max(sizes) <= 5


def test_service_name_resource_attributes_and_sampler():
    with OtlpReceiver() as rx:
        attributes = "deployment.environment=prod,team=ai"
        env = respan_env(rx, OTEL_SERVICE_NAME="checkout", OTEL_RESOURCE_ATTRIBUTES=attributes)
        result, _ = run_app(SPANS, env)
        resources = [s.resource for s in rx.spans]
    assert result.returncode == 0, result.stderr
    assert len(resources) == 5
    assert all(r["service.name"] == "checkout" and r["deployment.environment"] == "prod" for r in resources)
    assert all(r["team"] == "ai" for r in resources)
    with OtlpReceiver() as rx:
        result, _ = run_app(SPANS, respan_env(rx, OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="0"))
        assert result.returncode == 0, result.stderr
        assert rx.spans == []


def test_a_grpc_protocol_without_the_extra_is_one_clear_line(tmp_path):
    """Where the gRPC exporter is installed this is covered by the gRPC receiver tests; here, hide it."""
    hider = Path(tmp_path, "hide")
    hider.mkdir()
    (hider / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.startswith('opentelemetry.exporter.otlp.proto.grpc'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, _Hide())\n"
    )
    from tests.conftest import REPO

    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "PYTHONPATH": f"{hider}{os.pathsep}{REPO}",
    }
    import subprocess
    import sys
    import textwrap

    full = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SPANS)],
        capture_output=True,
        text=True,
        env={**full, **env},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("pip install 'respan-auto[grpc]'") == 1, result.stderr
    assert "Traceback" not in result.stderr


# ---- TLS and gRPC ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    pytest.importorskip("cryptography")
    from respan_auto.testing.tls import make_tls_files

    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    """A CA bundle that does not know our test CA, as REQUESTS_CA_BUNDLE is on machines that set it."""
    pytest.importorskip("cryptography")
    from respan_auto.testing.tls import make_tls_files

    return make_tls_files(tmp_path_factory.mktemp("other")).ca_cert


@pytest.mark.parametrize("prefix", ["OTEL_EXPORTER_OTLP_", "OTEL_EXPORTER_OTLP_TRACES_"])
def test_https_with_our_ca_and_a_client_certificate_even_beside_requests_ca_bundle(tls, other_ca, prefix):
    with OtlpReceiver(tls=tls, client_ca=True) as rx:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": rx.url,
            f"{prefix}CERTIFICATE": tls.ca_cert,
            f"{prefix}CLIENT_CERTIFICATE": tls.client_cert,
            f"{prefix}CLIENT_KEY": tls.client_key,
            "REQUESTS_CA_BUNDLE": other_ca,  # requests would prefer it over the exporter's own CA
            "CURL_CA_BUNDLE": other_ca,
        }
        result, _ = run_app(SPANS, env)
        names = sorted(s.name for s in rx.spans)
        clients = {e.client_cn for e in rx.exports}
    assert result.returncode == 0, result.stderr
    assert names == [f"s{i}" for i in range(5)]
    assert clients == {"respan-test-client"}


def test_https_with_an_unknown_ca_is_one_line_and_no_delivery(tls, other_ca):
    with OtlpReceiver(tls=tls) as rx:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.url, "OTEL_EXPORTER_OTLP_CERTIFICATE": other_ca}
        result, _ = run_app(SPANS, {**env, "RESPAN_EXIT_TIMEOUT": "1"})
        assert rx.spans == []
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("cannot reach") == 1, result.stderr
    assert "5 spans did not reach" in result.stderr


def test_one_connection_serves_many_requests():
    class Counting(OtlpReceiver):
        connections = 0

        def process_request(self, request, client_address):  # one call per accepted connection
            type(self).connections += 1
            super().process_request(request, client_address)

    with Counting() as rx:
        code = SPANS + "    for n in range(4):\n        tracer.start_span(f'x{n}').end()\n        respan.flush(5)\n"
        result, _ = run_app(code, respan_env(rx))
        requests = len(rx.exports)
    assert result.returncode == 0, result.stderr
    assert requests >= 4
    assert Counting.connections == 1


def grpc_env(rx, **more: str) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", **more}


def test_grpc_protocol_sends_grpc_with_headers():
    pytest.importorskip("grpc")
    from respan_auto.testing.grpc_receiver import GrpcOtlpReceiver

    with GrpcOtlpReceiver() as rx:
        result, _ = run_app(SPANS, grpc_env(rx, OTEL_EXPORTER_OTLP_HEADERS="x-tenant=acme"))
        names = sorted(s.name for s in rx.spans)
        tenants = {e.headers.get("x-tenant") for e in rx.exports}
    assert result.returncode == 0, result.stderr
    assert names == [f"s{i}" for i in range(5)]
    assert tenants == {"acme"}


def test_grpc_over_tls_with_a_client_certificate(tls):
    pytest.importorskip("grpc")
    from respan_auto.testing.grpc_receiver import GrpcOtlpReceiver

    with GrpcOtlpReceiver(tls=tls, client_ca=True) as rx:
        env = grpc_env(
            rx,
            OTEL_EXPORTER_OTLP_CERTIFICATE=tls.ca_cert,
            OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=tls.client_cert,
            OTEL_EXPORTER_OTLP_CLIENT_KEY=tls.client_key,
        )
        result, _ = run_app(SPANS, env)
        names = sorted(s.name for s in rx.spans)
    assert result.returncode == 0, result.stderr
    assert names == [f"s{i}" for i in range(5)]


def test_grpc_outage_loses_nothing_and_a_refusal_is_one_line():
    grpc = pytest.importorskip("grpc")
    from respan_auto.testing.grpc_receiver import GrpcOtlpReceiver

    with GrpcOtlpReceiver(status=grpc.StatusCode.UNAVAILABLE) as rx:
        code = SPANS + "    time.sleep(2)\n    print(respan.flush(20))\n"
        import threading

        def recover() -> None:
            while not rx.exports:
                time.sleep(0.01)
            time.sleep(1.0)
            rx.status = None

        threading.Thread(target=recover, daemon=True).start()
        result, _ = run_app(code, grpc_env(rx, OTEL_BSP_SCHEDULE_DELAY="100"))
        names = sorted(s.name for s in rx.spans)
        failures = [e for e in rx.exports if not e.spans]
    assert result.returncode == 0, result.stderr
    assert failures
    assert names == [f"s{i}" for i in range(5)]  # each exactly once
    assert result.stdout.splitlines()[-1] == "True"

    with GrpcOtlpReceiver(status=grpc.StatusCode.UNAUTHENTICATED) as rx:
        result, _ = run_app(SPANS, grpc_env(rx))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("rejected the credentials (gRPC UNAUTHENTICATED)") == 1, result.stderr
    assert "5 refused by the endpoint (gRPC UNAUTHENTICATED)" in result.stderr


def test_the_queue_bound_reads_otel_bsp_max_queue_size_and_respan_wins():
    assert Settings.load(environ={"OTEL_BSP_MAX_QUEUE_SIZE": "100"}).max_queue_size == 100
    both = {"OTEL_BSP_MAX_QUEUE_SIZE": "100", "RESPAN_MAX_QUEUE_SIZE": "7"}
    assert Settings.load(environ=both).max_queue_size == 7
    settings = Settings.load(environ={"RESPAN_API_KEY": RESPAN_KEY, "OTEL_BSP_MAX_QUEUE_SIZE": "100"})
    (destination,) = destinations.build(settings, {}, None)
    assert destination.sender.max_spans == 100
