"""The examples run offline, as a newcomer runs them, and show the seed's trees."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

LAUNCHER = str(Path(sys.executable).parent / "respan-instrument")


@pytest.fixture
def env(tmp_path):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
    clean["RESPAN_LOCAL_STORE"] = str(tmp_path / "traces.jsonl")
    return clean


def run(args, env):
    result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def traces(env):
    return run([LAUNCHER, "traces", "--limit", "1"], env).stdout


@pytest.mark.parametrize(("example", "prompt"), [("basic_chat", "Say hello"), ("streaming", "Write a haiku")])
def test_zero_code_examples_under_the_launcher(example, prompt, env):
    out = run([LAUNCHER, sys.executable, f"examples/{example}.py"], env).stdout
    assert f"Offline stand-in reply to: {prompt}" in out
    shown = traces(env)
    assert "└─ chat mistral-large-latest" in shown
    assert f"prompt: {prompt}" in shown


def test_the_fim_and_embeddings_example_gives_a_span_each(env):
    out = run([LAUNCHER, sys.executable, "examples/code_and_search.py"], env).stdout
    assert "Offline stand-in reply to: def is_even(n):" in out and "2 vectors of 8 dimensions" in out
    shown = run([LAUNCHER, "traces", "--limit", "2"], env).stdout
    assert "└─ text_completion codestral-latest" in shown and "└─ embeddings mistral-embed" in shown
    assert "prompt: def is_even(n):" in shown and "suffix: print(is_even(4))" in shown
    assert "· 2 vectors of 8 dimensions" in shown and "input: Shipping times" in shown


def test_pipeline_example_shows_the_whole_tree(env):
    run([sys.executable, "examples/pipeline.py"], env)
    lines = traces(env).splitlines()
    tree = [line for line in lines if "─ " in line]
    assert [t.split("─ ")[1].split("  ")[0] for t in tree] == [
        "content_pipeline.workflow",
        "generate_outline.task",
        "chat mistral-large-latest",
        "chat mistral-large-latest",
    ]


def test_handle_request_example_carries_the_customer(env):
    run([sys.executable, "examples/handle_request.py"], env)
    shown = traces(env)
    assert "handle_request.workflow" in shown
    assert shown.count("customer user_123") == 2  # the workflow and the LLM span
    assert "thread conv_001" in shown


def test_gateway_example_offline(env):
    out = run([sys.executable, "examples/gateway.py"], env).stdout
    assert "the gateway got POST /api/v1/chat/completions" in out
    assert '"customer_identifier": "user_123"' in out


def test_instrumentor_console_example(env):
    out = run([sys.executable, "examples/otel_console.py"], env).stdout
    assert '"name": "chat mistral-large-latest"' in out
