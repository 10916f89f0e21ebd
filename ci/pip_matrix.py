"""Plain pip, as most users install: the wheel must go in beside each mistralai generation and into apps that already
run OpenTelemetry, with no resolver failure, nothing downgraded, a clean ``pip check``, and a working import, launcher
and trace.

The test sessions install with uv, which resolves differently, so this runs pip itself, in throw-away venvs made with
``python -m venv``. ``nox -s pip_install`` runs it; by hand, from the project root: ``python3 ci/pip_matrix.py``.
Exits 1 if any case fails; the last line is ``install matrix: N/M hold``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

try:
    from packaging.version import InvalidVersion, Version
except ImportError:  # a bare interpreter: pip's own copy
    from pip._vendor.packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent
FRESH = ("1.12.4", "2.10.1", "3.7.0")  # the newest release of each mistralai generation
STACKS = (
    # an app on the newest of everything, launched with opentelemetry-instrument
    ("opentelemetry-exporter-otlp-proto-http", "opentelemetry-distro", "mistralai"),
    # an app that pins an older train (the oldest mistralai 3.x accepts)
    ("opentelemetry-sdk==1.40.0", "opentelemetry-exporter-otlp-proto-http==1.40.0", "mistralai==3.7.0"),
)
WATCHED = ("opentelemetry-api", "opentelemetry-sdk", "opentelemetry-instrumentation", "mistralai", "wrapt")
# the launcher's bootstrap (shipped inside the wheel) must set up tracing in the program it runs
LAUNCHED = """
import respan_auto.decorators
from opentelemetry import trace
print(type(trace.get_tracer_provider()).__module__)
"""
# and spans must go through the installed exporter stack (here, to the local store)
TRACED = """
from respan_auto import Respan, task
respan = Respan()
task(name="pip_matrix")(lambda: None)()
raise SystemExit(0 if respan.flush(10) else 3)
"""
# what the store holds, read back through the installed package
STORED = """
import sys
from respan_auto.export.local_store import read_records
print(sorted(r["name"] for r in read_records(sys.argv[1])))
"""


@dataclass
class Case:
    name: str
    stack: tuple[str, ...]  # the app's own packages, installed first
    beside: tuple[str, ...]  # installed in the same pip call as the wheel
    failures: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)


def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    # never from the checkout: `python -c` would import respan_auto from there instead of the installed wheel
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout, cwd=tempfile.gettempdir())


def pip(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args])


def freeze(venv: Path) -> dict[str, str]:
    out = pip(venv, "list", "--format=freeze").stdout
    return {name.lower(): version for name, _, version in (line.partition("==") for line in out.split()) if version}


def went_down(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Packages whose version went down, or that went away."""
    found = []
    for name, old in before.items():
        new = after.get(name)
        if new is None:
            found.append(f"{name} {old} removed")
            continue
        try:
            if Version(new) < Version(old):
                found.append(f"{name} {old}->{new}")
        except InvalidVersion:
            if new != old:
                found.append(f"{name} {old}->{new}")
    return found


def pip_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "conflict" in line.lower()]
    return " | ".join((errors or lines)[-4:])


def build_wheel(into: Path) -> Path:
    """The wheel, built once from a copy of the sources (an in-tree build would leave build/ behind)."""
    source = into / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".git", ".nox", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"),
    )
    result = run([sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "--no-deps", "-q",
                  "-w", str(into / "dist"), str(source)])  # fmt: skip
    wheels = sorted((into / "dist").glob("respan_auto-*.whl"))
    if result.returncode != 0 or not wheels:
        sys.exit(f"pip_matrix: building the wheel failed: {pip_error(result)}")
    return wheels[-1]


def check(case: Case, wheel: Path, work: Path) -> Case:
    venv = work / case.name
    made = run([sys.executable, "-m", "venv", str(venv)])
    if made.returncode != 0:
        case.failures.append(f"venv: {made.stderr.strip()[-300:]}")
        return case
    if case.stack:
        stack = pip(venv, "install", "-q", *case.stack)
        if stack.returncode != 0:
            case.failures.append(f"could not install the app's stack: {pip_error(stack)}")
            return case
    before = freeze(venv)
    installed = pip(venv, "install", "-q", str(wheel), *case.beside)
    if installed.returncode != 0:
        case.failures.append(f"pip install: {pip_error(installed)}")
        return case
    after = freeze(venv)
    case.versions = {name: after[name] for name in WATCHED if name in after}
    if downgraded := went_down(before, after):
        case.failures.append("downgraded: " + ", ".join(downgraded))
    checked = pip(venv, "check")
    if checked.returncode != 0:
        case.failures.append("pip check: " + " | ".join(checked.stdout.strip().splitlines()[:4]))
    python, launcher = str(venv / "bin" / "python"), str(venv / "bin" / "respan-instrument")
    imported = run([python, "-c", "import respan_auto\nfrom respan_auto import Respan\nprint(respan_auto.__file__)"])
    if imported.returncode != 0:
        case.failures.append(f"import respan_auto: {imported.stderr.strip().splitlines()[-1:]}")
    elif not imported.stdout.strip().startswith(str(venv)):
        case.failures.append(f"respan_auto imported from {imported.stdout.strip()}, not from the venv")
    helped = run([launcher, "--help"])
    if helped.returncode != 0 or "respan-instrument" not in helped.stdout:
        case.failures.append(f"respan-instrument --help: exit {helped.returncode}: {helped.stderr.strip()[-300:]}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "PYTHON"))}
    env.update(RESPAN_ANNOUNCED="1", RESPAN_LOCAL_STORE=str(work / f"{case.name}.db"))
    launched = run([launcher, python, "-c", LAUNCHED], env=env, timeout=120)
    if launched.returncode != 0 or not launched.stdout.strip().startswith("respan_auto"):
        case.failures.append(f"respan-instrument set up no tracing: {launched.stdout.strip()} {launched.stderr[-300:]}")
    traced = run([python, "-c", TRACED], env=env, timeout=120)
    stored = run([python, "-c", STORED, env["RESPAN_LOCAL_STORE"]], env=env, timeout=120)
    if traced.returncode != 0 or "pip_matrix.task" not in stored.stdout:
        case.failures.append(f"a traced call was not exported (exit {traced.returncode}): {traced.stderr[-300:]}")
    return case


def cases() -> list[Case]:
    found = [Case(f"fresh-mistralai-{spec}", (), (f"mistralai=={spec}",)) for spec in FRESH]
    found += [Case(f"app-{i}", stack, ()) for i, stack in enumerate(STACKS, 1)]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3, help="cases installed at once (pip mostly waits on the network)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pip-matrix-") as tmp:
        work = Path(tmp)
        wheel = build_wheel(work)
        print(f"pip_matrix: {wheel.name}, on {sys.version.split()[0]}, pip {pip_version()}", flush=True)
        with ThreadPoolExecutor(options.jobs) as pool:
            done = list(pool.map(lambda case: check(case, wheel, work), cases()))
    for case in done:
        label = " ".join(case.stack) if case.stack else " ".join(case.beside)
        versions = ", ".join(f"{k} {v}" for k, v in case.versions.items())
        print(f"{'ok  ' if not case.failures else 'FAIL'} {case.name} [{label}] -> {versions}")
        for failure in case.failures:
            print(textwrap.indent(failure, "       "))
    held = sum(not case.failures for case in done)
    print(f"install matrix: {held}/{len(done)} hold")
    return 0 if held == len(done) else 1


def pip_version() -> str:
    return run([sys.executable, "-m", "pip", "--version"]).stdout.split()[1]


if __name__ == "__main__":
    sys.exit(main())
