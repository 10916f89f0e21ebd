"""``respan-instrument traces`` shows what real traced runs recorded: run under the launcher, then viewed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from respan_auto import cost
from tests.conftest import REPO

LAUNCHER = str(Path(sys.executable).parent / "respan-instrument")

# Each case is its own trace: one call, no parent span.
APP = """
import os
import sys

try:
    from mistralai.client import Mistral
except ImportError:
    from mistralai import Mistral

client = Mistral(api_key="sk-viewer-test", server_url=os.environ["STANDIN_URL"])
model = "mistral-small-latest"


def user(text):
    return [{"role": "user", "content": text}]


for case in sys.argv[1:]:
    if case == "tools":
        client.chat.complete(model=model, messages=user("what is the weather? #tools"))
    elif case in ("500", "401"):
        try:
            client.chat.complete(model=model, messages=user(f"fail with #{case}"))
        except Exception:
            pass
    elif case == "interrupted":
        with client.chat.stream(model=model, messages=user("a long story #chunks=4")) as stream:
            for event in stream:
                break
    elif case == "long":
        turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(11)]
        client.chat.complete(model=model, messages=turns)
    elif case.startswith("chunks="):
        with client.chat.stream(model=model, messages=user(f"stream #{case}")) as stream:
            for event in stream:
                pass
    else:
        client.chat.complete(model=model, messages=user(case))
"""


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


@pytest.fixture(scope="module")
def store(tmp_path_factory, server):
    """Two apps' runs: ``alpha`` (every case), then, after ``between``, ``beta`` (one plain chat)."""
    folder = tmp_path_factory.mktemp("viewer")
    app = folder / "app.py"
    app.write_text(textwrap.dedent(APP))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
    env.update(STANDIN_URL=server.url, RESPAN_LOCAL_STORE=str(folder / "traces.jsonl"), PYTHONPATH=str(REPO))
    cases = ["tools", "500", "401", "interrupted", "chunks=1", "chunks=2", "long"]
    alpha = run([LAUNCHER, sys.executable, str(app), *cases], {**env, "RESPAN_APP_NAME": "alpha"})
    assert alpha.returncode == 0, alpha.stderr
    between = datetime.now().astimezone()
    beta = run([LAUNCHER, sys.executable, str(app), "hello from beta"], {**env, "RESPAN_APP_NAME": "beta"})
    assert beta.returncode == 0, beta.stderr
    return {"env": env, "between": between}


def traces(store, *args: str) -> subprocess.CompletedProcess:
    return run([LAUNCHER, "traces", *args], store["env"])


def shown(store, *args: str) -> dict[str, str]:
    """The text view, one entry per trace, keyed by its prompt."""
    result = traces(store, "--limit", "20", *args)
    assert result.returncode == 0, result.stderr
    blocks = [b for b in result.stdout.split("\n\n") if b.strip()]
    return {re.search(r"prompt: (.*)", b)[1]: b for b in blocks}


def test_tool_calls_of_a_plain_answer_are_shown(store):
    block = shown(store)["what is the weather? #tools"]
    assert 'tool calls: get_weather({"city": "Paris", "unit": "celsius"})' in block
    assert "completion:" not in block  # the answer is the tool call, not an empty text


def test_each_call_and_each_trace_shows_its_cost_from_the_price_table(store):
    """Priced when viewed, for the model that answered (the stand-in's mistral-small-2506), as the installed table
    prices it: older table releases do not know that model, and then the cost is unknown, never a guess."""
    from genai_prices import Usage, calc_price

    block = shown(store)["hello from beta"]
    tokens = re.search(r"tokens (\d+) in / (\d+) out · cost (\$[0-9.]+|unknown)$", block, re.M)
    assert tokens, block
    usage = Usage(input_tokens=int(tokens[1]), output_tokens=int(tokens[2]))
    try:
        expected = float(calc_price(usage, "mistral-small-2506", provider_id="mistral").total_price)
    except LookupError:
        assert tokens[3] == "unknown"
        assert block.splitlines()[0].endswith(" · beta · cost unknown"), block
    else:
        assert float(tokens[3][1:]) == pytest.approx(expected, rel=5e-3)  # shown to 3 significant digits
        assert block.splitlines()[0].endswith(f" · beta · cost {tokens[3]}"), block
    assert "cost" not in shown(store)["fail with #500"]  # no usage, so no call to price


def test_without_the_price_table_the_costs_are_unknown_and_it_says_why_once(store):
    blocked = "import sys; sys.modules['genai_prices'] = None; from respan_auto.cli import main; sys.exit(main())"
    result = run([sys.executable, "-c", blocked, "traces", "--limit", "20"], store["env"])
    assert result.returncode == 0 and result.stderr.splitlines() == [cost.MISSING_LINE]
    assert "cost unknown" in result.stdout and "$" not in result.stdout


@pytest.mark.parametrize("status", ["500", "401"])
def test_errors_show_their_http_status(store, status):
    block = shown(store)[f"fail with #{status}"]
    assert re.search(rf"error: \w+ · HTTP {status}$", block, re.M), block


def test_an_interrupted_stream_is_flagged_and_chunks_are_counted(store):
    view = shown(store)
    interrupted = view["a long story #chunks=4"]
    assert "· 1 chunk ·" in interrupted and "stream interrupted" in interrupted
    assert "· 1 chunk ·" in view["stream #chunks=1"]
    assert "· 2 chunks ·" in view["stream #chunks=2"]
    for finished in (view["stream #chunks=1"], view["stream #chunks=2"]):
        assert "interrupted" not in finished
    assert "chunks" not in view["stream #chunks=1"].replace("#chunks=", "")
    assert re.search(r"· gaps \d+\.\d ms mean, \d+\.\d ms max", view["stream #chunks=2"])


def test_the_prompt_shown_is_the_last_message_of_a_long_conversation(store):
    assert "turn 10" in shown(store)


def test_json_lines_one_per_trace(store):
    result = traces(store, "--json", "--limit", "20")
    assert result.returncode == 0, result.stderr
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(documents) == 8
    assert [d["start"] for d in documents] == sorted(d["start"] for d in documents)
    for document in documents:
        assert {"trace_id", "start", "end", "spans"} <= set(document)
        assert all(span["trace_id"] == document["trace_id"] for span in document["spans"])
    last = documents[-1]["spans"][0]
    assert last["service"] == "beta"
    assert last["attributes"]["gen_ai.completion.0.content"] == "Offline stand-in reply to: hello from beta"
    assert traces(store, "--json", "--limit", "2").stdout.splitlines() == result.stdout.splitlines()[-2:]


def test_filter_by_trace_app_and_time(store):
    every = [json.loads(line) for line in traces(store, "--json", "--limit", "20").stdout.splitlines()]
    wanted = every[2]["trace_id"]
    (picked,) = shown(store, "--trace", wanted[:16].upper()).values()
    assert f"trace {wanted[:16]} " in picked
    assert set(shown(store, "--app", "beta")) == {"hello from beta"}
    assert len(shown(store, "--app", "alpha")) == 7
    assert set(shown(store, "--since", store["between"].isoformat())) == {"hello from beta"}
    utc = store["between"].astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert set(shown(store, "--since", utc)) == {"hello from beta"}
    for age in ("10m", "2h", "1d"):
        assert len(shown(store, "--since", age)) == 8
    later = (store["between"] + timedelta(days=1)).isoformat()
    nothing = traces(store, "--since", later, "--app", "alpha")
    assert nothing.returncode == 0
    assert nothing.stdout.strip().endswith(f"match --app alpha --since {later}.")
    assert traces(store, "--json", "--app", "nobody").stdout == ""


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--since", "yesterday"], "--since"),
        (["--since", "10x"], "--since"),
        (["--trace", "not-hex"], "--trace"),
        (["--limit", "0"], "--limit"),
        (["--sinc", "1d"], "--sinc"),  # no abbreviations
    ],
)
def test_a_bad_value_is_one_line_naming_the_option(store, args, flag):
    result = traces(store, *args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and flag in lines[0], result.stderr
    assert lines[0].startswith("respan-instrument traces: ")
