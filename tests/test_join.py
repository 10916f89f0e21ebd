"""Joining the app's own tracing pipeline, whenever the app sets it up: real subprocess apps.

The app exports its own spans (to a file, through its own SDK provider, logfire, or pydantic-ai's
instrumentation) and we export to a loopback Respan receiver. Whether the app sets its provider
before or after we start (the usual shape: mistralai imported at the top, tracing set up later),
both pipelines must get the app's spans and ours, in one trace, with the right parents.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from respan_auto.testing.otlp_receiver import OtlpReceiver
from tests.conftest import REPO

LAUNCHER = str(Path(sys.executable).parent / "respan-instrument")
MODEL = "mistral-small-latest"
CHAT = f"chat {MODEL}"
OUR_SCOPE = "respan_auto.instrumentation.mistralai"
OVERRIDE_WARNING = "Overriding of current TracerProvider"

# The app's own exporter: one JSON line per span, written as each span ends.
EXPORTER = """
import json, os
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

class FileExporter(SpanExporter):
    def export(self, spans):
        with open(os.environ["APP_SPANS"], "a") as out:
            for s in spans:
                out.write(json.dumps({
                    "name": s.name,
                    "scope": s.instrumentation_scope.name if s.instrumentation_scope else None,
                    "trace_id": format(s.context.trace_id, "032x"),
                    "span_id": format(s.context.span_id, "016x"),
                    "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
                }) + "\\n")
        return SpanExportResult.SUCCESS

def app_processor():
    return SimpleSpanProcessor(FileExporter())
"""

MISTRAL = """
try:
    from mistralai.client import Mistral
except ImportError:
    from mistralai import Mistral
"""

# SETUP: "before" or "after" importing mistralai; RESPAN_IN_CODE: Respan(is_auto_instrument=True) at the top.
APP = f"""
import os, sys
from opentelemetry import trace
from opentelemetry.trace import set_tracer_provider  # taken before we start: the set must still reach us
from opentelemetry.sdk.trace import TracerProvider
{EXPORTER}
tracer = trace.get_tracer("app")  # taken at import, before any provider is set, as modules do
provider = None

def own_tracing():
    global provider
    provider = TracerProvider()
    provider.add_span_processor(app_processor())
    set_tracer_provider(provider)

if os.environ["SETUP"] == "before":
    own_tracing()
if os.environ.get("RESPAN_IN_CODE"):
    from respan_auto import Respan
    Respan(is_auto_instrument=True)
{MISTRAL}
from respan_auto import workflow
if os.environ["SETUP"] == "after":
    own_tracing()

@workflow(name="handle")
def handle(client):
    return client.chat.complete(model="{MODEL}", messages=[{{"role": "user", "content": "hi"}}])

client = Mistral(api_key="k", server_url=os.environ["STANDIN_URL"])
with tracer.start_as_current_span("request"):
    handle(client)
print("APP global is the app's:", trace.get_tracer_provider() is provider, file=sys.stderr)
"""


@pytest.fixture
def receiver():
    with OtlpReceiver() as rx:
        yield rx


@pytest.fixture
def run(tmp_path, server, receiver):
    def go(
        code: str, env: dict[str, str] | None = None, launcher: bool = True, refused: bool = False
    ) -> subprocess.CompletedProcess:
        full = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
        full.update(
            STANDIN_URL=server.url,
            APP_SPANS=str(tmp_path / "app-spans.jsonl"),
            RESPAN_API_KEY="rk-join",
            RESPAN_BASE_URL=receiver.base_url,
            PYTHONPATH=str(REPO),
        )
        full.update(env or {})
        path = tmp_path / "app.py"
        path.write_text(code)
        command = [LAUNCHER, sys.executable, str(path)] if launcher else [sys.executable, str(path)]
        result = subprocess.run(command, capture_output=True, text=True, env=full, timeout=90)
        assert result.returncode == 0, result.stderr
        assert refused or OVERRIDE_WARNING not in result.stderr, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        return result

    return go


def app_spans(tmp_path: Path) -> list[dict]:
    path = tmp_path / "app-spans.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def received(receiver: OtlpReceiver) -> list[dict]:
    return [
        {"name": s.name, "scope": s.scope, "trace_id": s.trace_id, "span_id": s.span_id, "parent_id": s.parent_id}
        for s in receiver.spans
    ]


def assert_one_tree(spans: list[dict], chain: list[str]) -> dict[str, dict]:
    """``chain`` (root first) is there, once each, each span the parent of the next, in one trace."""
    tree = []
    for name in chain:
        matches = [span for span in spans if span["name"] == name]
        assert len(matches) == 1, f"{name}: {[span['name'] for span in spans]}"
        tree.append(matches[0])
    assert tree[0]["parent_id"] is None
    for parent, child in itertools.pairwise(tree):
        assert child["parent_id"] == parent["span_id"], (parent, child)
    assert len({span["trace_id"] for span in tree}) == 1
    return {span["name"]: span for span in tree}


CHAIN = ["request", "handle.workflow", CHAT]


@pytest.mark.parametrize("setup", ["before", "after"])
@pytest.mark.parametrize("how", ["launcher", "in code", "launcher and in code"])
def test_app_provider_gets_our_spans_and_respan_gets_the_apps(run, tmp_path, receiver, setup, how):
    env = {"SETUP": setup}
    if how != "launcher":
        env["RESPAN_IN_CODE"] = "1"
    result = run(APP, env, launcher=how != "in code")
    assert "APP global is the app's: True" in result.stderr
    in_app = assert_one_tree(app_spans(tmp_path), CHAIN)
    in_respan = assert_one_tree(received(receiver), CHAIN)
    assert in_app == in_respan  # the same spans: same ids, same parents, same trace
    assert in_app[CHAT]["scope"] == OUR_SCOPE


SWITCH_INSIDE_OUR_SPAN = f"""
import os
from opentelemetry.trace import set_tracer_provider
from opentelemetry.sdk.trace import TracerProvider
{EXPORTER}
{MISTRAL}
from respan_auto import workflow

@workflow(name="main")
def main():
    provider = TracerProvider()
    provider.add_span_processor(app_processor())
    set_tracer_provider(provider)  # the app sets up tracing inside a span of ours
    client = Mistral(api_key="k", server_url=os.environ["STANDIN_URL"])
    client.chat.complete(model="{MODEL}", messages=[{{"role": "user", "content": "hi"}}])

main()
"""


def test_span_open_across_the_switch_still_ends_and_exports(run, tmp_path, receiver):
    run(SWITCH_INSIDE_OUR_SPAN)
    ours = assert_one_tree(received(receiver), ["main.workflow", CHAT])
    (chat,) = app_spans(tmp_path)  # the app's pipeline has what started after its set-up
    assert chat["name"] == CHAT and chat["span_id"] == ours[CHAT]["span_id"]
    assert chat["parent_id"] == ours["main.workflow"]["span_id"]


NO_PROCESSORS = f"""
import os, sys
from opentelemetry import trace
{MISTRAL}
noop = trace.NoOpTracerProvider()
trace.set_tracer_provider(noop)
client = Mistral(api_key="k", server_url=os.environ["STANDIN_URL"])
client.chat.complete(model="{MODEL}", messages=[{{"role": "user", "content": "hi"}}])
print("APP global is the app's:", trace.get_tracer_provider() is noop, file=sys.stderr)
"""


def test_a_provider_that_takes_no_processors_is_set_and_we_keep_ours(run, receiver):
    result = run(NO_PROCESSORS)
    assert "APP global is the app's: True" in result.stderr
    assert [s["name"] for s in received(receiver)] == [CHAT]


UNKNOWN_LAYOUT = f"""
import os, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

class Once:  # a set-once guard of a layout we do not know
    def __init__(self):
        self.used = False

    def do_once(self, func):
        if self.used:
            return False
        func()
        self.used = True
        return True

trace._TRACER_PROVIDER_SET_ONCE = Once()
from respan_auto import Respan
Respan(is_auto_instrument=True)
{MISTRAL}
app_provider = TracerProvider()
trace.set_tracer_provider(app_provider)
client = Mistral(api_key="k", server_url=os.environ["STANDIN_URL"])
client.chat.complete(model="{MODEL}", messages=[{{"role": "user", "content": "hi"}}])
print("APP global is the app's:", trace.get_tracer_provider() is app_provider, file=sys.stderr)
"""


def test_unknown_otel_layout_keeps_todays_behaviour_with_one_warning(run, receiver):
    result = run(UNKNOWN_LAYOUT, launcher=False, refused=True)
    assert "APP global is the app's: False" in result.stderr
    assert len([line for line in result.stderr.splitlines() if "layout we do not know" in line]) == 1
    assert OVERRIDE_WARNING in result.stderr  # OpenTelemetry's own refusal, as before
    assert CHAT in [s["name"] for s in received(receiver)]  # our spans still reach Respan


LOGFIRE_APP = f"""
import os, sys
import logfire
{EXPORTER}
def configure():
    logfire.configure(send_to_logfire=False, console=False, additional_span_processors=[app_processor()])

if os.environ["SETUP"] == "before":
    configure()
{MISTRAL}
from respan_auto import workflow
if os.environ["SETUP"] == "after":
    configure()

@workflow(name="handle")
def handle(client):
    return client.chat.complete(model="{MODEL}", messages=[{{"role": "user", "content": "hi"}}])

client = Mistral(api_key="k", server_url=os.environ["STANDIN_URL"])
with logfire.span("request"):
    handle(client)
"""


@pytest.mark.parametrize("setup", ["before", "after"])
def test_logfire_configure(run, tmp_path, receiver, setup):
    pytest.importorskip("logfire")
    run(LOGFIRE_APP, {"SETUP": setup})
    in_app = assert_one_tree(app_spans(tmp_path), CHAIN)
    in_respan = assert_one_tree(received(receiver), CHAIN)
    assert {n: s["span_id"] for n, s in in_app.items()} == {n: s["span_id"] for n, s in in_respan.items()}


PYDANTIC_AI_APP = f"""
import os
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
{EXPORTER}
from pydantic_ai import Agent
from pydantic_ai.models.mistral import MistralModel
from pydantic_ai.providers.mistral import MistralProvider

Agent.instrument_all()
agent = Agent(MistralModel("{MODEL}", provider=MistralProvider(api_key="k", base_url=os.environ["STANDIN_URL"])))
provider = TracerProvider()  # the app's own tracing, set up after mistralai was imported (by pydantic-ai)
provider.add_span_processor(app_processor())
trace.set_tracer_provider(provider)
with trace.get_tracer("app").start_as_current_span("request"):
    print(agent.run_sync("hi").output)
"""


def test_pydantic_ai_agent(run, tmp_path, receiver):
    pytest.importorskip("pydantic_ai.models.mistral")
    run(PYDANTIC_AI_APP)
    for spans in (app_spans(tmp_path), received(receiver)):
        (our_chat,) = [s for s in spans if s["scope"] == OUR_SCOPE]
        by_id = {s["span_id"]: s for s in spans}
        ancestry = [our_chat]  # every ancestor of our span must be in the same pipeline
        while ancestry[-1]["parent_id"] is not None:
            ancestry.append(by_id[ancestry[-1]["parent_id"]])
        assert ancestry[-1]["name"] == "request"
        assert ancestry[1]["scope"] == "pydantic-ai" and ancestry[1]["name"] == CHAT  # the agent's model request
        assert [s["scope"] for s in ancestry[2:-1]] == ["pydantic-ai"]  # the agent run
        assert len({s["trace_id"] for s in ancestry}) == 1
    assert {s["span_id"] for s in app_spans(tmp_path)} == {s["span_id"] for s in received(receiver)}
    # pydantic-ai's span reports the call's usage; ours keeps it aside, so the trace counts each token once
    theirs = [s for s in receiver.spans if s.scope == "pydantic-ai" and s.name == CHAT]
    ours = [s for s in receiver.spans if s.scope == OUR_SCOPE]
    assert len(theirs) == len(ours) == 1
    assert theirs[0].attributes["gen_ai.usage.input_tokens"] == ours[0].attributes["respan.usage.input_tokens"] > 0
    assert ours[0].attributes["respan.usage.counted_above"] is True
    counted = [s for s in receiver.spans if any(k.startswith(("gen_ai.usage.", "llm.usage.")) for k in s.attributes)]
    assert counted == theirs
