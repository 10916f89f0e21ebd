"""The loopback receivers understand what the STANDARD OpenTelemetry exporters send: OTLP/HTTP (plain, gzip,
deflate; HTTPS and mTLS with the throw-away CA) and OTLP/gRPC (insecure, TLS, mTLS; failing statuses).

Other tests trust these receivers to judge our exporter, so they are checked here against exporters that are not
ours, with real spans from an SDK ``TracerProvider``.
"""

from __future__ import annotations

import gzip
import json
import os
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from respan_auto.testing.otlp_receiver import OtlpReceiver, ReceivedSpan
from respan_auto.testing.tls import CLIENT_COMMON_NAME, TlsFiles, make_tls_files

SERVICE = "receiver-check"


@pytest.fixture(autouse=True)
def hermetic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from the machine's environment may steer the exporters: not its OTLP settings, not a proxy.

    ``REQUESTS_CA_BUNDLE`` (set on CI) and ``CURL_CA_BUNDLE`` matter most: ``requests`` lets them override the
    session's ``verify``, which is where the standard HTTP exporter puts ``certificate_file``. With either set,
    the exporter would trust the system bundle instead of our CA, and the HTTPS tests would fail (or the wrong-CA
    test pass) depending on the machine rather than on the receiver.
    """
    for name in list(os.environ):
        if name.startswith("OTEL_EXPORTER_OTLP_") or name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            monkeypatch.delenv(name)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    pytest.importorskip("cryptography")
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def stranger_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """Another CA, which did not sign the receivers' certificates."""
    pytest.importorskip("cryptography")
    return make_tls_files(tmp_path_factory.mktemp("stranger"))


class Recording(SpanExporter):
    """Passes spans to a standard exporter and keeps what it answered, which SimpleSpanProcessor would discard."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter
        self.results: list[SpanExportResult] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.exporter.export(spans)
        except OSError:  # exporters before the 1.40 train raise a refused TLS handshake instead of answering FAILURE
            result = SpanExportResult.FAILURE
        self.results.append(result)
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()


def emit(exporter: SpanExporter) -> list[SpanExportResult]:
    """A parent and a child span through a real SDK pipeline; what each export returned."""
    recording = Recording(exporter)
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(SimpleSpanProcessor(recording))
    tracer = provider.get_tracer("receiver-test")
    with tracer.start_as_current_span("parent", attributes={"k.str": "v", "k.int": 7, "k.list": ["a", "b"]}):
        with tracer.start_as_current_span("child") as child:
            child.add_event("tick", {"n": 1})
    provider.shutdown()
    return recording.results


def check_spans(spans: list[ReceivedSpan]) -> None:
    by_name = {span.name: span for span in spans}
    assert sorted(by_name) == ["child", "parent"]
    parent, child = by_name["parent"], by_name["child"]
    assert parent.attributes == {"k.str": "v", "k.int": 7, "k.list": ["a", "b"]}
    assert child.parent_id == parent.span_id and child.trace_id == parent.trace_id and parent.parent_id is None
    assert child.events == [{"name": "tick", "n": 1}]
    assert parent.resource["service.name"] == SERVICE and parent.scope == "receiver-test"


def wait_until(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(condition())


# --- OTLP/HTTP ---------------------------------------------------------------------------------------------------


@pytest.fixture
def http_exporter() -> Any:
    module = pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    return module.OTLPSpanExporter


@pytest.mark.parametrize("compression", ["none", "gzip", "deflate"])
def test_http_exporter_plain_and_compressed(http_exporter: Any, compression: str) -> None:
    from opentelemetry.exporter.otlp.proto.http import Compression

    with OtlpReceiver() as rx:
        exporter = http_exporter(
            endpoint=rx.traces_url, headers={"authorization": "Bearer t0k"}, compression=Compression(compression)
        )
        assert emit(exporter) == [SpanExportResult.SUCCESS] * 2
        check_spans(rx.spans)
        assert rx.url.startswith("http://127.0.0.1:") and rx.base_url == rx.url + "/api"
        for export in rx.exports:
            assert export.path == "/api/v2/traces"
            assert export.headers["authorization"] == "Bearer t0k"
            assert export.headers["content-type"] == "application/x-protobuf"
            assert export.headers.get("content-encoding", "none") == compression
            assert export.client_cn is None


def test_http_failing_status_sends_retry_after(http_exporter: Any) -> None:
    with OtlpReceiver(status=503, retry_after="0") as rx:
        # Retry-After: 0 lets the standard exporter spend all its attempts at once, instead of backing off 1 s, 2 s...
        assert emit(http_exporter(endpoint=rx.traces_url, timeout=5)) == [SpanExportResult.FAILURE] * 2
        assert len(rx.exports) > 2 and rx.spans == []
        rx.retry_after = "soon"  # junk is sent as given, for tests of lenient parsing
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(urllib.request.Request(rx.traces_url, data=b"", method="POST"), timeout=5)
        answer.value.close()
        assert answer.value.code == 503 and answer.value.headers["retry-after"] == "soon"
        rx.status = 200
        with urllib.request.urlopen(urllib.request.Request(rx.traces_url, data=b"", method="POST"), timeout=5) as ok:
            assert ok.status == 200 and ok.headers["retry-after"] is None


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)


def test_http_json_raw_deflate_and_undecodable_bodies() -> None:
    trace_id, span_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": SERVICE}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "json-scope"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "name": "from-json",
                                "kind": 1,
                                "startTimeUnixNano": "1",
                                "endTimeUnixNano": "2",
                                "attributes": [{"key": "n", "value": {"intValue": "3"}}],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    with OtlpReceiver() as rx:
        assert post(rx.traces_url, json.dumps(body).encode(), {"content-type": "application/json"}) == 200
        (span,) = rx.spans
        assert (span.name, span.trace_id, span.span_id, span.attributes) == ("from-json", trace_id, span_id, {"n": 3})
        assert span.scope == "json-scope" and span.resource == {"service.name": SERVICE}

        rx.exports.clear()
        raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        deflated = raw_deflate.compress(json.dumps(body).encode()) + raw_deflate.flush()
        headers = {"content-type": "application/json", "content-encoding": "deflate"}
        assert post(rx.traces_url, deflated, headers) == 200
        assert [s.name for s in rx.spans] == ["from-json"]

        rx.exports.clear()
        assert post(rx.traces_url, gzip.compress(b"\xff not protobuf"), {"content-encoding": "gzip"}) == 400
        assert post(rx.traces_url, b"not gzip", {"content-encoding": "gzip"}) == 400
        assert len(rx.exports) == 2 and rx.spans == []


def test_https_with_the_test_ca(http_exporter: Any, tls: TlsFiles) -> None:
    with OtlpReceiver(tls=tls) as rx:
        assert rx.url.startswith("https://127.0.0.1:") and rx.base_url.startswith("https://")
        results = emit(http_exporter(endpoint=rx.traces_url, certificate_file=tls.ca_cert, compression=None))
        assert results == [SpanExportResult.SUCCESS] * 2
        check_spans(rx.spans)
        assert rx.tls_errors == []


def test_https_refuses_a_client_trusting_another_ca(http_exporter: Any, tls: TlsFiles, stranger_tls: TlsFiles) -> None:
    with OtlpReceiver(tls=tls) as rx:
        wrong = http_exporter(endpoint=rx.traces_url, certificate_file=stranger_tls.ca_cert, timeout=1)
        assert emit(wrong) == [SpanExportResult.FAILURE] * 2
        assert rx.exports == [] and wait_until(lambda: rx.tls_errors)
        # a failed handshake leaves the receiver serving
        assert (
            emit(http_exporter(endpoint=rx.traces_url, certificate_file=tls.ca_cert)) == [SpanExportResult.SUCCESS] * 2
        )


def test_mtls_needs_the_client_certificate(http_exporter: Any, tls: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    with OtlpReceiver(tls=tls, client_ca=True) as rx:
        with_cert = http_exporter(
            endpoint=rx.traces_url,
            certificate_file=tls.ca_cert,
            client_certificate_file=tls.client_cert,
            client_key_file=tls.client_key,
        )
        assert emit(with_cert) == [SpanExportResult.SUCCESS] * 2
        check_spans(rx.spans)
        assert {export.client_cn for export in rx.exports} == {CLIENT_COMMON_NAME}

        # the same through the standard variables
        rx.exports.clear()
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", tls.ca_cert)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", tls.client_cert)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", tls.client_key)
        assert emit(http_exporter(endpoint=rx.traces_url)) == [SpanExportResult.SUCCESS] * 2
        check_spans(rx.spans)

        rx.exports.clear()
        for name in ("CLIENT_CERTIFICATE", "CLIENT_KEY"):
            monkeypatch.delenv(f"OTEL_EXPORTER_OTLP_TRACES_{name}")
        assert emit(http_exporter(endpoint=rx.traces_url, timeout=1)) == [SpanExportResult.FAILURE] * 2
        assert rx.spans == []


def test_client_ca_needs_tls() -> None:
    with pytest.raises(ValueError, match="tls"):
        OtlpReceiver(client_ca=True)


# --- OTLP/gRPC ---------------------------------------------------------------------------------------------------


@pytest.fixture
def grpc_exporter() -> Any:
    pytest.importorskip("grpc")
    module = pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
    return module.OTLPSpanExporter


@pytest.fixture
def grpc_receiver_cls(grpc_exporter: Any) -> Iterator[Any]:
    from respan_auto.testing.grpc_receiver import GrpcOtlpReceiver

    yield GrpcOtlpReceiver


@pytest.mark.parametrize("compression", ["none", "gzip", "deflate"])
def test_grpc_insecure(grpc_exporter: Any, grpc_receiver_cls: Any, compression: str) -> None:
    import grpc

    from respan_auto.testing.grpc_receiver import METHOD

    codec = {"none": grpc.Compression.NoCompression, "gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate}
    with grpc_receiver_cls() as rx:
        assert rx.endpoint == f"http://127.0.0.1:{rx.port}"
        exporter = grpc_exporter(
            endpoint=rx.endpoint, headers={"authorization": "Bearer g"}, compression=codec[compression]
        )
        assert emit(exporter) == [SpanExportResult.SUCCESS] * 2
        check_spans(rx.spans)
        for export in rx.exports:
            assert export.path == METHOD and export.headers["authorization"] == "Bearer g"
            assert export.raw and export.client_cn is None


def test_grpc_tls_with_credentials(grpc_exporter: Any, grpc_receiver_cls: Any, tls: TlsFiles) -> None:
    import grpc

    with grpc_receiver_cls(tls=tls) as rx:
        assert rx.endpoint.startswith("https://127.0.0.1:")
        credentials = grpc.ssl_channel_credentials(root_certificates=tls.read("ca_cert"))
        assert emit(grpc_exporter(endpoint=rx.endpoint, credentials=credentials)) == [SpanExportResult.SUCCESS] * 2
        check_spans(rx.spans)


def test_grpc_tls_refuses_another_ca(
    grpc_exporter: Any, grpc_receiver_cls: Any, tls: TlsFiles, stranger_tls: TlsFiles
) -> None:
    import grpc

    with grpc_receiver_cls(tls=tls) as rx:
        credentials = grpc.ssl_channel_credentials(root_certificates=stranger_tls.read("ca_cert"))
        exporter = grpc_exporter(endpoint=rx.endpoint, credentials=credentials, timeout=1)
        assert emit(exporter) == [SpanExportResult.FAILURE] * 2
        assert rx.exports == []


def test_grpc_mtls_through_the_standard_variables(
    grpc_exporter: Any, grpc_receiver_cls: Any, tls: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    with grpc_receiver_cls(tls=tls, client_ca=True) as rx:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", tls.ca_cert)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", tls.client_cert)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_KEY", tls.client_key)
        assert emit(grpc_exporter()) == [SpanExportResult.SUCCESS] * 2
        check_spans(rx.spans)
        assert {export.client_cn for export in rx.exports} == {CLIENT_COMMON_NAME}

        rx.exports.clear()
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_CLIENT_KEY")
        assert emit(grpc_exporter(timeout=1)) == [SpanExportResult.FAILURE] * 2
        assert rx.exports == []


def test_grpc_failing_statuses(grpc_exporter: Any, grpc_receiver_cls: Any) -> None:
    import grpc

    with grpc_receiver_cls(status=grpc.StatusCode.UNAUTHENTICATED) as rx:
        exporter = grpc_exporter(endpoint=rx.endpoint, timeout=5)
        assert emit(exporter) == [SpanExportResult.FAILURE] * 2
        assert len(rx.exports) == 2 and rx.spans == []  # not retryable: one attempt per export

        # retryable, with a RetryInfo delay short enough for every attempt to happen at once
        rx.exports.clear()
        rx.status, rx.retry_after = grpc.StatusCode.UNAVAILABLE, 0.01
        assert emit(grpc_exporter(endpoint=rx.endpoint, timeout=5)) == [SpanExportResult.FAILURE] * 2
        assert len(rx.exports) > 2 and rx.spans == []

        rx.status = None
        assert emit(grpc_exporter(endpoint=rx.endpoint)) == [SpanExportResult.SUCCESS] * 2
        check_spans(rx.spans)


def test_grpc_delay(grpc_exporter: Any, grpc_receiver_cls: Any) -> None:
    with grpc_receiver_cls(delay=0.2) as rx:
        started = time.monotonic()
        assert emit(grpc_exporter(endpoint=rx.endpoint, timeout=5)) == [SpanExportResult.SUCCESS] * 2
        assert time.monotonic() - started >= 0.4
        assert len(rx.wait_for_spans(2)) == 2
