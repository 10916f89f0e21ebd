"""A loopback OTLP/HTTP receiver that decodes what arrives: for tests and benchmarks.

It accepts protobuf (optionally gzip) and JSON trace exports on any path, records each request
with its headers, and can be told to answer with another status to play a failing endpoint.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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
class Export:
    path: str
    headers: dict[str, str]
    raw: bytes
    spans: list[ReceivedSpan] = field(default_factory=list)


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
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: OtlpReceiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = gzip.decompress(raw) if headers.get("content-encoding") == "gzip" else raw
        if self.server.delay:
            time.sleep(self.server.delay)
        status = self.server.status
        export = Export(self.path, headers, body)
        if status == 200:
            export.spans = decode(body)
        self.server.record(export)
        payload = json.dumps({} if status == 200 else {"error": f"status {status}"}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class OtlpReceiver(ThreadingHTTPServer):
    """``start()``, then point ``RESPAN_BASE_URL`` at ``base_url`` (traces arrive at ``/api/v2/traces``)."""

    daemon_threads = True

    def __init__(self, status: int = 200) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status = status
        self.delay = 0.0  # seconds before each answer, to play a slow endpoint
        self.exports: list[Export] = []
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api"

    def record(self, export: Export) -> None:
        with self._lock:
            self.exports.append(export)

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return [span for export in self.exports for span in export.spans]

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
