"""Test sessions: one per mistralai generation, each in a fresh virtualenv.

``nox`` runs them all; ``nox -s "tests(sdk='3')"`` runs one.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = False
nox.options.sessions = ["lint", "tests"]

# another Mistral instrumentor, to check that ours coexists with it (it supports mistralai 2.x and later)
OPENINFERENCE = "openinference-instrumentation-mistralai"

LOAD_TESTED = "3"

# mistralai pin -> (Python it runs on, extra pins). The spread also covers Python 3.10-3.13 and wrapt 1.x.
GENERATIONS = {
    "1": ("3.10", "mistralai==1.*", []),
    "2.4": ("3.11", "mistralai==2.4.9", ["wrapt<2"]),  # last 2.x that traces by itself under a global provider
    "2": ("3.12", "mistralai==2.*", [OPENINFERENCE]),
    "3": ("3.13", "mistralai==3.*", [OPENINFERENCE]),
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
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")


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
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs, env=env)
