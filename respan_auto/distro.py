"""Entry points for plain ``opentelemetry-instrument``: our distro and configurator, and when they act.

``opentelemetry-instrument`` runs one distro (the one ``OTEL_PYTHON_DISTRO`` names, else the first
installed) and one configurator (likewise with ``OTEL_PYTHON_CONFIGURATOR``), so merely having
respan-auto installed next to another distro could take over a run that never asked for Respan.

The rule: respan-auto acts in a plain ``opentelemetry-instrument`` run only when chosen:
``OTEL_PYTHON_DISTRO=respan``, or any ``RESPAN_*`` variable set, or no other distro installed
(``OTEL_PYTHON_DISTRO`` or ``OTEL_PYTHON_CONFIGURATOR`` naming another one wins, ``OTEL_PYTHON_CONFIGURATOR=respan``
chooses us too, and ``RESPAN_ENABLED=false`` always means no). When not chosen, the run behaves as it would
without respan-auto installed: our distro and configurator hand over to the ones OpenTelemetry would otherwise
have picked, and our Mistral instrumentor does nothing. Instrumenting in code
(``MistralAIInstrumentor().instrument(tracer_provider=...)``, ``Respan(...)``) is never affected.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro

from respan_auto._guard import report_once

try:
    from opentelemetry.sdk._configuration import _BaseConfigurator
except ImportError:  # pragma: no cover - very old SDKs
    _BaseConfigurator = object  # type: ignore[assignment,misc]

logger = logging.getLogger("respan_auto")

NAME = "respan"  # our entry-point name in both groups
DISTRO_GROUP = "opentelemetry_distro"
CONFIGURATOR_GROUP = "opentelemetry_configurator"
LOADER_MODULE = "opentelemetry.instrumentation.auto_instrumentation._load"  # where _load_instrumentors lives

# Entry-point names other projects give their Mistral instrumentors: ours traces Mistral.
OTHER_MISTRAL_ENTRY_POINTS = ("mistralai",)

_configured = False  # our configurator set the pipeline up in this process


def entry_points_of(group: str) -> list[Any]:
    """The group's entry points other than ours, in the order OpenTelemetry sees them."""
    entry_points: Callable[..., Iterable[Any]]  # either reader: both select by keyword
    try:
        from opentelemetry.util._importlib_metadata import entry_points
    except ImportError:  # pragma: no cover - a layout we do not know: the standard library's
        from importlib.metadata import entry_points
    return [ep for ep in entry_points(group=group) if not ep.value.startswith("respan_auto")]


def _named(environ: Mapping[str, str], variable: str) -> str | None:
    return environ.get(variable, "").strip() or None


def chosen(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this ``opentelemetry-instrument`` run asked for respan-auto (see the module's rule)."""
    env = os.environ if environ is None else environ
    for variable in ("OTEL_PYTHON_DISTRO", "OTEL_PYTHON_CONFIGURATOR"):
        name = _named(env, variable)
        if name is not None:
            return name == NAME
    if any(key.startswith("RESPAN_") and value.strip() for key, value in env.items()):
        return True
    return not _other_distros_installed()


@functools.lru_cache(maxsize=1)
def _other_distros_installed() -> bool:
    return bool(entry_points_of(DISTRO_GROUP))


def acts(environ: Mapping[str, str] | None = None) -> bool:
    """Chosen, and not switched off by ``RESPAN_ENABLED``."""
    from respan_auto.config import env_bool

    return chosen(environ) and env_bool("RESPAN_ENABLED", True, environ)


def _other_distro() -> BaseDistro | None:
    """The distro ``opentelemetry-instrument`` would have run without us (as its ``_load_distro`` picks)."""
    return _distro_named(_named(os.environ, "OTEL_PYTHON_DISTRO"))


@functools.lru_cache(maxsize=4)  # asked once per instrumentor entry point
def _distro_named(name: str | None) -> BaseDistro | None:
    for entry_point in entry_points_of(DISTRO_GROUP):
        if name is None or name == entry_point.name:
            distro = entry_point.load()()
            if isinstance(distro, BaseDistro):
                return distro
    return None


def _configure_as_without_us(**kwargs: Any) -> None:
    """Run the configurator ``opentelemetry-instrument`` would have run without us (as ``_load_configurators``)."""
    name = _named(os.environ, "OTEL_PYTHON_CONFIGURATOR")
    for entry_point in entry_points_of(CONFIGURATOR_GROUP):
        if name is None or name == entry_point.name:
            entry_point.load()().configure(**kwargs)
            return


def _set_up_pipeline() -> None:
    global _configured
    if _configured:
        return
    _configured = True
    from respan_auto.sdk import Respan

    Respan()  # the instrumentors are opentelemetry-instrument's job


class RespanDistro(BaseDistro):
    """Chosen: sets up the run for our configurator. Not chosen: the other distro's set-up, untouched."""

    def _configure(self, **kwargs: Any) -> None:
        if not acts():
            other = _other_distro()
            if other is not None:
                other.configure(**kwargs)
            return
        os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", NAME)
        disabled = [
            n.strip() for n in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",") if n.strip()
        ]
        disabled += [n for n in OTHER_MISTRAL_ENTRY_POINTS if n not in disabled]
        os.environ["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = ",".join(disabled)

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        other = None if acts() else _other_distro()
        if other is not None:
            other.load_instrumentor(entry_point, **kwargs)  # a distro may load its instrumentors its own way
        else:
            super().load_instrumentor(entry_point, **kwargs)


class RespanConfigurator(_BaseConfigurator):
    """Chosen: the Respan pipeline. Not chosen: the configurator the run would have had without us."""

    def _configure(self, **kwargs: Any) -> None:
        if acts():
            _set_up_pipeline()
        else:
            _configure_as_without_us(**kwargs)


def _loading_instrumentors() -> bool:
    """Whether ``opentelemetry-instrument``'s loader (``_load_instrumentors``) is what called us."""
    frame = sys._getframe(1)
    for _ in range(64):
        if frame is None:
            return False
        if frame.f_code.co_name == "_load_instrumentors" and frame.f_globals.get("__name__") == LOADER_MODULE:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def stands_down(instrumentor: Any) -> bool:
    """At the start of our Mistral instrumentor's ``instrument()``: True to do nothing in this run.

    Only the ``opentelemetry-instrument`` loader's call stands down, and only when respan-auto is not
    chosen (or is switched off); calls made in code always instrument. The loader does not give the
    configurator the last word: chosen, we set the pipeline up here if another configurator ran
    instead of ours. Standing down also forgets this (singleton) instance, which the loader marks
    as instrumented, so that a later ``MistralAIInstrumentor()`` in code is a fresh one that can
    instrument.
    """
    try:
        if not _loading_instrumentors():
            return False
        if acts():
            _set_up_pipeline()
            return False
        cls = type(instrumentor)
        if cls.__dict__.get("_instance") is instrumentor:
            cls._instance = None
        logger.debug("respan_auto: not chosen for this opentelemetry-instrument run; Mistral is not instrumented")
        return True
    except Exception as exc:  # noqa: BLE001 - the instrumentor goes on as before
        report_once("decide whether to stand down", exc)
        return False
