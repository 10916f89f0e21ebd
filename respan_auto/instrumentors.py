"""Activating instrumentors: the ones passed in, and those discovered through entry points.

Any OpenTelemetry instrumentor instance is accepted. Only one Mistral instrumentor is ever
active, so that each Mistral call gives exactly one LLM span: one passed in explicitly wins;
otherwise ours is used and other installed Mistral instrumentors are skipped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from respan_auto._guard import warn_once

logger = logging.getLogger("respan_auto")

OUR_ENTRY_POINT = "respan_mistralai"
GROUP = "opentelemetry_instrumentor"

_active: set[str] = set()  # what this process has activated, by name
_mistral_owner: str | None = None


def _name_of(instrumentor: Any) -> str:
    cls = type(instrumentor)
    return f"{cls.__module__}.{cls.__qualname__}"


def targets_mistral(label: str) -> bool:
    return "mistral" in label.lower()


def _instrument(label: str, instrumentor: Any, kwargs: Mapping[str, Any]) -> bool:
    """Instrument one; a failure is one warning and never stops the others."""
    global _mistral_owner
    if label in _active:
        return False
    if targets_mistral(label):
        if _mistral_owner is not None:
            logger.debug("respan_auto: %s skipped: %s already traces Mistral", label, _mistral_owner)
            return False
        _mistral_owner = label
    try:
        if getattr(instrumentor, "is_instrumented_by_opentelemetry", False):
            _active.add(label)
            return False
        instrumentor.instrument(**kwargs)
    except Exception as exc:  # noqa: BLE001
        if _mistral_owner == label:
            _mistral_owner = None
        warn_once(
            f"instrumentor:{label}",
            "respan_auto: instrumentor %s failed and was skipped (%s: %s)",
            label,
            type(exc).__name__,
            exc,
        )
        return False
    _active.add(label)
    return True


OUR_CLASS = "respan_auto.instrumentation.mistralai.MistralAIInstrumentor"


def activate_explicit(instrumentors: Iterable[Any], tracer_provider: Any, capture_content: bool) -> list[str]:
    done = []
    for instrumentor in instrumentors:
        label = _name_of(instrumentor)
        kwargs: dict[str, Any] = {"tracer_provider": tracer_provider}
        if label == OUR_CLASS:
            kwargs["capture_content"] = capture_content
        if _instrument(label, instrumentor, kwargs):
            done.append(label)
    return done


def _disabled(environ: Mapping[str, str]) -> set[str]:
    raw = environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def _installed_entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    found = list(entry_points(group=GROUP))
    # ours first, so that it claims Mistral before another Mistral instrumentor can
    return sorted(found, key=lambda ep: ep.name != OUR_ENTRY_POINT)


def activate_discovered(
    tracer_provider: Any,
    capture_content: bool,
    skip: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """Every installed instrumentor whose library is installed, minus the disabled ones and ``skip``."""
    env = os.environ if environ is None else environ
    disabled = _disabled(env) | set(skip)
    if "*" in disabled:
        return []
    from opentelemetry.instrumentation.dependencies import get_dist_dependency_conflicts

    done = []
    for ep in _installed_entry_points():
        if ep.name in disabled or ep.value.split(":")[0] in disabled:
            continue
        label = f"{ep.name} ({ep.value})"
        try:
            dist = getattr(ep, "dist", None)
            if dist is not None and get_dist_dependency_conflicts(dist) is not None:
                continue  # its library is not installed: nothing to do, nothing to say
            if targets_mistral(ep.value) and _mistral_owner is not None:
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
        kwargs: dict[str, Any] = {"tracer_provider": tracer_provider, "skip_dep_check": True}
        if ep.name == OUR_ENTRY_POINT:
            kwargs["capture_content"] = capture_content
        if _instrument(OUR_CLASS if ep.name == OUR_ENTRY_POINT else label, instrumentor, kwargs):
            done.append(ep.name)
    return done
