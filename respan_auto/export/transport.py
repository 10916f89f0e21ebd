"""Where the standard OTLP exporters meet our sender.

The standard exporters resolve every ``OTEL_EXPORTER_OTLP_*`` variable, encode the batch and
compress it. Their last step, the network call, lands here: the HTTP exporter's ``requests``
session and the gRPC exporter's stub are replaced by stand-ins that hand the finished request to
the sender and answer "accepted". The sender then makes the real call through the same session or
channel (pooled connections, the exporter's TLS settings), so retries, the bounded queue, the
spool and one-line failure reports are ours, while encoding and configuration stay standard.
"""

from __future__ import annotations

import gzip
import logging
import threading
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import requests

from respan_auto.export.sender import DELIVERED, Outcome, Payload

logger = logging.getLogger("respan_auto")

# Set by the exporter wrapper around each standard ``export`` call: how many spans the request carries.
batch = threading.local()

Sink = Callable[[Payload], None]

# What a Respan request may carry: nothing from OTEL_EXPORTER_OTLP_HEADERS, which is meant for another backend.
_RESPAN_HEADERS = frozenset({"authorization", "content-type", "content-encoding", "user-agent"})
_RETRY_STATUS = frozenset({408, 429})


class Reporter:
    """One warning per kind of failure, and one line when export works again."""

    def __init__(self, target: str, key_hint: str) -> None:
        self.target = target
        self.key_hint = key_hint
        self._said: set[str] = set()
        self.failing = False

    def once(self, kind: str, message: str, *args: object) -> None:
        self.failing = True
        if kind not in self._said:
            self._said.add(kind)
            logger.warning(message, *args)

    def working(self) -> None:
        if self.failing:
            self.failing = False
            logger.info("respan_auto: export to %s works again", self.target)

    def unreachable(self, error: BaseException) -> Outcome:
        self.once(
            "unreachable",
            "respan_auto: cannot reach %s (%s); spans are kept and retried, not yet delivered",
            self.target,
            type(error).__name__,
        )
        return Outcome(ok=False, retry=True, answered=False)

    def transient(self, answer: str, retry_after: float | None = None) -> Outcome:
        self.once(answer, "respan_auto: %s answered %s; spans are kept and retried", self.target, answer)
        return Outcome(ok=False, retry=True, retry_after=retry_after)

    def refused(self, answer: str, auth: bool) -> Outcome:
        if auth:
            self.once(
                "auth",
                "respan_auto: %s rejected the %s (%s); check %s. Spans are not being delivered",
                self.target,
                "API key" if self.key_hint == "RESPAN_API_KEY" else "credentials",
                answer,
                self.key_hint,
            )
        else:
            self.once(answer, "respan_auto: %s refused a span export (%s)", self.target, answer)
        return Outcome(ok=False, cause=answer)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date); None when unreadable."""
    import email.utils
    import math
    import time

    if not value:
        return None
    try:
        seconds = float(value)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _accepted(url: str) -> requests.Response:
    response = requests.Response()
    response.status_code = 202
    response.reason = "Accepted"
    response.url = url
    response._content = b""
    return response


class HandoffSession(requests.Session):
    """The HTTP exporter's session: ``request`` queues, ``deliver`` sends for real."""

    def __init__(self, sink: Sink, respan: bool = False) -> None:
        super().__init__()
        self.sink = sink
        self.respan = respan  # Respan's endpoint: system CAs and our headers only, whatever OTEL_* says
        self.learned: dict[str, Any] = {}
        self._prepared_requests: dict[tuple[Any, ...], tuple[Any, dict[str, Any]]] = {}

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """Called by the standard exporter on its batch thread: hand the request over and answer at once."""
        headers = dict(kwargs.get("headers") or {})
        data = kwargs.get("data") or b""
        if self.respan:
            headers = {k: v for k, v in headers.items() if k.lower() in _RESPAN_HEADERS}
            # the standard exporter's gzip is level 9: level 1 keeps most of the saving at a fraction of the CPU
            headers["Content-Encoding"] = "gzip"
            data = gzip.compress(data, compresslevel=1)
        meta = {
            "url": url,
            "headers": headers,
            "timeout": kwargs.get("timeout"),
            "verify": kwargs.get("verify"),
            "cert": kwargs.get("cert"),
        }
        self.learned = meta
        spans = getattr(batch, "spans", 0)
        if spans:
            self.sink(Payload(data, spans, meta))
        return _accepted(str(url))

    def deliver(self, payload: Payload) -> requests.Response:
        meta = payload.meta
        verify, cert = meta.get("verify"), meta.get("cert")
        if self.respan:
            verify, cert = None, None
        elif verify is None and isinstance(self.verify, str):
            verify = self.verify  # an explicit CA wins over REQUESTS_CA_BUNDLE, which requests would prefer
        timeout = max(1.0, float(meta.get("timeout") or 10.0))
        headers = meta.get("headers") or {}
        if self.cookies or self.auth is not None:  # state that requests merges in per request: let it
            return super().request(
                "POST",
                meta["url"],
                data=payload.body,
                headers=headers or None,
                timeout=timeout,
                verify=verify,
                cert=cert,
                allow_redirects=False,
            )
        request = self._prepared(meta["url"], headers, verify, cert)
        prepared, settings = request[0].copy(), request[1]
        prepared.prepare_body(payload.body, None)
        return self.send(prepared, timeout=timeout, allow_redirects=False, **settings)

    def _prepared(self, url: str, headers: Mapping[str, str], verify: Any, cert: Any) -> tuple[Any, dict[str, Any]]:
        """The request as ``Session.request`` would prepare it, and its environment settings, once per target.

        ``request`` merges the session's headers and reads the proxy and CA variables on every call, which
        costs more CPU than the rest of a loopback post; the variables are read at the first request instead.
        """
        key = (url, tuple(headers.items()), verify, str(cert))
        cached = self._prepared_requests.get(key)
        if cached is None:
            prepared = self.prepare_request(requests.Request("POST", url, headers=dict(headers)))
            settings = self.merge_environment_settings(prepared.url or url, {}, None, verify, cert)
            cached = self._prepared_requests[key] = (prepared, settings)
        return cached

    def content_encoding(self, meta: Mapping[str, Any]) -> str:
        merged = {k.lower(): v for k, v in (*self.headers.items(), *meta["headers"].items())}
        return str(merged.get("content-encoding", "")).lower()


def encoded_sender(exporter: Any) -> Callable[[bytes, int], bool] | None:
    """The standard HTTP exporter's own send step, for a request already encoded (``encoding.py``).

    What it runs is the exporter's: compression, headers, timeout, TLS files and the session (ours, above).
    Only the encoding is skipped. None when the exporter is not the standard HTTP one or has a layout we do
    not know: then it encodes as well.
    """
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if not isinstance(exporter, OTLPSpanExporter):
        return None
    client: Any = getattr(exporter, "_client", None)
    legacy: Any = getattr(exporter, "_export", None)
    if callable(getattr(client, "export", None)):  # 1.45 and later: the exporter's HTTP client

        def post(data: bytes) -> bool:
            return bool(client.export(data).success)

    elif callable(legacy):  # up to 1.44: the exporter's compress-and-post step

        def post(data: bytes) -> bool:
            return bool(legacy(data).ok)

    else:
        return None
    # the exporter's own metrics of its exports (OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED), where it keeps them
    operation = getattr(getattr(exporter, "_metrics", None), "export_operation", None)
    if operation is None:
        return lambda data, spans: post(data)

    def send(data: bytes, spans: int) -> bool:
        with operation(spans):
            return post(data)

    return send


class HttpTransport:
    def __init__(self, session: HandoffSession, target: str, key_hint: str) -> None:
        self.session = session
        self.target = target
        self.report = Reporter(target, key_hint)

    def send(self, payload: Payload) -> Outcome:
        try:
            response = self.session.deliver(payload)
        except requests.RequestException as error:
            return self.report.unreachable(error)
        status = response.status_code
        response.close()
        if 200 <= status < 300:
            self.report.working()
            return DELIVERED
        if status in _RETRY_STATUS or status >= 500:
            return self.report.transient(f"HTTP {status}", parse_retry_after(response.headers.get("Retry-After")))
        return self.report.refused(f"HTTP {status}", auth=status in (401, 403))

    def raw(self, payload: Payload) -> bytes:
        encoding = self.session.content_encoding(payload.meta)
        if encoding == "gzip":
            return gzip.decompress(payload.body)
        if encoding == "deflate":
            return zlib.decompress(payload.body)
        return payload.body

    def from_raw(self, raw: bytes, spans: int) -> Payload:
        meta = dict(self.session.learned)
        encoding = self.session.content_encoding(meta)
        body = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw) if encoding == "deflate" else raw
        return Payload(body, spans, meta)


class GrpcHandoff:
    """Stands in for the gRPC exporter's stub: ``Export`` queues the serialized request."""

    def __init__(self, stub: Any, sink: Sink) -> None:
        self.stub = stub
        self.sink = sink
        self.learned: dict[str, Any] = {}

    def Export(self, request: Any, metadata: Any = None, timeout: float | None = None, **_: Any) -> Any:  # noqa: N802 - the stub's name
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        meta = {"metadata": metadata, "timeout": timeout}
        self.learned = meta
        spans = getattr(batch, "spans", 0)
        if spans:
            self.sink(Payload(request.SerializeToString(), spans, meta))
        return ExportTraceServiceResponse()


_GRPC_RETRY = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "CANCELLED", "OUT_OF_RANGE", "DATA_LOSS"}
)


class GrpcTransport:
    def __init__(self, handoff: GrpcHandoff, target: str, key_hint: str) -> None:
        self.handoff = handoff
        self.target = target
        self.report = Reporter(target, key_hint)

    def send(self, payload: Payload) -> Outcome:
        import grpc
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        meta = payload.meta
        try:
            self.handoff.stub.Export(
                request=ExportTraceServiceRequest.FromString(payload.body),
                metadata=meta.get("metadata"),
                timeout=max(1.0, float(meta.get("timeout") or 10.0)),
            )
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else None
            name = getattr(code, "name", "UNKNOWN")
            if name == "UNAVAILABLE":
                return self.report.unreachable(error)
            if name in _GRPC_RETRY:
                return self.report.transient(f"gRPC {name}")
            return self.report.refused(f"gRPC {name}", auth=name in ("UNAUTHENTICATED", "PERMISSION_DENIED"))
        self.report.working()
        return DELIVERED

    def raw(self, payload: Payload) -> bytes:
        return payload.body

    def from_raw(self, raw: bytes, spans: int) -> Payload:
        return Payload(raw, spans, dict(self.handoff.learned))
