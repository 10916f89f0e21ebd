"""Wires one tracer provider: context attributes, then batching into the chosen exporter."""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from respan_auto.config import Settings
from respan_auto.context import ContextAttributesProcessor
from respan_auto.export.batch import BatchProcessor

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
        return OtlpHttpExporter(url, headers), url
    headers = {"Authorization": f"Bearer {settings.api_key}"}
    return OtlpHttpExporter(settings.traces_url, headers), settings.traces_url


class Pipeline:
    """The tracer provider respan_auto set up, or joined when the app had one already."""

    def __init__(self, settings: Settings, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.settings = settings
        exporter, self.destination = make_exporter(settings, env)
        self.processor = BatchProcessor(exporter)
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            self.provider = current  # the app's own: add to it rather than replace it
            self.joined = True
        else:
            resource = Resource.create({"service.name": settings.app_name} if settings.app_name else {})
            self.provider = TracerProvider(resource=resource, shutdown_on_exit=False)
            self.joined = False
        self.provider.add_span_processor(ContextAttributesProcessor())
        self.provider.add_span_processor(self.processor)
        if not self.joined:
            trace.set_tracer_provider(self.provider)
        atexit.register(self.exit_flush)

    def flush(self, timeout: float = 5.0) -> bool:
        return self.processor.force_flush(int(timeout * 1000))

    def exit_flush(self) -> None:
        """At exit: deliver what is queued, waiting no longer than the exit deadline."""
        if not self.flush(self.settings.exit_timeout):
            logger.warning(
                "respan_auto: not every span reached %s before exit (waited %.1f s)",
                self.destination,
                self.settings.exit_timeout,
            )
        if self.processor.dropped:
            logger.warning("respan_auto: dropped %d spans because the export queue was full", self.processor.dropped)

    def shutdown(self) -> None:
        atexit.unregister(self.exit_flush)
        self.exit_flush()
        self.processor.shutdown()
