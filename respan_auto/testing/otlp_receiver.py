"""A loopback OTLP/HTTP(S) receiver that decodes what arrives: for tests and benchmarks.

It accepts protobuf and JSON trace exports on any path, and protobuf metric exports on ``/v1/metrics`` (plain,
gzip or deflate, as the standard exporter's ``OTEL_EXPORTER_OTLP_COMPRESSION`` may send them), records each request
with its headers, and can be told to answer with another status (and a ``Retry-After``) or late, to play a failing or
slow endpoint. Given :class:`~respan_auto.testing.tls.TlsFiles` it serves HTTPS, optionally requiring a client
certificate (mTLS).
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import ssl
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from respan_auto.testing.tls import TlsFiles


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    status: int
    resource: dict[str, Any]
    scope: str


@dataclass
class ReceivedPoint:
    """One data point of a metric: a histogram's (count and sum) or a sum's or gauge's (value)."""

    metric: str
    unit: str
    attributes: dict[str, Any]
    count: int | None = None
    total: float | None = None


@dataclass
class Export:
    """One request as it arrived: ``raw`` is the body after decompression; ``spans`` is empty unless accepted."""

    path: str  # the HTTP path, or the gRPC method
    headers: dict[str, str]  # lower-case names (HTTP headers, or gRPC metadata)
    raw: bytes
    spans: list[ReceivedSpan] = field(default_factory=list)
    points: list[ReceivedPoint] = field(default_factory=list)  # a metrics export's (on a path ending /v1/metrics)
    client_cn: str | None = None  # common name of the verified client certificate, under mTLS


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    value = getattr(any_value, kind)
    if kind == "array_value":
        return [_value(v) for v in value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.values}
    return value


def _attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in key_values}


def decode(body: bytes) -> list[ReceivedSpan]:
    """The spans of a protobuf ``ExportTraceServiceRequest``."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return decode_request(request)


def decode_json(body: bytes) -> list[ReceivedSpan]:
    """The spans of an OTLP/JSON request, whose ids are hex where protobuf's JSON mapping expects base64."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    def rebase(obj: dict[str, Any], *keys: str) -> None:
        for key in keys:
            if obj.get(key):
                obj[key] = base64.b64encode(bytes.fromhex(obj[key])).decode()

    data = json.loads(body)
    for resource_spans in data.get("resourceSpans") or []:
        for scope_spans in resource_spans.get("scopeSpans") or []:
            for span in scope_spans.get("spans") or []:
                rebase(span, "traceId", "spanId", "parentSpanId")
                for link in span.get("links") or []:
                    rebase(link, "traceId", "spanId")
    request = json_format.ParseDict(data, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    return decode_request(request)


def decode_request(request: Any) -> list[ReceivedSpan]:
    """The spans of a parsed ``ExportTraceServiceRequest``: shared by the HTTP and the gRPC receivers."""
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex() or None,
                        attributes=_attributes(span.attributes),
                        events=[{"name": e.name, **_attributes(e.attributes)} for e in span.events],
                        status=span.status.code,
                        resource=resource,
                        scope=scope_spans.scope.name,
                    )
                )
    return spans


def decode_metrics(body: bytes) -> list[ReceivedPoint]:
    """The data points of a protobuf ``ExportMetricsServiceRequest``."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    request = ExportMetricsServiceRequest()
    request.ParseFromString(body)
    points = []
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                for point in getattr(metric, kind).data_points if kind else ():
                    received = ReceivedPoint(metric.name, metric.unit, _attributes(point.attributes))
                    if kind in ("histogram", "exponential_histogram"):
                        received.count, received.total = point.count, point.sum
                    else:
                        received.total = getattr(point, point.WhichOneof("value") or "as_double")
                    points.append(received)
    return points


def decompress(raw: bytes, encoding: str | None) -> bytes:
    """The body under its ``Content-Encoding``: gzip, or deflate (zlib-wrapped as the standard exporter sends it,
    or raw as some clients do)."""
    encoding = (encoding or "").strip().lower()
    if encoding == "gzip":
        return gzip.decompress(raw)
    if encoding == "deflate":
        try:
            return zlib.decompress(raw)
        except zlib.error:
            return zlib.decompress(raw, -zlib.MAX_WBITS)
    return raw


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: without it each answer waits ~40 ms
    server: OtlpReceiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.server.delay:
            time.sleep(self.server.delay)
        status = self.server.status
        error = f"status {status}"
        export = Export(self.path, headers, raw, client_cn=self.server.client_cn(self.connection))
        try:
            export.raw = decompress(raw, headers.get("content-encoding"))
            if status == 200 and self.path.rstrip("/").endswith("/v1/metrics"):
                export.points = decode_metrics(export.raw)
            elif status == 200:
                json_body = headers.get("content-type", "").split(";")[0].strip() == "application/json"
                export.spans = (decode_json if json_body else decode)(export.raw)
        except Exception as exc:  # noqa: BLE001 - a body we cannot read gets a collector's answer: 400
            status, error = 400, f"undecodable body: {exc!r}"
        self.server.record(export)
        payload = json.dumps({} if status == 200 else {"error": error}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        if status != 200 and self.server.retry_after is not None:
            self.send_header("retry-after", self.server.retry_after)
        self.end_headers()
        self.wfile.write(payload)


def server_context(tls: TlsFiles, require_client_cert: bool = False) -> ssl.SSLContext:
    """A server-side TLS context with the test server certificate; verifying client certificates against the
    test CA when asked."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.server_cert, tls.server_key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=tls.ca_cert)
    return context


class OtlpReceiver(ThreadingHTTPServer):
    """``start()``, then point ``RESPAN_BASE_URL`` at ``base_url`` (traces arrive at ``/api/v2/traces``).

    ``status``, ``delay`` and ``retry_after`` may be changed while it runs. With ``tls`` it serves HTTPS (the
    certificate is valid for 127.0.0.1 and localhost); ``client_ca=True`` also requires a client certificate
    signed by the test CA. Failed TLS handshakes are kept in ``tls_errors`` rather than printed.
    """

    daemon_threads = True
    HANDSHAKE_TIMEOUT = 10.0  # seconds: a client that never finishes its handshake frees its thread

    def __init__(
        self,
        status: int = 200,
        *,
        delay: float = 0.0,
        retry_after: str | None = None,
        tls: TlsFiles | None = None,
        client_ca: bool = False,
    ) -> None:
        if client_ca and tls is None:
            raise ValueError("client_ca=True needs tls=TlsFiles(...)")
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status = status
        self.delay = delay  # seconds before each answer, to play a slow endpoint
        self.retry_after = retry_after  # Retry-After value sent with non-200 answers: seconds, a date, or junk
        self.tls = tls
        self.client_ca = client_ca
        self.exports: list[Export] = []
        self.tls_errors: list[str] = []
        self._lock = threading.Lock()
        self._tls_context = server_context(tls, client_ca) if tls is not None else None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        """``http(s)://127.0.0.1:PORT``: the origin, for endpoints not under Respan's ``/api``."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/api"

    @property
    def traces_url(self) -> str:
        """Where Respan's exporter posts: ``{base_url}/v2/traces``."""
        return f"{self.base_url}/v2/traces"

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Under TLS, shake hands here, in the connection's own thread, so a slow or failing client never blocks
        ``accept``; handshake failures (wrong CA, missing client certificate) are recorded, not raised."""
        if self._tls_context is None:
            super().finish_request(request, client_address)
            return
        try:
            request.settimeout(self.HANDSHAKE_TIMEOUT)
            connection = self._tls_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            with self._lock:
                self.tls_errors.append(repr(exc))
            return
        try:
            connection.settimeout(None)
            super().finish_request(connection, client_address)
        finally:
            self.shutdown_request(connection)

    @staticmethod
    def client_cn(connection: socket.socket) -> str | None:
        """The common name of the peer's verified certificate, if the connection is TLS and it sent one."""
        getpeercert = getattr(connection, "getpeercert", None)
        cert = getpeercert() if getpeercert else None
        for rdn in (cert or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return str(value)
        return None

    def record(self, export: Export) -> None:
        with self._lock:
            self.exports.append(export)

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return [span for export in self.exports for span in export.spans]

    @property
    def points(self) -> list[ReceivedPoint]:
        with self._lock:
            return [point for export in self.exports for point in export.points]

    def wait_for_spans(self, count: int, timeout: float = 5.0) -> list[ReceivedSpan]:
        """The received spans once there are at least ``count`` (or whatever arrived by ``timeout`` seconds)."""
        return _wait_for_spans(lambda: self.spans, count, timeout)

    def start(self) -> OtlpReceiver:
        threading.Thread(target=self.serve_forever, name="otlp-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def _wait_for_spans(spans: Any, count: int, timeout: float) -> list[ReceivedSpan]:
    deadline = time.monotonic() + timeout
    while len(current := spans()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return current
