"""``Respan(...)``: set up the pipeline once, apply defaults, activate instrumentors."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from respan_auto import content, context, instrumentors, threads
from respan_auto._guard import warn_once
from respan_auto.config import Settings
from respan_auto.export.pipeline import Pipeline

logger = logging.getLogger("respan_auto")

_lock = threading.Lock()
_pipeline: Pipeline | None = None


def _announce(pipeline: Pipeline) -> None:
    if pipeline.settings.export_target == "local" and not os.environ.get("RESPAN_ANNOUNCED"):
        os.environ["RESPAN_ANNOUNCED"] = "1"  # children of this process stay quiet
        from respan_auto.export import local_store  # the local destination has imported it

        path = pipeline.settings.local_store
        problem = local_store.store_problem(path)
        if problem is not None:
            local_store.say_not_a_store(path, problem)
            return
        logger.warning(
            "respan_auto: no RESPAN_API_KEY or OTLP endpoint set: traces are kept in %s "
            "(view them with `respan-instrument traces`)",
            path,
        )


# Their presence means a launcher activates the instrumentors itself: ours, or opentelemetry-instrument's loader.
LAUNCHER_MODULES = ("respan_auto.bootstrap", "opentelemetry.instrumentation.auto_instrumentation")


def _say_if_nothing_traces() -> None:
    """``Respan()`` with no instrumentor at all would export only decorator spans, which is rarely what was meant."""
    if any(name in sys.modules for name in LAUNCHER_MODULES) or instrumentors.any_active():
        return
    warn_once(
        "no-instrumentor",
        "respan_auto: no instrumentor is active, so Mistral calls are not traced; "
        "pass is_auto_instrument=True or instrumentations=[...] to Respan()",
    )


def _apply_gateway(settings: Settings) -> None:
    from respan_auto import gateway

    if not settings.gateway:
        return
    if not settings.api_key:
        logger.warning(
            "respan_auto: the gateway needs RESPAN_API_KEY; until a key is given, Mistral calls go to Mistral directly"
        )
        return
    gateway.enable(settings.gateway_url, settings.api_key)


class Respan:
    """Trace this process to Respan (or any OTLP endpoint, or the local store).

    Arguments override the RESPAN_* variables. A second ``Respan(...)`` in the same process
    keeps the first pipeline, applies its defaults and activates its instrumentors. ``redact``
    is called on every captured string before it leaves the process, after the built-in policy.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        instrumentations: Sequence[Any] | None = None,
        is_auto_instrument: bool | None = False,
        customer_identifier: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        environment: str | None = None,
        app_name: str | None = None,
        trace_content: bool | None = None,
        enabled: bool | None = None,
        gateway: bool | None = None,
        tracing: bool | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        arguments = dict(locals())
        del arguments["self"]
        self.activated: list[str] = []
        self._pipeline: Pipeline | None = None
        try:
            self._start(**arguments)
        except Exception as exc:  # noqa: BLE001 - the last resort of "never raise": the app runs untraced
            warn_once(
                "respan-setup",
                "respan_auto: set-up failed (%s); this process runs without tracing. Please report it",
                type(exc).__name__,
            )

    def _start(
        self,
        api_key: str | None,
        base_url: str | None,
        instrumentations: Sequence[Any] | None,
        is_auto_instrument: bool | None,
        customer_identifier: str | None,
        metadata: Mapping[str, Any] | None,
        environment: str | None,
        app_name: str | None,
        trace_content: bool | None,
        enabled: bool | None,
        gateway: bool | None,
        tracing: bool | None,
        redact: Callable[[str], str] | None,
    ) -> None:
        global _pipeline
        self.settings = settings = Settings.load(
            api_key=api_key,
            base_url=base_url,
            customer_identifier=customer_identifier,
            metadata=metadata,
            environment=environment,
            app_name=app_name,
            trace_content=trace_content,
            enabled=enabled,
            gateway=gateway,
            tracing=tracing,
        )
        if not settings.enabled:
            logger.info("respan_auto: off (RESPAN_ENABLED=false)")
            return
        context.add_defaults(
            context.to_attributes(
                {"customer_identifier": settings.customer_identifier, "environment": settings.environment},
                settings.metadata,
            )
        )
        content.set_from_code(settings.trace_content if trace_content is not None else None)
        _apply_gateway(settings)
        if not settings.tracing or settings.sdk_disabled:
            reason = "OTEL_SDK_DISABLED=true" if settings.sdk_disabled else "RESPAN_TRACING=false"
            logger.info("respan_auto: tracing is off (%s)", reason)
            return
        with _lock:
            first = _pipeline is None
            if _pipeline is None:
                _pipeline = Pipeline(settings, redact=redact)
            self._pipeline = pipeline = _pipeline
        provider = pipeline.provider
        meters = pipeline.meter_provider
        self.activated += instrumentors.activate_explicit(instrumentations or (), provider, meters)
        if is_auto_instrument:
            if settings.instrument_threading and threads.instrument():
                self.activated.append(threads.CONTRIB_ENTRY_POINT)
            # ours carries the context into threads (or, switched off, nothing does): never the contrib one too
            skip = (threads.CONTRIB_ENTRY_POINT,)
            self.activated += instrumentors.activate_discovered(provider, skip=skip, meter_provider=meters)
        if first:
            _announce(pipeline)
        else:
            logger.warning(
                "respan_auto: Respan() was already set up in this process; kept its pipeline (to %s), "
                "applied the new defaults and activated %d more instrumentor(s)",
                pipeline.destination,
                len(self.activated),
            )
        if not instrumentations and not is_auto_instrument:
            _say_if_nothing_traces()

    def flush(self, timeout: float = 5.0) -> bool:
        """Send every ended span now; True if all were delivered within ``timeout`` seconds."""
        return self._pipeline.flush(timeout) if self._pipeline is not None else True

    def shutdown(self) -> None:
        """Flush, then stop exporting. Spans ended afterwards are not sent."""
        if self._pipeline is not None:
            self._pipeline.shutdown()
