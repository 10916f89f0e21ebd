"""Respan's Mistral docs page runs with our package after exactly the changes the README lists, and only those.

Every Python snippet of the page is taken from its text, changed by ``CHANGES`` (the README's table "Coming from
Respan's docs", checked row for row), and run in a subprocess against the loopback Mistral stand-in (which also
plays the gateway) and a loopback OTLP receiver standing in for Respan. Each must exit cleanly and produce the
spans and gateway requests it should. A page that grows, loses or rewrites a snippet fails here until the README
and this test follow it.

The harness adds only what the page leaves to the reader, and never a change a user would have to make: the
client is pointed at the stand-in instead of the real API, a fragment runs after the page's own set-up, and a
function the page defines but never calls is called.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version

import pytest

from respan_auto.testing.mistral_server import MistralServer
from respan_auto.testing.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.conftest import REPO, SDK_TRACER

# The page as the workspace keeps it beside the repository, else the copy taken from it.
SHARED_PAGE = REPO.parent / "shared" / "reference" / "seed-respan-mistral-page.txt"
COPY = REPO / "tests" / "data" / "seed-respan-mistral-page.txt"
PAGE = SHARED_PAGE if SHARED_PAGE.exists() else COPY

GENERATION = int(version("mistralai").split(".")[0])


def _openinference_available() -> bool:
    try:
        import openinference.instrumentation.mistralai  # noqa: F401
    except Exception:  # noqa: BLE001 - missing, or built for another mistralai generation
        return False
    return True


OPENINFERENCE = GENERATION >= 2 and _openinference_available()


# ---- the snippets, as the page has them -------------------------------------------------------------------------

_STARTS = re.compile(r"(from |import |[A-Za-z_][\w.]* = |# )")
_GOES_ON = re.compile(r"(\s|$|from |import |@|def |class |with |for |if |return |[A-Za-z_][\w.]*( = |\()|# |[)\]}])")


def snippets(text: str) -> dict[str, str]:
    """Each code block of the page, by the heading above it (the last prose line not ending a sentence)."""
    found: dict[str, str] = {}
    lines = text.splitlines()
    heading = ""
    i = 0
    while i < len(lines):
        if _STARTS.match(lines[i]):
            end = i
            while end < len(lines) and _GOES_ON.match(lines[end]):
                end += 1
            code = "\n".join(lines[i:end]).strip() + "\n"
            ast.parse(code)  # a block that is not Python means the extraction no longer fits the page
            assert heading not in found, f"two snippets under {heading!r}"
            found[heading] = code
            i = end
            continue
        if lines[i].strip() and not lines[i].rstrip().endswith((".", ":")):
            heading = lines[i].strip()
        i += 1
    return found


# ---- the documented changes (the README's table, row for row) ---------------------------------------------------


@dataclass(frozen=True)
class Change:
    page: str  # the README's three cells
    ours: str
    when: str
    applies: Callable[[], bool]
    apply: Callable[[str], str]


def replace(old: str, new: str) -> Callable[[str], str]:
    return lambda code: code.replace(old, new)


def add_import_os(code: str) -> str:
    return code if "os." not in code or "import os\n" in code else "import os\n" + code


_EXTRA_BODY = re.compile(
    r"^(?P<target>\w+) = (?P<call>client\.chat\.complete)\((?P<args>.*?)"
    r"^(?P<indent>[ ]+)extra_body=(?P<body>\{.*?^(?P=indent)\}),\n\)",
    re.MULTILINE | re.DOTALL,
)


def extra_body_to_gateway_params(code: str) -> str:
    return _EXTRA_BODY.sub(
        lambda m: (
            "from respan_auto import gateway_params\n\n"
            f"with gateway_params(**{m['body']}):\n    {m['target']} = {m['call']}({m['args']})"
        ),
        code,
    )


CHANGES = [
    Change(
        "`from respan import`",
        "`from respan_auto import`",
        "always",
        lambda: True,
        replace("from respan import ", "from respan_auto import "),
    ),
    Change(
        "`from mistralai import Mistral`",
        "`from mistralai.client import Mistral`",
        "mistralai 2.x and 3.x (on 1.x the page's import is right)",
        lambda: GENERATION >= 2,
        replace("from mistralai import Mistral\n", "from mistralai.client import Mistral\n"),
    ),
    Change(
        "`from openinference.instrumentation.mistralai import MistralAIInstrumentor`",
        "`from respan_auto.instrumentation.mistralai import MistralAIInstrumentor`",
        "mistralai 1.x (OpenInference's instrumentor needs 2.x or later), or without OpenInference installed",
        lambda: not OPENINFERENCE,
        replace(
            "from openinference.instrumentation.mistralai import MistralAIInstrumentor",
            "from respan_auto.instrumentation.mistralai import MistralAIInstrumentor",
        ),
    ),
    Change("`os.getenv(...)` with no `import os`", "`import os` first", "always", lambda: True, add_import_os),
    Change(
        "`client.chat.completions.create(`",
        "`client.chat.complete(`",
        "the gateway snippets (written for OpenAI's SDK)",
        lambda: True,
        replace("client.chat.completions.create(", "client.chat.complete("),
    ),
    Change(
        "`extra_body={...}`",
        "`with gateway_params(**{...}):` around the call, from `from respan_auto import gateway_params`",
        "the gateway's Respan parameters",
        lambda: True,
        extra_body_to_gateway_params,
    ),
]
IN_FORCE = [change for change in CHANGES if change.applies()]


def documented(code: str) -> str:
    for change in IN_FORCE:
        code = change.apply(code)
    return code


# ---- what the harness adds ---------------------------------------------------------------------------------------

PAGE_CLIENT = 'client = Mistral(api_key=os.getenv("MISTRAL_API_KEY"))\n'
STANDIN_CLIENT = 'client = Mistral(api_key=os.getenv("MISTRAL_API_KEY"), server_url=os.environ["STANDIN_URL"])\n'
GATEWAY_SETUP = (  # the README's Gateway and Both set-ups: gateway=True added to the page's Respan(...)
    "Respan(instrumentations=[MistralAIInstrumentor()])",
    "Respan(instrumentations=[MistralAIInstrumentor()], gateway=True)",
)


def page_setup(page: dict[str, str]) -> str:
    """The page's own set-up for its fragments: the decorators snippet down to its client."""
    code = page["Decorators"]
    return code[: code.index(PAGE_CLIENT) + len(PAGE_CLIENT)]


@dataclass(frozen=True)
class Expect:
    """How a snippet runs, and what it must produce."""

    check: Callable[[Run], None]
    gateway: bool = False  # a gateway feature: after the page's set-up with the README's gateway=True
    then: str = ""  # a call the page leaves out


@dataclass
class Run:
    stdout: str
    spans: list[ReceivedSpan]
    requests: list  # what the stand-in received: Mistral's API, or the gateway under /api

    def llm(self) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.scope != SDK_TRACER and prompt_of(s) is not None]

    def named(self, name: str) -> ReceivedSpan:
        (span,) = [s for s in self.spans if s.name == name]
        return span


def prompt_of(span: ReceivedSpan) -> str | None:
    a = span.attributes
    return a.get("gen_ai.prompt.0.content", a.get("llm.input_messages.0.message.content"))


def reply(prompt: str) -> str:
    return f"Offline stand-in reply to: {prompt}"


def prompts(run: Run) -> list[str]:
    return sorted(prompt_of(s) or "" for s in run.llm())


def check_setup_only(run: Run) -> None:
    assert run.spans == [] and run.requests == []


def check_propagate(run: Run) -> None:
    (span,) = run.llm()
    assert span.parent_id == run.named("handle_request.workflow").span_id
    assert prompt_of(span) == "What is a span?"
    a = span.attributes
    assert a["respan.customer_params.customer_identifier"] == "user_42"
    assert a["respan.threads.thread_identifier"] == "conv_001"
    assert (a["respan.metadata.plan"], a["respan.metadata.service"]) == ("pro", "chat-api")
    assert reply("What is a span?") in run.stdout


def check_decorators(run: Run) -> None:
    workflow = run.named("content_pipeline.workflow")
    task = run.named("generate_outline.task")
    assert task.parent_id == workflow.span_id
    parents = {prompt_of(s): s.parent_id for s in run.llm()}
    outline = "Create a brief outline about: Benefits of API gateways"
    assert parents == {outline: task.span_id, f"Write content from this outline: {reply(outline)}": workflow.span_id}


def check_one_call(prompt: str) -> Callable[[Run], None]:
    def check(run: Run) -> None:
        assert prompts(run) == [prompt]
        assert [r.path for r in run.requests] == ["/v1/chat/completions"]
        assert reply(prompt) in run.stdout

    return check


def check_switch_models(run: Run) -> None:
    assert prompts(run) == ["Hello"] * 3
    models = ["mistral-large-latest", "gpt-4.1-nano", "claude-sonnet-4-5-20250929"]
    assert [r.body["model"] for r in run.requests] == models
    assert {(r.path, r.headers["authorization"]) for r in run.requests} == {(GATEWAY_PATH, f"Bearer {RESPAN_KEY}")}


def check_respan_parameters(run: Run) -> None:
    assert prompts(run) == ["Hello"]
    (request,) = run.requests
    assert request.path == GATEWAY_PATH
    params = json.loads(base64.b64decode(request.headers["x-data-respan-params"]))
    assert params["customer_identifier"] == "user_123"
    assert params["fallback_models"] == ["gpt-4.1-nano"]
    assert params["metadata"]["session_id"] == "abc123"
    assert params["thread_identifier"] == "conversation_456"
    assert "extra_body" not in json.dumps(request.body)


EXPECTED = {
    "In Respan()": Expect(check_setup_only),
    "With propagate_attributes": Expect(check_propagate, then='handle_request("user_42", "What is a span?")\n'),
    "Decorators": Expect(check_decorators),
    "Basic chat": Expect(check_one_call("Say hello in three languages.")),
    "Streaming": Expect(check_one_call("Write a haiku about Python.")),
    "Switch models": Expect(check_switch_models, gateway=True),
    "Respan parameters": Expect(check_respan_parameters, gateway=True),
}

RESPAN_KEY = "rk-dummy-respan"
GATEWAY_PATH = "/api/v1/chat/completions"
LLM_SCOPE = "openinference.instrumentation.mistralai" if OPENINFERENCE else "respan_auto.instrumentation.mistralai"


def program(page: dict[str, str], name: str) -> str:
    """The snippet as a user runs it after the README's changes, plus only what the harness adds."""
    expect = EXPECTED[name]
    code = page[name]
    if "Respan(" not in code:  # a fragment: it runs after the page's set-up
        setup = page_setup(page)
        if expect.gateway:
            setup = setup.replace(*GATEWAY_SETUP)
            setup += 'messages = [{"role": "user", "content": "Hello"}]\n'  # the page's gateway snippets assume it
        code = setup + "\n" + code
    code = documented(code + expect.then)
    assert code.count(PAGE_CLIENT) <= 1
    return code.replace(PAGE_CLIENT, STANDIN_CLIENT)


@pytest.fixture(scope="module")
def page() -> dict[str, str]:
    return snippets(PAGE.read_text())


def test_the_page_has_the_snippets_we_run(page):
    assert list(page) == list(EXPECTED)


def test_every_change_in_force_is_needed(page):
    """A row the page no longer needs is stale: the README would send users chasing it."""
    used = set()
    for code in page.values():
        for change in IN_FORCE:
            changed = change.apply(code)
            if changed != code:
                used.add(change.page)
            code = changed
    assert [c.page for c in IN_FORCE if c.page not in used] == []


def test_the_readme_lists_exactly_these_changes():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Coming from Respan's docs", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| the page")]
    assert rows == [f"| {c.page} | {c.ours} | {c.when} |" for c in CHANGES]


def test_the_copy_is_the_page():
    if not SHARED_PAGE.exists():
        pytest.skip("the workspace's copy of the page is not beside this repository")
    assert COPY.read_text() == SHARED_PAGE.read_text(), f"refresh {COPY.relative_to(REPO)} from the page"


@pytest.mark.parametrize("name", list(EXPECTED))
def test_snippet_runs_as_the_readme_says(page, name, tmp_path):
    app = tmp_path / "app.py"
    app.write_text(program(page, name))
    with MistralServer(extra_headers={"X-Respan-Log-Id": "seed-log-1"}) as standin, OtlpReceiver() as respan:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
        env.update(
            PYTHONPATH=str(REPO),
            STANDIN_URL=standin.url,
            MISTRAL_API_KEY="sk-dummy-mistral",
            RESPAN_API_KEY=RESPAN_KEY,
            RESPAN_BASE_URL=respan.base_url,
            RESPAN_GATEWAY_URL=f"{standin.url}/api",
            RESPAN_LOCAL_STORE=str(tmp_path / "traces.jsonl"),
        )
        result = subprocess.run(
            [sys.executable, str(app)], capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120
        )
        assert result.returncode == 0, result.stderr
        requests = [r for r in standin.requests if r.path.endswith("/v1/chat/completions")]
        run = Run(result.stdout, list(respan.spans), requests)
    ours = [line for line in result.stderr.splitlines() if line.startswith("respan_auto:")]
    assert ours == [] and "Traceback" not in result.stderr, result.stderr
    assert len(run.llm()) == len(run.requests), "one LLM span per call"
    assert {s.scope for s in run.llm()} <= {LLM_SCOPE}
    EXPECTED[name].check(run)
