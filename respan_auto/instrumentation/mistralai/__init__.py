"""OpenTelemetry instrumentor for the Mistral AI Python SDK (mistralai 1.x, 2.x and 3.x).

Usage::

    from respan_auto.instrumentation.mistralai import MistralAIInstrumentor
    MistralAIInstrumentor().instrument(tracer_provider=provider)

Patching is lazy: ``instrument()`` never imports mistralai; each family's class (``families.FAMILIES``: chat,
agents, conversations, FIM, embeddings, classifiers, OCR, under each client's root) is patched when the app imports
it, and the run helpers' tool runs (``tool_runs``) when the app imports them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from types import ModuleType
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.metrics import get_meter
from opentelemetry.trace import get_tracer

from respan_auto import config
from respan_auto._guard import report_once, warn_once
from respan_auto.instrumentation.mistralai import compat, tool_runs
from respan_auto.instrumentation.mistralai.call import Telemetry
from respan_auto.instrumentation.mistralai.families import FAMILIES, Family
from respan_auto.instrumentation.mistralai.patch import Patcher, family_wrappers, patch_family_class, quiet_sdk_tracer
from respan_auto.version import __version__

_INSTRUMENTS = ("mistralai >= 1.0.0",)
CHUNK_EVENTS_VARIABLE = "RESPAN_CHUNK_EVENTS"

__all__ = ["MistralAIInstrumentor"]


class _Session:
    """One ``instrument()``..``uninstrument()`` period; post-import hooks act only while it is live."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.wrappers = {family: family_wrappers(telemetry, family) for family in FAMILIES}
        self.tool_run = tool_runs.tool_run_wrapper(telemetry.tracer, telemetry.pinned)
        self.patcher = Patcher()
        self.live = True

    def patcher_of(self, family: Family) -> Callable[[ModuleType], None]:
        """The post-import hook that patches ``family``'s class when its module is imported."""

        def patch(module: ModuleType) -> None:
            if not self.live:
                return
            try:
                cls = compat.family_class(module, family.class_name)
                if cls is not None:
                    patch_family_class(self.patcher, cls, self.wrappers[family], module.__name__)
            except Exception as exc:  # noqa: BLE001
                report_once(f"patch {family.label}", exc)

        return patch

    def quiet_sdk_tracing(self, module: ModuleType) -> None:
        if self.live and hasattr(module, compat.SDK_TRACER_FUNCTION):
            try:
                self.patcher.wrap(module, compat.SDK_TRACER_FUNCTION, quiet_sdk_tracer)
            except Exception as exc:  # noqa: BLE001
                report_once("patch SDK tracing hook", exc)

    def trace_tool_runs(self, module: ModuleType) -> None:
        """The run helpers' module: each client-side tool run becomes our ``execute_tool`` span."""
        if self.live and not self.patcher.wrap(module, tool_runs.RUNNER, self.tool_run):
            warn_once(
                "tool-runs",
                "respan_auto: %s has no %s; the run helpers' tool runs will not be traced",
                module.__name__,
                tool_runs.RUNNER,
            )

    def quiet_sdk_tool_runs(self, module: ModuleType) -> None:
        """The SDK's tools module: no span of its own inside ours."""
        if not self.live:
            return
        try:
            replaced = self.patcher.replace(module, tool_runs.TRACE_GLOBAL, tool_runs.QuietTraceModule)
        except Exception as exc:  # noqa: BLE001
            report_once("patch SDK tool-run tracing", exc)
            replaced = False
        if not replaced:
            warn_once(
                "sdk-tool-runs",
                "respan_auto: %s has a layout respan_auto does not know; the SDK's own tool-run spans (with their "
                "arguments and results, whatever the content switch says) may appear beside ours",
                module.__name__,
            )

    def check_layout(self, module: ModuleType) -> None:
        if self.live:
            compat.check_layout(module)

    def close(self) -> None:
        self.live = False
        self.patcher.restore()


class MistralAIInstrumentor(BaseInstrumentor):
    """Traces every family in ``families.FAMILIES`` (chat, agents, conversations, FIM, embeddings, classifiers,
    OCR), sync and async, on the main client and the Azure and Google Cloud ones, and the run helpers' tool runs.

    ``instrument()`` accepts ``tracer_provider``, ``meter_provider``, ``capture_content`` (False keeps this
    instrumentor's spans free of content; otherwise the process's switch decides at each call, see
    ``respan_auto.content``) and ``chunk_events`` (one timing event per stream chunk; default
    ``RESPAN_CHUNK_EVENTS``, else off).
    """

    _session: _Session | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return _INSTRUMENTS

    def _instrument(self, **kwargs: Any) -> None:
        import sys

        # under opentelemetry-instrument: do nothing in a run that did not choose respan-auto (see distro.py)
        if "opentelemetry.instrumentation.auto_instrumentation._load" in sys.modules:
            from respan_auto.distro import stands_down

            if stands_down(self):
                return
        capture = kwargs.get("capture_content")
        chunk_events = kwargs.get("chunk_events")
        if chunk_events is None:
            chunk_events = config.env_bool(CHUNK_EVENTS_VARIABLE, False)
        tracer = get_tracer(__name__, __version__, kwargs.get("tracer_provider"))
        meter = get_meter(__name__, __version__, kwargs.get("meter_provider"))
        telemetry = Telemetry(tracer, meter, None if capture is None else bool(capture), bool(chunk_events))
        session = _Session(telemetry)
        self._session = session
        for root, tracing_module in compat.ROOTS:
            compat.when_imported(root, session.check_layout)
            for family in FAMILIES:
                compat.when_imported(f"{root}.{family.module}", session.patcher_of(family))
            compat.when_imported(tracing_module, session.quiet_sdk_tracing)
        compat.when_imported(tool_runs.CONTEXT_MODULE, session.trace_tool_runs)
        compat.when_imported(tool_runs.TOOLS_MODULE, session.quiet_sdk_tool_runs)

    def _uninstrument(self, **kwargs: Any) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()
