"""Distro etiquette: plain ``opentelemetry-instrument`` runs, as real subprocesses, with another distro installed.

respan-auto acts only when chosen (``OTEL_PYTHON_DISTRO=respan``, a ``RESPAN_*`` variable, or no other
distro installed); otherwise the run must look as if respan-auto were not installed. Which distro and
configurator ``opentelemetry-instrument`` meets first depends on the installation, so each case runs with
ours first and with theirs first: a copy of one distribution's metadata placed ahead on ``PYTHONPATH`` comes
first (and hides the installed copy, as ``importlib.metadata`` keeps the first distribution of a name).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

from respan_auto.export.local_store import read_records
from respan_auto.testing.otlp_receiver import OtlpReceiver
from tests.conftest import REPO

BIN = Path(sys.executable).parent
OTEL_INSTRUMENT = BIN / "opentelemetry-instrument"
MODEL = "mistral-small-latest"
OUR_KEY = "llm.request.type"  # an attribute only our Mistral span carries

APP = """
import json, os, sys
from opentelemetry import trace
try:
    from mistralai.client import Mistral
    from mistralai.client.chat import Chat
except ImportError:
    from mistralai import Mistral
    from mistralai.chat import Chat
if os.environ.get("EXPLICIT"):
    from respan_auto.instrumentation.mistralai import MistralAIInstrumentor
    MistralAIInstrumentor().instrument(tracer_provider=trace.get_tracer_provider())
if os.environ.get("IN_CODE_URL"):
    from respan_auto import Respan
    Respan(is_auto_instrument=True, api_key="rk-in-code", base_url=os.environ["IN_CODE_URL"])
client = Mistral(api_key="k", server_url=os.environ["STANDIN_URL"])
with trace.get_tracer("app").start_as_current_span("app-span"):
    client.chat.complete(model="mistral-small-latest", messages=[{"role": "user", "content": "hi"}])

def wrapped_by_us(method):  # other Mistral instrumentors (openinference) may wrap it too
    while method is not None:
        if "respan_auto" in getattr(getattr(method, "_self_wrapper", None), "__module__", ""):
            return True
        method = getattr(method, "__wrapped__", None)
    return False

state = {"wrapped": wrapped_by_us(vars(Chat)["complete"]), "provider": type(trace.get_tracer_provider()).__name__}
print("APP " + json.dumps(state), file=sys.stderr)
"""

needs_otel_instrument = pytest.mark.skipif(not OTEL_INSTRUMENT.exists(), reason="opentelemetry-instrument is missing")


def _installed(name: str) -> bool:
    try:
        distribution(name)
    except PackageNotFoundError:
        return False
    return True


needs_other_distro = pytest.mark.skipif(
    not _installed("opentelemetry-distro"), reason="opentelemetry-distro is not installed here"
)


def put_first(folder: Path, name: str, entry_points: bool = True) -> None:
    """A copy of ``name``'s metadata in ``folder``: first on the path, it is the one entry points come from."""
    dist = distribution(name)
    info = folder / f"{name.replace('-', '_')}-{dist.version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(dist.read_text("METADATA") or f"Metadata-Version: 2.1\nName: {name}\n")
    if entry_points:
        (info / "entry_points.txt").write_text(dist.read_text("entry_points.txt") or "")


@pytest.fixture
def run(tmp_path, server):
    """Run APP under opentelemetry-instrument; ``first`` names the distribution whose entry points come first."""

    runs = iter(range(100))

    def go(env: dict[str, str] | None = None, first: str | None = None, hide: str | None = None) -> dict:
        front = tmp_path / f"front-{next(runs)}"
        front.mkdir()
        if first:
            put_first(front, first)
        if hide:
            put_first(front, hide, entry_points=False)
        full = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
        full.update(
            STANDIN_URL=server.url,
            XDG_STATE_HOME=str(front / "state"),  # our local store, were we to act without a key
            PYTHONPATH=os.pathsep.join([str(front), str(REPO)]),
            OTEL_TRACES_EXPORTER="console",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
        )
        full.update(env or {})
        app = tmp_path / "app.py"
        app.write_text(textwrap.dedent(APP))
        result = subprocess.run(
            [str(OTEL_INSTRUMENT), sys.executable, str(app)], capture_output=True, text=True, env=full, timeout=90
        )
        assert result.returncode == 0, result.stderr
        app_lines = [line for line in result.stderr.splitlines() if line.startswith("APP ")]
        assert len(app_lines) == 1, result.stderr
        store = front / "state" / "respan-auto" / "traces.db"
        return {
            **json.loads(app_lines[0][4:]),
            "console": console_spans(result.stdout),
            "stored": list(read_records(str(store))),
            "stderr": result.stderr,
        }

    return go


def console_spans(stdout: str) -> list[dict]:
    """The spans the SDK's ConsoleSpanExporter printed: JSON objects one after another."""
    decoder, spans, at = json.JSONDecoder(), [], 0
    while (start := stdout.find("{", at)) != -1:
        span, at = decoder.raw_decode(stdout, start)
        spans.append(span)
    return spans


def names(spans: list[dict]) -> list[str]:
    return sorted(s["name"] for s in spans)


def ours(spans: list[dict]) -> list[dict]:
    return [s for s in spans if OUR_KEY in (s.get("attributes") or {})]


def respan_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "respan" in line.lower() and "Configuration of" not in line]


@needs_otel_instrument
@needs_other_distro
@pytest.mark.parametrize("first", ["respan-auto", "opentelemetry-distro"])
def test_not_chosen_the_run_is_as_without_us(run, first):
    without_us = run(hide="respan-auto")
    seen = run(first=first)
    assert "app-span" in names(without_us["console"]), without_us["stderr"]  # the control: their console exporter
    assert names(seen["console"]) == names(without_us["console"])  # other instrumentors' spans included
    assert ours(seen["console"]) == []
    assert seen["provider"] == without_us["provider"] == "TracerProvider"
    assert seen["wrapped"] is without_us["wrapped"] is False
    assert seen["stored"] == []
    assert respan_lines(seen["stderr"]) == []


@needs_otel_instrument
@needs_other_distro
@pytest.mark.parametrize("first", ["respan-auto", "opentelemetry-distro"])
def test_chosen_by_otel_python_distro(run, first):
    seen = run({"OTEL_PYTHON_DISTRO": "respan"}, first=first)
    assert seen["wrapped"] is True
    (chat,) = ours(seen["stored"])
    (app_span,) = [s for s in seen["stored"] if s["name"] == "app-span"]
    assert chat["name"] == f"chat {MODEL}" and chat["parent_id"] == app_span["span_id"]
    assert seen["console"] == []  # opentelemetry-distro's configurator did not run


@needs_otel_instrument
@needs_other_distro
@pytest.mark.parametrize("first", ["respan-auto", "opentelemetry-distro"])
def test_chosen_by_a_respan_variable(run, first):
    with OtlpReceiver() as rx:
        seen = run({"RESPAN_API_KEY": "rk-test", "RESPAN_BASE_URL": rx.base_url}, first=first)
        received = rx.spans
    assert seen["wrapped"] is True
    assert [s.name for s in received if OUR_KEY in s.attributes] == [f"chat {MODEL}"]
    assert "app-span" in [s.name for s in received]


@needs_otel_instrument
def test_only_ours_installed_acts(run):
    seen = run(hide="opentelemetry-distro") if _installed("opentelemetry-distro") else run()
    assert seen["wrapped"] is True
    assert names(ours(seen["stored"])) == [f"chat {MODEL}"] and "app-span" in names(seen["stored"])
    assert seen["console"] == []


@needs_otel_instrument
def test_respan_enabled_false_leaves_chat_unwrapped_with_only_ours(run):
    seen = run({"RESPAN_ENABLED": "false"}, hide="opentelemetry-distro" if _installed("opentelemetry-distro") else None)
    assert seen["wrapped"] is False
    assert seen["stored"] == [] and seen["console"] == []


@needs_otel_instrument
@needs_other_distro
@pytest.mark.parametrize("first", ["respan-auto", "opentelemetry-distro"])
def test_respan_enabled_false_hands_the_run_to_the_other_distro(run, first):
    seen = run({"RESPAN_ENABLED": "false"}, first=first)
    assert seen["wrapped"] is False
    assert "app-span" in names(seen["console"]) and ours(seen["console"]) == []
    assert seen["stored"] == []


@needs_otel_instrument
@needs_other_distro
@pytest.mark.parametrize("first", ["respan-auto", "opentelemetry-distro"])
def test_instrumenting_in_code_still_works_when_not_chosen(run, first):
    explicit = run({"EXPLICIT": "1"}, first=first)
    assert explicit["wrapped"] is True
    chat = ours(explicit["console"])
    assert [s["name"] for s in chat] == [f"chat {MODEL}"]
    app_span = next(s for s in explicit["console"] if s["name"] == "app-span")
    assert chat[0]["parent_id"] == app_span["context"]["span_id"]

    with OtlpReceiver() as rx:
        in_code = run({"IN_CODE_URL": rx.base_url}, first=first)
        received = rx.spans
    assert in_code["wrapped"] is True
    assert [s.name for s in received if OUR_KEY in s.attributes] == [f"chat {MODEL}"]
    assert names(ours(in_code["console"])) == [f"chat {MODEL}"]  # Respan joined the run's own provider
