"""Explicit wins: a Mistral instrumentor the app passes to ``Respan(...)`` replaces ours, under the launcher too.

Each case runs the app as a real subprocess (under ``respan-instrument`` where it says so) against the loopback
Mistral stand-in, with OpenInference's real instrumentor, and reads the spans from a loopback OTLP receiver.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from respan_auto.testing.otlp_receiver import OtlpReceiver
from tests.conftest import REPO, SDK_TRACER

LAUNCHER = str(Path(sys.executable).parent / "respan-instrument")
OPENINFERENCE_SCOPE = "openinference.instrumentation.mistralai"
OUR_SCOPE = "respan_auto.instrumentation.mistralai"
WINS = "is traced by the instrumentor passed to Respan()"


def _openinference_available() -> bool:
    try:
        import openinference.instrumentation.mistralai  # noqa: F401
    except Exception:  # noqa: BLE001 - missing, or built for another mistralai generation
        return False
    return True


needs_openinference = pytest.mark.skipif(
    not _openinference_available(), reason="openinference-instrumentation-mistralai (mistralai 2.x+) is not installed"
)

# Three calls, one of each kind; ``SETUP`` is where the app sets Respan up, in the order the case is about.
APP = """
import asyncio, os
{setup}
try:
    from mistralai.client import Mistral
except ImportError:
    from mistralai import Mistral
client = Mistral(api_key="k", server_url=os.environ["STANDIN_URL"])
client.chat.complete(model="m", messages=[{{"role": "user", "content": "complete"}}])
for _ in client.chat.stream(model="m", messages=[{{"role": "user", "content": "stream"}}]):
    pass

async def main():
    await client.chat.complete_async(model="m", messages=[{{"role": "user", "content": "async"}}])

asyncio.run(main())
"""

OPENINFERENCE_SETUPS = {
    # as the seed page does it: mistralai is imported (so the launcher has activated ours) before Respan()
    "mistralai first": """
        from respan_auto import Respan
        from openinference.instrumentation.mistralai import MistralAIInstrumentor
        import mistralai.client
        Respan(instrumentations=[MistralAIInstrumentor()])
        """,
    # Respan() first: instrumenting OpenInference's imports mistralai, which is when the launcher activates
    "Respan first": """
        from respan_auto import Respan
        from openinference.instrumentation.mistralai import MistralAIInstrumentor
        Respan(instrumentations=[MistralAIInstrumentor()])
        """,
    # the app instrumented it itself, on top of ours, before handing it over
    "instrumented by the app": """
        from respan_auto import Respan
        from openinference.instrumentation.mistralai import MistralAIInstrumentor
        import mistralai.client
        instrumentor = MistralAIInstrumentor()
        instrumentor.instrument()
        Respan(instrumentations=[instrumentor])
        """,
}


@pytest.fixture
def receiver():
    with OtlpReceiver() as rx:
        yield rx


@pytest.fixture
def env(tmp_path, server, receiver):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
    clean.update(
        STANDIN_URL=server.url,
        RESPAN_API_KEY="rk-dummy",
        RESPAN_BASE_URL=receiver.base_url,
        RESPAN_LOCAL_STORE=str(tmp_path / "traces.jsonl"),
        PYTHONPATH=str(REPO),
    )
    return clean


def run_app(tmp_path, setup: str, env: dict[str, str], launcher: bool = True) -> subprocess.CompletedProcess:
    app = tmp_path / "app.py"
    app.write_text(APP.format(setup=textwrap.dedent(setup)))
    args = [LAUNCHER, sys.executable, str(app)] if launcher else [sys.executable, str(app)]
    result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


def llm_spans_by_prompt(receiver) -> dict[str, list[str]]:
    """The scopes of the LLM spans, by the prompt of the call that made them (both instrumentors' keys)."""
    found: dict[str, list[str]] = {}
    for span in receiver.spans:
        if span.scope == SDK_TRACER:
            continue
        a = span.attributes
        prompt = a.get("gen_ai.prompt.0.content", a.get("llm.input_messages.0.message.content"))
        if prompt is not None:
            found.setdefault(prompt, []).append(span.scope)
    return found


@needs_openinference
@pytest.mark.parametrize("setup", list(OPENINFERENCE_SETUPS))
def test_openinference_passed_in_replaces_ours_under_the_launcher(tmp_path, env, receiver, setup):
    result = run_app(tmp_path, OPENINFERENCE_SETUPS[setup], env)
    assert llm_spans_by_prompt(receiver) == {
        "complete": [OPENINFERENCE_SCOPE],
        "stream": [OPENINFERENCE_SCOPE],
        "async": [OPENINFERENCE_SCOPE],
    }
    said = [line for line in result.stderr.splitlines() if WINS in line]
    assert len(said) == 1, result.stderr
    assert "openinference.instrumentation.mistralai.MistralAIInstrumentor" in said[0]
    assert f"instead of {OUR_SCOPE}.MistralAIInstrumentor" in said[0]


@needs_openinference
def test_a_second_explicit_mistral_instrumentor_is_refused_with_one_line(tmp_path, env, receiver):
    setup = """
        from respan_auto import Respan
        from respan_auto.instrumentation.mistralai import MistralAIInstrumentor as Ours
        from openinference.instrumentation.mistralai import MistralAIInstrumentor
        Respan(instrumentations=[MistralAIInstrumentor()])
        Respan(instrumentations=[Ours()])
        """
    result = run_app(tmp_path, setup, env, launcher=False)
    assert set(map(tuple, llm_spans_by_prompt(receiver).values())) == {(OPENINFERENCE_SCOPE,)}
    refused = [line for line in result.stderr.splitlines() if "was not activated" in line]
    assert len(refused) == 1, result.stderr
    assert refused[0].startswith(f"respan_auto: {OUR_SCOPE}.MistralAIInstrumentor was not activated")


def test_a_failing_explicit_instrumentor_leaves_ours_tracing(tmp_path, env, receiver):
    setup = """
        from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
        from respan_auto import Respan

        class FailingMistralInstrumentor(BaseInstrumentor):
            def instrumentation_dependencies(self):
                return ()

            def _instrument(self, **kwargs):
                raise RuntimeError("cannot patch this SDK")

            def _uninstrument(self, **kwargs):
                pass

        import mistralai
        Respan(instrumentations=[FailingMistralInstrumentor()])
        """
    result = run_app(tmp_path, setup, env)
    assert llm_spans_by_prompt(receiver) == {"complete": [OUR_SCOPE], "stream": [OUR_SCOPE], "async": [OUR_SCOPE]}
    failed = [line for line in result.stderr.splitlines() if "failed and was skipped" in line]
    assert len(failed) == 1 and "cannot patch this SDK" in failed[0], result.stderr
    assert WINS not in result.stderr
