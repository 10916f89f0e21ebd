"""Activating instrumentors: the ones passed in, and those discovered through entry points.

Any OpenTelemetry instrumentor instance is accepted. Only one Mistral instrumentor is ever
active, so that each Mistral call gives exactly one LLM span. One passed in explicitly wins,
whenever it comes: a discovered one already tracing Mistral (ours, under the launcher) is
uninstrumented first, and one line says so. Otherwise ours is used and other installed Mistral
instrumentors are skipped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from respan_auto._guard import report_once, warn_once

logger = logging.getLogger("respan_auto")

OUR_ENTRY_POINT = "respan_mistralai"
GROUP = "opentelemetry_instrumentor"
OUR_CLASS = "respan_auto.instrumentation.mistralai.MistralAIInstrumentor"


@dataclass
class _Owner:
    """The Mistral instrumentor in charge, and how it was instrumented (to put it back if a successor fails)."""

    label: str
    instrumentor: Any
    kwargs: Mapping[str, Any]
    explicit: bool


_active: set[str] = set()  # what this process has activated, by name
_mistral: _Owner | None = None


def _name_of(instrumentor: Any) -> str:
    cls = type(instrumentor)
    return f"{cls.__module__}.{cls.__qualname__}"


def targets_mistral(label: str) -> bool:
    return "mistral" in label.lower()


def _claim_mistral(label: str, explicit: bool) -> tuple[bool, _Owner | None]:
    """Whether ``label`` may trace Mistral, and the owner it displaces (to uninstrument) if any."""
    if _mistral is None:
        return True, None
    if explicit and not _mistral.explicit:
        return True, _mistral
    if explicit:
        warn_once(
            f"mistral-kept:{label}",
            "respan_auto: %s was not activated: %s, passed earlier, already traces Mistral "
            "(one Mistral instrumentor at a time, so that each call gives one span)",
            label,
            _mistral.label,
        )
    else:
        logger.debug("respan_auto: %s skipped: %s already traces Mistral", label, _mistral.label)
    return False, None


def _reinstate(owner: _Owner) -> None:
    """A successor failed: the displaced instrumentor traces Mistral again."""
    global _mistral
    try:
        if not getattr(owner.instrumentor, "is_instrumented_by_opentelemetry", False):
            owner.instrumentor.instrument(**owner.kwargs)
    except Exception as exc:  # noqa: BLE001
        report_once("reinstate a Mistral instrumentor", exc)
        return
    _mistral = owner
    _active.add(owner.label)


def _instrument(label: str, instrumentor: Any, kwargs: Mapping[str, Any], explicit: bool = False) -> bool:
    """Instrument one; a failure is one warning and never stops the others."""
    global _mistral
    if label in _active:
        return False
    displaced = None
    if targets_mistral(label):
        allowed, displaced = _claim_mistral(label, explicit)
        if not allowed:
            return False
        _mistral = _Owner(label, instrumentor, kwargs, explicit)
    try:
        already = getattr(instrumentor, "is_instrumented_by_opentelemetry", False)
        if displaced is not None:
            if already:  # the app instrumented it itself, on top of the displaced one: unwrap both, then it alone
                instrumentor.uninstrument()
                already = False
            displaced.instrumentor.uninstrument()
            _active.discard(displaced.label)
        if not already:
            instrumentor.instrument(**kwargs)
    except Exception as exc:  # noqa: BLE001
        if _mistral is not None and _mistral.label == label:
            _mistral = None
            if displaced is not None:
                _reinstate(displaced)
        warn_once(
            f"instrumentor:{label}",
            "respan_auto: instrumentor %s failed and was skipped (%s: %s)",
            label,
            type(exc).__name__,
            exc,
        )
        return False
    _active.add(label)
    if displaced is not None:
        _say_explicit_wins(label, displaced.label)
    return not already


def _say_explicit_wins(label: str, instead_of: str) -> None:
    """One line, whichever came first: the explicit instrumentor, or the one it keeps out."""
    warn_once(
        "explicit-mistral",
        "respan_auto: Mistral is traced by the instrumentor passed to Respan() (%s) instead of %s, "
        "so that each call gives one span",
        label,
        instead_of,
    )


def any_active() -> bool:
    """Whether any instrumentor is instrumented in this process: by us, or by the app itself."""
    if _active:
        return True
    from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

    pending = list(BaseInstrumentor.__subclasses__())
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        instance = cls.__dict__.get("_instance")
        if instance is not None and getattr(instance, "is_instrumented_by_opentelemetry", False):
            return True
    return False


def _providers(tracer_provider: Any, meter_provider: Any) -> dict[str, Any]:
    """The keyword arguments every instrumentor takes: our tracer provider, and our meter provider when we built one
    (else the global one, which is the app's if it set one up, is used)."""
    kwargs: dict[str, Any] = {"tracer_provider": tracer_provider}
    if meter_provider is not None:
        kwargs["meter_provider"] = meter_provider
    return kwargs


def activate_explicit(instrumentors: Iterable[Any], tracer_provider: Any, meter_provider: Any = None) -> list[str]:
    done = []
    for instrumentor in instrumentors:
        label = _name_of(instrumentor)
        kwargs = _providers(tracer_provider, meter_provider)
        if _instrument(label, instrumentor, kwargs, explicit=True):
            done.append(label)
    return done


def disabled_names(environ: Mapping[str, str]) -> set[str]:
    raw = environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def installed_entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    found = list(entry_points(group=GROUP))
    # ours first, so that it claims Mistral before another Mistral instrumentor can
    return sorted(found, key=lambda ep: ep.name != OUR_ENTRY_POINT)


def activate_discovered(
    tracer_provider: Any,
    skip: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
    meter_provider: Any = None,
) -> list[str]:
    """Every installed instrumentor whose library is installed, minus the disabled ones and ``skip``."""
    env = os.environ if environ is None else environ
    disabled = disabled_names(env) | set(skip)
    if "*" in disabled:
        return []
    from opentelemetry.instrumentation.dependencies import get_dist_dependency_conflicts

    done = []
    for ep in installed_entry_points():
        if ep.name in disabled or ep.value.split(":")[0] in disabled:
            continue
        label = f"{ep.name} ({ep.value})"
        try:
            dist = getattr(ep, "dist", None)
            if dist is not None and get_dist_dependency_conflicts(dist) is not None:
                continue  # its library is not installed: nothing to do, nothing to say
            if targets_mistral(ep.value) and _mistral is not None:
                if ep.name == OUR_ENTRY_POINT and _mistral.explicit and _mistral.label != OUR_CLASS:
                    _say_explicit_wins(_mistral.label, OUR_CLASS)
                continue
            instrumentor = ep.load()()
        except Exception as exc:  # noqa: BLE001
            warn_once(
                f"instrumentor:{label}",
                "respan_auto: instrumentor %s failed to load and was skipped (%s: %s)",
                label,
                type(exc).__name__,
                exc,
            )
            continue
        kwargs = {**_providers(tracer_provider, meter_provider), "skip_dep_check": True}
        if _instrument(OUR_CLASS if ep.name == OUR_ENTRY_POINT else label, instrumentor, kwargs):
            done.append(ep.name)
    return done
