"""The doctor's checks of the installation: versions, the instrumentors the launcher will activate, and conflicts.

The plan of instrumentors follows ``Respan(is_auto_instrument=True)`` (``instrumentors.activate_discovered``) step
by step, without instrumenting anything: what it would skip, and why, is what the user needs to see.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from importlib.machinery import PathFinder
from importlib.util import find_spec
from typing import Any

from respan_auto import distro, instrumentors, threads
from respan_auto.cli import launcher
from respan_auto.cli.doctor_report import Section, Setup, attempt
from respan_auto.instrumentation.mistralai import compat
from respan_auto.version import __version__

OTEL_DISTRIBUTIONS = (
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-instrumentation",
)
GRPC_EXPORTER = "opentelemetry-exporter-otlp-proto-grpc"
PIP_CHECK_SECONDS = 3.0
DISABLED_VARIABLE = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


# ---- versions ------------------------------------------------------------------------------------------------------


def mistral_layout() -> str | None:
    """The importable root of the installed SDK's chat module (``compat.ROOTS``), found without importing it."""
    spec = find_spec("mistralai")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        for root, _ in compat.ROOTS:
            relative = root.split(".")[1:]  # mistralai.client -> client/chat.py
            if os.path.isfile(os.path.join(location, *relative, "chat.py")):
                return root
    return None


def versions(section: Section, setup: Setup) -> None:
    section.facts.update(
        python={"version": platform.python_version(), "executable": sys.executable}, respan_auto=__version__
    )
    section.ok(f"Python {platform.python_version()} ({sys.executable})")
    section.ok(f"respan-auto {__version__}")
    mistral = _version("mistralai")
    layout = mistral_layout() if mistral else None
    generation = {"mistralai": "1.x", "mistralai.client": "2.x/3.x"}.get(layout or "")
    section.facts["mistralai"] = {"version": mistral, "generation": generation, "layout": layout}
    if mistral is None:
        section.problem("mistralai is not installed in this Python: there is nothing to trace (pip install mistralai)")
    elif layout is None:
        section.problem(f"mistralai {mistral} has a layout respan-auto does not know: its calls will not be traced")
    else:
        section.ok(f"mistralai {mistral}, the {generation} layout (from {layout} import Mistral)")
    otel = {name: _version(name) for name in (*OTEL_DISTRIBUTIONS, GRPC_EXPORTER)}
    section.facts["opentelemetry"] = otel
    section.ok(
        "OpenTelemetry " + " · ".join(f"{name.removeprefix('opentelemetry-')} {v}" for name, v in otel.items() if v)
    )
    for name in OTEL_DISTRIBUTIONS:
        if otel[name] is None:
            section.problem(f"{name} is not installed, though respan-auto needs it: pip install respan-auto again")


# ---- instrumentors -------------------------------------------------------------------------------------------------


def _why_off(setup: Setup) -> str | None:
    settings = setup.settings
    if not settings.enabled:
        return f"respan-auto is off ({setup.written('RESPAN_ENABLED')})"
    if settings.sdk_disabled:
        return "tracing is off (OTEL_SDK_DISABLED)"
    if not settings.tracing:
        return f"tracing is off ({setup.written('RESPAN_TRACING')})"
    return None


def _is_disabled(setup: Setup, ep: Any) -> bool:
    disabled = instrumentors.disabled_names(setup.environ)
    return "*" in disabled or ep.name in disabled or ep.value.split(":")[0] in disabled


def _plan_one(setup: Setup, ep: Any, mistral_owner: str | None) -> str | None:
    """Why the launcher would skip this entry point, or None when it would activate it."""
    from opentelemetry.instrumentation.dependencies import get_dist_dependency_conflicts

    off = _why_off(setup)
    if off:
        return off
    if ep.name == threads.CONTRIB_ENTRY_POINT:
        if not setup.settings.instrument_threading:
            return f"skipped, and threads get no trace context ({setup.written('RESPAN_INSTRUMENT_THREADING')})"
        return "skipped: respan-auto carries the trace context into threads"
    if _is_disabled(setup, ep):
        return f"skipped: {DISABLED_VARIABLE} names it"
    dist = getattr(ep, "dist", None)
    conflict = get_dist_dependency_conflicts(dist) if dist is not None else None
    if conflict is not None:
        return f"skipped: {conflict}"
    if instrumentors.targets_mistral(ep.value) and mistral_owner is not None:
        return f"skipped: {mistral_owner} traces Mistral"
    return None


def _label(ep: Any, value: bool = False) -> str:
    dist = getattr(ep, "dist", None)
    where = f"{dist.name} {dist.version}" if dist is not None else "no distribution"
    return f"{ep.name} = {ep.value} ({where})" if value else f"{ep.name} ({where})"


def _patched_methods(section: Section, layout: str) -> None:
    """Which of the methods we wrap each family's class has in the installed SDK (importing it, as the app will)."""
    import importlib

    from opentelemetry.metrics import get_meter
    from opentelemetry.trace import get_tracer

    from respan_auto.instrumentation.mistralai.call import Telemetry
    from respan_auto.instrumentation.mistralai.families import FAMILIES
    from respan_auto.instrumentation.mistralai.patch import family_wrappers

    telemetry = Telemetry(get_tracer(__name__), get_meter(__name__))
    section.facts["mistral_methods"] = facts = []
    for family in FAMILIES:
        wanted = list(family_wrappers(telemetry, family))
        module_name = f"{layout}.{family.module}"
        qualified = f"{module_name}.{family.class_name}"
        try:
            cls = getattr(importlib.import_module(module_name), family.class_name, None)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                section.problem(f"{module_name} cannot be imported ({type(error).__name__}: {error})")
            else:  # a family this SDK release does not have (speech before 2.x)
                section.note(f"{module_name} is not in this mistralai release: it has no {family.label} calls")
            continue
        except Exception as error:  # noqa: BLE001 - a broken SDK install is the finding
            section.problem(f"{module_name} cannot be imported ({type(error).__name__}: {error})")
            continue
        found = [name for name in wanted if isinstance(cls, type) and name in vars(cls)]
        missing = [name for name in wanted if name not in found]
        facts.append({"family": family.label, "class": qualified, "patched": found})
        if found:
            section.ok(f"patches {qualified}: {', '.join(found)}")
        if missing:
            section.problem(f"{qualified} has no {', '.join(missing)}: those calls are not traced")


def planned_instrumentors(section: Section, setup: Setup) -> None:
    plan: list[dict[str, Any]] = []
    mistral_owner: str | None = None
    for ep in instrumentors.installed_entry_points():
        skipped = _plan_one(setup, ep, mistral_owner)
        if skipped is None:
            try:
                ep.load()
            except Exception as error:  # noqa: BLE001 - the launcher would skip it with one line: so do we
                skipped = f"fails to load ({type(error).__name__}: {error})"
                section.problem(f"instrumentor {_label(ep)} {skipped}")
        if skipped is None and instrumentors.targets_mistral(ep.value):
            mistral_owner = ep.name
        plan.append({"name": ep.name, "value": ep.value, "active": skipped is None, "why_not": skipped})
        if skipped is None:
            section.ok(f"{_label(ep)}: active")
        elif not skipped.startswith("fails"):
            section.note(f"{_label(ep)}: {skipped}")
    section.facts["entry_points"] = plan
    section.facts["mistral"] = mistral_owner
    off = _why_off(setup)
    if off is None and mistral_owner is None:
        section.problem("no Mistral instrumentor will be active, so Mistral calls will not be traced")
    layout = mistral_layout() if _version("mistralai") else None
    if layout is not None and mistral_owner == instrumentors.OUR_ENTRY_POINT:
        _patched_methods(section, layout)


# ---- conflicts -----------------------------------------------------------------------------------------------------


def _other_mistral_instrumentors(section: Section, setup: Setup) -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=instrumentors.GROUP):
        if ep.name == instrumentors.OUR_ENTRY_POINT:
            continue
        if not (ep.name in distro.OTHER_MISTRAL_ENTRY_POINTS or instrumentors.targets_mistral(ep.value)):
            continue
        if _is_disabled(setup, ep):
            section.note(
                f"another Mistral instrumentor is installed, {_label(ep, True)}, but {DISABLED_VARIABLE} names it"
            )
        else:
            section.problem(
                f"another Mistral instrumentor is installed: {_label(ep, True)}; only one may trace Mistral: "
                f"uninstall it, or add {ep.name} to {DISABLED_VARIABLE}"
            )


def _other_distros(section: Section, setup: Setup) -> None:
    others = distro.entry_points_of(distro.DISTRO_GROUP)
    names = ", ".join(_label(ep) for ep in others)
    section.facts["other_distros"] = [ep.name for ep in others]
    if not others:
        return
    plain_run = bool(setup.command) and os.path.basename(setup.command[0]) == "opentelemetry-instrument"
    if plain_run and not distro.chosen(setup.environ):
        section.problem(
            f"opentelemetry-instrument will run another distro ({names}), not respan-auto's: "
            "set OTEL_PYTHON_DISTRO=respan, or run the program under respan-instrument"
        )
    else:
        section.note(
            f"another OpenTelemetry distro is installed, {names}: respan-instrument does not use it, and "
            "opentelemetry-instrument uses respan-auto's only with OTEL_PYTHON_DISTRO=respan or a RESPAN_* variable"
        )


def _user_sitecustomize(section: Section, setup: Setup) -> None:
    """The sitecustomize the launcher's own would chain to: the first one on this Python's path but ours."""
    ours = os.path.abspath(launcher.bootstrap_dir())
    path = [p for p in sys.path[1:] if os.path.abspath(p or os.curdir) != ours]
    spec = PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.origin is None:
        return
    section.facts["sitecustomize"] = spec.origin
    loaded = sys.modules.get("sitecustomize")
    if loaded is not None and getattr(loaded, "__file__", None) == spec.origin:
        section.note(f"your sitecustomize ({spec.origin}) is kept: respan-instrument's bootstrap runs it after its own")
    else:
        section.problem(f"your sitecustomize ({spec.origin}) does not import: Python skipped it at start-up")


def _command(section: Section, setup: Setup) -> None:
    command = setup.command
    if not command:
        return
    section.facts["command"] = command
    shown = " ".join(command)
    from shutil import which

    if which(command[0]) is None:
        section.problem(f"{command[0]} (in `{shown}`) is not found on PATH, so respan-instrument cannot run it")
        return
    flags = launcher.disabling_flags(command)
    if flags:
        section.problem(
            f"`{command[0]} {' '.join(flags)}` ignores PYTHONPATH or site customisation, so respan-instrument's "
            f"bootstrap does not run and `{shown}` will not be traced: drop {', '.join(flags)}"
        )
    else:
        section.ok(f"`{shown}` keeps PYTHONPATH and site customisation: respan-instrument's bootstrap will run")


def _user_site(section: Section, setup: Setup) -> None:
    """respan-auto installed with ``pip install --user`` is out of reach when user site-packages are off."""
    import site

    import respan_auto

    user_site = site.getusersitepackages()
    installed_there = os.path.abspath(respan_auto.__file__).startswith(os.path.abspath(user_site) + os.sep)
    if installed_there and (setup.environ.get("PYTHONNOUSERSITE") or "").strip():
        section.problem(
            f"respan-auto is installed in the user site-packages ({user_site}), which PYTHONNOUSERSITE turns off: "
            "the program cannot import it, so it will not be traced"
        )


def _pip_check(section: Section, setup: Setup) -> None:
    if find_spec("pip") is None:
        section.facts["pip_check"] = None
        section.note("pip check: not checked (pip is not installed in this Python)")
        return
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "check"],
            capture_output=True,
            text=True,
            timeout=PIP_CHECK_SECONDS,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
    except subprocess.TimeoutExpired:
        section.facts["pip_check"] = None
        section.note(f"pip check: not checked (it took longer than {PIP_CHECK_SECONDS:g} s)")
        return
    broken = [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode else []
    section.facts["pip_check"] = broken
    if done.returncode and not broken:
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        section.note(f"pip check: not checked (it failed: {why})")
    for line in broken:
        section.problem(f"pip check: {line}")
    if not done.returncode:
        section.ok("pip check: no broken requirements")


def conflicts(section: Section, setup: Setup) -> None:
    checks = {
        "other Mistral instrumentors": _other_mistral_instrumentors,
        "other distros": _other_distros,
        "sitecustomize": _user_sitecustomize,
        "command": _command,
        "user site-packages": _user_site,
        "pip check": _pip_check,
    }
    for name, check in checks.items():
        attempt(section, name, check, setup)
