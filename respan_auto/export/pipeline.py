"""Wires one tracer provider: context attributes, then batching into the chosen exporter."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExporter

from respan_auto.config import Settings
from respan_auto.context import ContextAttributesProcessor
from respan_auto.export import process_end, provider
from respan_auto.export.batch import BatchProcessor
from respan_auto.export.limits import Redactor, SpanPreparer

logger = logging.getLogger("respan_auto")


def make_exporter(settings: Settings, environ: Mapping[str, str]) -> tuple[SpanExporter, str]:
    """The exporter for the settings, and a description of where spans go (never the key)."""
    target = settings.export_target
    if target == "local":
        from respan_auto.export.local_store import LocalStoreExporter

        return LocalStoreExporter(settings.local_store), f"the local store {settings.local_store}"
    from respan_auto.export.otlp import OtlpHttpExporter, otlp_target

    if target == "otlp":
        url, headers = otlp_target(environ)
    else:
        url, headers = settings.traces_url, {"Authorization": f"Bearer {settings.api_key}"}
    return OtlpHttpExporter(url, headers, max_request_bytes=settings.max_export_bytes), url


def make_preparer(
    settings: Settings, environ: Mapping[str, str], redact: Callable[[str], str] | None = None
) -> SpanPreparer:
    secrets = (settings.api_key, environ.get("RESPAN_API_KEY"), environ.get("MISTRAL_API_KEY"))
    redactor = Redactor(secrets, settings.redact_patterns, builtin=settings.redact_keys, hook=redact)
    return SpanPreparer(redactor, settings.max_attribute_length)


class Pipeline:
    """The tracer provider respan_auto set up, or joined when the app had one already."""

    def __init__(
        self,
        settings: Settings,
        environ: Mapping[str, str] | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.settings = settings
        self.exporter, self.destination = make_exporter(settings, env)
        self.processor = BatchProcessor(
            self.exporter, max_queue_size=settings.max_queue_size, prepare=make_preparer(settings, env, redact)
        )
        resource = Resource.create({"service.name": settings.app_name} if settings.app_name else {})
        handle = provider.install([ContextAttributesProcessor(), self.processor], resource)
        self.provider, self.joined = handle.provider, handle.joined
        process_end.install(self.exit_flush)
        self.spool = None
        if settings.spool_dir and hasattr(self.exporter, "post"):
            from respan_auto.export.spool import Spool

            self.spool = Spool(settings.spool_dir)
            threading.Thread(target=self.deliver_spool, name="respan-spool", daemon=True).start()

    def deliver_spool(self) -> tuple[int, int]:
        """Send what earlier runs left in the spool."""
        if self.spool is None:
            return 0, 0
        return self.spool.deliver(lambda body: self.exporter.post(body).ok)

    def flush(self, timeout: float = 5.0) -> bool:
        return self.processor.force_flush(int(timeout * 1000))

    def exit_flush(self) -> None:
        """At exit: deliver what is queued within the deadline; spool or report the rest, once."""
        if not self.flush(self.settings.exit_timeout):
            left = self.processor.undelivered()
            if self.spool is not None and left:
                written = self.spool.write(self.exporter.encode(left))
                logger.warning(
                    "respan_auto: %d span(s) not yet delivered to %s were spooled to %s (%d file(s))",
                    len(left),
                    self.destination,
                    self.settings.spool_dir,
                    written,
                )
            else:
                logger.warning(
                    "respan_auto: %d span(s) did not reach %s before exit (waited %.1f s, RESPAN_EXIT_TIMEOUT; "
                    "RESPAN_SPOOL_DIR keeps them for the next run)",
                    len(left),
                    self.destination,
                    self.settings.exit_timeout,
                )
        lost = self.processor.dropped + self.processor.failed
        if lost:
            logger.warning(
                "respan_auto: %d span(s) were dropped (%d: export queue full, RESPAN_MAX_QUEUE_SIZE; %d: refused)",
                lost,
                self.processor.dropped,
                self.processor.failed,
            )

    def shutdown(self) -> None:
        self.exit_flush()
        self.processor.shutdown()
