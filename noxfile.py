"""Test sessions: one per mistralai generation (the oldest on our lowest declared bounds), and plain pip installs.

``nox`` runs them all; ``nox -s "tests(3)"``, ``nox -s lowest`` or ``nox -s pip_install`` runs one.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
from pathlib import Path

import nox
from packaging.requirements import Requirement

try:
    import tomllib
except ImportError:  # Python 3.10: nox itself depends on tomli there
    import tomli as tomllib

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = False
nox.options.sessions = ["lint", "pip_install", "lowest", "tests"]

# another Mistral instrumentor, to check that ours coexists with it (it supports mistralai 2.x and later)
OPENINFERENCE = "openinference-instrumentation-mistralai"

LOAD_TESTED = "3"

# The lowest session is the oldest generation's: the oldest Python, mistralai 1.x (its last release wants exporter
# >= 1.37, which is where our OpenTelemetry floor comes from: see pyproject.toml) and every direct dependency at its
# lower bound. The newest generations run on the newest releases.
LOWEST_PYTHON = "3.10"
LOWEST_MISTRAL = "mistralai[agents]==1.12.4"  # agents: the run helpers (mcp, griffe)
LOWEST_EXTRAS = ("grpc",)  # pinned too; the test extra's own tools float

# frameworks with pipelines of their own, for the join tests (they need mistralai 3.x and the newest OTel train)
JOINED_FRAMEWORKS = ["logfire>=5.4", "pydantic-ai-slim[mistral]>=2.68"]

# Process-level tests that do not depend on the SDK generation (servers, signals, distros, receivers): they run in
# the sessions of the oldest generation (on the lowest bounds) and the newest, which keeps CI well within its time.
GENERATION_FREE = ["tests/test_process_end.py", "tests/test_distro.py", "tests/test_receivers.py"]
# The web view's tests drive a real Chromium and read only the store: once, in the newest generation's session.
BROWSER = ["tests/test_ui.py"]

# mistralai pin -> (Python it runs on, extra pins). With the lowest session, the spread also covers Python 3.10-3.13
# and wrapt 1.x.
GENERATIONS = {
    "2.4": ("3.11", "mistralai[agents]==2.4.9", ["wrapt<2"]),  # last 2.x that traces by itself under a global provider
    "2": ("3.12", "mistralai[agents]==2.*", [OPENINFERENCE]),
    "3": ("3.13", "mistralai[agents]==3.*", [OPENINFERENCE, *JOINED_FRAMEWORKS]),
}


def _interpreter(version: str) -> str:
    """A Python of that version: on PATH, else from pyenv, else the one running nox (with a note)."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}")))
    if found:
        return found[-1]
    on_path = shutil.which(f"python{version}")
    if on_path and "shims" not in on_path:
        return on_path
    print(f"noxfile: no python{version} found; running that session on {sys.executable}", file=sys.stderr)
    return sys.executable


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, then mypy on the package against the types of what it imports (respan_auto.testing's: the test extra)."""
    session.install("ruff==0.17.6", "mypy==2.4.1", "-e", ".[test]")
    session.run("ruff", "check", ".")
    session.run("mypy", "respan_auto")


@nox.session
@nox.parametrize(
    ("python", "sdk"),
    [(_interpreter(python), sdk) for sdk, (python, _, _) in GENERATIONS.items()],
    ids=list(GENERATIONS),
)
def tests(session: nox.Session, sdk: str) -> None:
    _, pin, extra = GENERATIONS[sdk]
    session.install("-e", ".[test]", pin, *extra)
    # the load tests take a minute: once, on the newest generation, is enough for CI
    env = {"RESPAN_LOAD_TESTS": "1"} if sdk == LOAD_TESTED else {}
    middle = sdk != max(GENERATIONS)
    skip = [f"--ignore={path}" for path in GENERATION_FREE + BROWSER] if middle and not session.posargs else []
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *skip, *session.posargs, env=env)


def lower_bound_pins(extras: tuple[str, ...] = LOWEST_EXTRAS) -> list[str]:
    """``name==X`` for each ``name >= X`` in pyproject.toml's dependencies and ``extras``: never out of date.

    A dependency without a ``>=`` bound is an error: every one must say how low it goes.
    """
    project = tomllib.loads(Path(__file__).with_name("pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    pins = []
    for line in lines:
        requirement = Requirement(line)
        lows = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if len(lows) != 1:
            raise ValueError(f"pyproject.toml: {line!r} needs exactly one '>=' lower bound")
        marker = f"; {requirement.marker}" if requirement.marker else ""
        pins.append(f"{requirement.name}=={lows[0]}{marker}")
    return pins


@nox.session(python=_interpreter(LOWEST_PYTHON))
def lowest(session: nox.Session) -> None:
    """mistralai 1.x with every direct dependency at its declared lower bound, so the bounds stay true."""
    pins = lower_bound_pins()
    constraints = Path(session.create_tmp()) / "lower-bounds.txt"
    constraints.write_text("\n".join(pins) + "\n")
    session.log("lower bounds: " + ", ".join(pins))
    session.install("-c", str(constraints), "-e", f".[test,{','.join(LOWEST_EXTRAS)}]", LOWEST_MISTRAL)
    skip = [] if session.posargs else [f"--ignore={path}" for path in BROWSER]
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *skip, *session.posargs)


@nox.session(python=_interpreter("3.12"), venv_backend="venv")
def pip_install(session: nox.Session) -> None:
    """Plain pip, not uv: the wheel beside each mistralai generation and into apps that already run OpenTelemetry."""
    session.run("python", "-m", "pip", "install", "--disable-pip-version-check", "-q", "packaging")
    session.run("python", "ci/pip_matrix.py", *session.posargs)
