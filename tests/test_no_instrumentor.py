"""``Respan()`` with no instrumentor says so in one line, and how to turn one on; nowhere else does it speak.

Each case is a real subprocess calling the loopback Mistral stand-in; spans are read from the local store, so the
line is checked against what was really recorded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from respan_auto.export.local_store import read_records
from tests.conftest import REPO

BIN = Path(sys.executable).parent
NOTHING = "no instrumentor is active"

HEADER = """
import os
from respan_auto import Respan
from respan_auto.instrumentation.mistralai import MistralAIInstrumentor
"""

CALL = """
try:
    from mistralai.client import Mistral
except ImportError:
    from mistralai import Mistral
client = Mistral(api_key="k", server_url=os.environ["STANDIN_URL"])
client.chat.complete(model="m", messages=[{"role": "user", "content": "hi"}])
"""

# (how the app is run, its set-up) -> whether its Mistral call is traced
CASES = {
    "Respan() alone": ("python", "Respan()", False),
    "Respan(is_auto_instrument=True)": ("python", "Respan(is_auto_instrument=True)", True),
    "Respan(instrumentations=[ours])": ("python", "Respan(instrumentations=[MistralAIInstrumentor()])", True),
    "instrumented by the app, then Respan()": ("python", "MistralAIInstrumentor().instrument()\nRespan()", True),
    "Respan() under the launcher": ("respan-instrument", "Respan()", True),
    "Respan() under opentelemetry-instrument": ("opentelemetry-instrument", "Respan()", True),
}


def run_case(tmp_path, server, how: str, setup: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    store = tmp_path / "traces.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
    env.update(STANDIN_URL=server.url, RESPAN_LOCAL_STORE=str(store), PYTHONPATH=str(REPO))
    if how == "opentelemetry-instrument":
        env["OTEL_PYTHON_DISTRO"] = "respan"  # whatever other distro is installed, and in whatever order
    app = tmp_path / "app.py"
    app.write_text(HEADER + textwrap.dedent(setup) + "\n" + CALL)
    prefix = [] if how == "python" else [str(BIN / how)]
    if prefix and not Path(prefix[0]).exists():
        pytest.skip(f"{how} is not installed")
    result = subprocess.run([*prefix, sys.executable, str(app)], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    records = list(read_records(str(store)))
    # our LLM spans: the SDK's own tracing hook (1.x and up to 2.4.9, under a global provider) adds spans of its
    # own, "chat m" among them on 2.4.9; only ours carry Respan's llm.request.type
    ours = [r for r in records if "llm.request.type" in r["attributes"]]
    return result, [r["name"] for r in ours if r["name"].startswith("chat ")]


@pytest.mark.parametrize("case", list(CASES))
def test_one_line_exactly_when_nothing_traces(tmp_path, server, case):
    how, setup, traced = CASES[case]
    result, names = run_case(tmp_path, server, how, setup)
    assert names == (["chat m"] if traced else [])
    said = [line for line in result.stderr.splitlines() if NOTHING in line]
    if traced:
        assert said == [], result.stderr
    else:
        assert said == [
            "respan_auto: no instrumentor is active, so Mistral calls are not traced; "
            "pass is_auto_instrument=True or instrumentations=[...] to Respan()"
        ], result.stderr
