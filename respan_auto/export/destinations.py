"""Where spans go: Respan, an OTLP endpoint (HTTP or gRPC), both, or the local store.

Each network destination is the standard OTLP exporter, whose network call is handed to a sender
of ours (``transport.py``), behind the SDK's ``BatchSpanProcessor`` with our two thin stages. The
standard exporter reads every ``OTEL_EXPORTER_OTLP_*`` variable itself; for Respan we pass the
endpoint, the key and gzip, and keep other backends' headers and certificates away from it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from respan_auto._guard import warn_once
from respan_auto.config import Settings, otlp_endpoint_configured
from respan_auto.export.limits import Cleaner, Redactor, Trimmer
from respan_auto.export.sender import Sender, Transport
from respan_auto.export.stages import EndStage, ExportStage, Waiting

logger = logging.getLogger("respan_auto")

DOOR_SPANS = 2048
REQUEST_SLACK = 16 * 1024  # resource and scope headers of a request, beside its spans


@dataclass
class Destination:
    name: str  # where spans go, for messages: a URL or a path (never a key)
    tag: str  # "respan", "otlp" or "local": spool file prefix
    processor: EndStage
    waiting: Waiting
    sender: Sender | None = None
    transport: Transport | None = None

    def encode_queued(self, deadline: float) -> bool:
        """The batch processor's flush, bounded by ``deadline``: some SDK versions ignore its timeout."""
        done = threading.Event()

        def run() -> None:
            try:
                self.processor.force_flush(max(1, int((deadline - time.monotonic()) * 1000)))
            finally:
                done.set()

        try:
            threading.Thread(target=run, name="respan-flush", daemon=True).start()
        except RuntimeError:  # at interpreter shutdown (Python 3.12+) no thread may start: flush here
            run()
        return done.wait(max(0.0, deadline - time.monotonic())) and self.waiting.spans == 0

    def flush(self, timeout: float) -> bool:
        """Deliver everything ended so far within ``timeout`` seconds; True if it all arrived."""
        deadline = time.monotonic() + timeout
        ok = self.encode_queued(deadline)
        if self.sender is not None:
            ok = self.sender.wait_idle(max(0.0, deadline - time.monotonic())) and ok
        return ok


def respan_exporter(settings: Settings) -> tuple[SpanExporter, Transport]:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from respan_auto.export.transport import HandoffSession, HttpTransport

    session = HandoffSession(sink=_unbound, respan=True)
    exporter = OTLPSpanExporter(
        endpoint=settings.traces_url,
        headers={"Authorization": f"Bearer {settings.api_key}"},
        compression=Compression.NoCompression,  # the session gzips, at level 1
        session=session,
    )
    return exporter, HttpTransport(session, settings.traces_url, "RESPAN_API_KEY")


def otlp_http_exporter() -> tuple[SpanExporter, Transport]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from respan_auto.export.transport import HandoffSession, HttpTransport

    session = HandoffSession(sink=_unbound)
    exporter = OTLPSpanExporter(session=session)
    target = str(getattr(exporter, "_endpoint", "the OTLP endpoint"))
    return exporter, HttpTransport(session, target, "OTEL_EXPORTER_OTLP_HEADERS")


def otlp_grpc_exporter(environ: Mapping[str, str]) -> tuple[SpanExporter, Transport] | None:
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError:
        warn_once(
            "grpc-missing",
            "respan_auto: OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the gRPC exporter: pip install 'respan-auto[grpc]'. "
            "Until then neither spans nor metrics are sent to the OTLP endpoint",
        )
        return None
    from respan_auto.export.transport import GrpcHandoff, GrpcTransport

    exporter = OTLPSpanExporter()
    stub = getattr(exporter, "_client", None)
    if stub is None or not hasattr(stub, "Export"):
        warn_once("grpc-layout", "respan_auto: unknown gRPC exporter layout; spans go through it without our retries")
        return None
    handoff = GrpcHandoff(stub, _unbound)
    exporter._client = handoff  # type: ignore[assignment]  # the exporter declares its stub as None until it connects
    target = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or ""
    return exporter, GrpcTransport(handoff, target or "localhost:4317", "OTEL_EXPORTER_OTLP_HEADERS")


def _unbound(payload: Any) -> None:  # replaced by the sender's submit once it exists
    raise RuntimeError("sender not bound")


def otlp_protocol(environ: Mapping[str, str]) -> str:
    raw = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    protocol = raw.strip().lower() or "http/protobuf"
    if protocol not in ("grpc", "http/protobuf"):
        warn_once(
            "otlp-protocol",
            "respan_auto: OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported here; using http/protobuf",
            raw,
        )
        protocol = "http/protobuf"
    return protocol


def _encoded_sender(exporter: SpanExporter, transport: Transport | None) -> Any:
    if transport is None or not hasattr(transport, "session"):
        return None  # the local store, and gRPC (whose stub takes a protobuf object): the exporter encodes
    from respan_auto.export.transport import encoded_sender

    return encoded_sender(exporter)


def _bind(exporter: SpanExporter, transport: Transport, sender: Sender) -> None:
    sink = transport.session if hasattr(transport, "session") else transport.handoff  # type: ignore[attr-defined]
    sink.sink = sender.submit
    from respan_auto.export.transport import batch

    batch.spans = 0
    try:
        exporter.export([])  # learns the request's address and headers, for spooled requests; sends nothing
    except Exception:  # noqa: BLE001 - only a lesson; a failure here shows at the first real export
        pass


def _stack(
    name: str, tag: str, exporter: SpanExporter, transport: Transport | None, settings: Settings, cleaner: Cleaner
) -> Destination:
    queue = settings.max_queue_size
    # The door to the batch processor is wide (bytes bound it): RESPAN_MAX_QUEUE_SIZE bounds the requests waiting
    # to be sent, where spans pile up in an outage and where the oldest can be dropped first.
    door = max(queue, DOOR_SPANS)
    waiting = Waiting(door, settings.max_queue_bytes)
    request_budget = max(settings.max_export_bytes - REQUEST_SLACK, settings.max_export_bytes // 2)
    stage = ExportStage(exporter, cleaner, waiting, request_budget, _encoded_sender(exporter, transport))
    batch_size = min(settings.max_export_batch_size, queue)
    processor = BatchSpanProcessor(
        stage,
        max_queue_size=door,
        schedule_delay_millis=settings.schedule_delay_millis,
        max_export_batch_size=batch_size,
    )
    trimmer = Trimmer(settings.max_attribute_length, request_budget)
    destination = Destination(name, tag, EndStage(processor, trimmer, waiting), waiting)
    if transport is not None:
        destination.sender = Sender(transport, queue, settings.max_queue_bytes)
        destination.transport = transport
        _bind(exporter, transport, destination.sender)
    return destination


def build(settings: Settings, environ: Mapping[str, str], redactor: Redactor | None) -> list[Destination]:
    """Every destination the settings name; one line when spans go to two places."""
    cleaner = Cleaner(redactor)
    built: list[Destination] = []
    if settings.api_key:
        exporter, transport = respan_exporter(settings)
        built.append(_stack(settings.traces_url, "respan", exporter, transport, settings, cleaner))
    if otlp_endpoint_configured(environ):
        made = otlp_grpc_exporter(environ) if otlp_protocol(environ) == "grpc" else otlp_http_exporter()
        if made is not None:
            exporter, transport = made
            built.append(_stack(transport.target, "otlp", exporter, transport, settings, cleaner))
    if len(built) == 2:
        logger.warning(
            "respan_auto: RESPAN_API_KEY and an OTLP endpoint are both set: spans go to both, %s and %s",
            built[0].name,
            built[1].name,
        )
    if not built and not (settings.api_key or otlp_endpoint_configured(environ)):
        from respan_auto.export.local_store import LocalStoreExporter

        exporter = LocalStoreExporter(
            settings.local_store, max_bytes=settings.local_max_bytes, max_age=settings.local_max_age
        )
        built.append(_stack(f"the local store {settings.local_store}", "local", exporter, None, settings, cleaner))
    return built
