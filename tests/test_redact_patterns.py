"""RESPAN_REDACT_PATTERNS: each regex means what it means alone, and no pattern can make ``Respan()`` raise.

The app runs ``Respan()`` in a real subprocess exporting to a loopback receiver; the property test drives
the settings and the redactor (pure code) with arbitrary pattern lists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from respan_auto.config import Settings, pattern_problem
from respan_auto.export.limits import REDACTED, Redactor
from respan_auto.testing.otlp_receiver import OtlpReceiver
from tests.conftest import REPO

RESPAN_KEY = "rk-respan-sentinel-0xFA77E2"

APP = """
    import os
    from opentelemetry import trace
    from respan_auto import Respan
    respan = Respan()
    for text in os.environ["TEXTS"].split("|"):
        trace.get_tracer("app").start_span("s", attributes={"text": text}).end()
    print("app ran", flush=True)
"""


def run_app(patterns: list[str] | str, texts: list[str]) -> tuple[subprocess.CompletedProcess, list[str]]:
    """The texts as the receiver got them, in order, after the app ran with those patterns (a list, or the
    variable's raw value)."""
    with OtlpReceiver() as rx:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
        env.update(
            PYTHONPATH=str(REPO),
            RESPAN_API_KEY=RESPAN_KEY,
            RESPAN_BASE_URL=rx.base_url,
            RESPAN_REDACT_PATTERNS=patterns if isinstance(patterns, str) else json.dumps(patterns),
            TEXTS="|".join(texts),
        )
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(APP)], capture_output=True, text=True, env=env, timeout=60
        )
        received = [s.attributes["text"] for s in rx.spans]
    return result, received


def test_an_inline_flag_works_as_the_user_meant():
    result, received = run_app([r"(?i)password=\S+"], ["login PASSWORD=hunter2 now", "password=x1 too"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "app ran\n"
    assert "Traceback" not in result.stderr
    assert received == [f"login {REDACTED} now", f"{REDACTED} too"]


def test_each_pattern_keeps_its_own_flags_and_groups():
    """Joined into one regex, ``(?i)`` would reach the other patterns (or fail) and ``\\1`` would point elsewhere."""
    patterns = [r"(?i)password=\S+", r"Token-\d+", r"(a)b", r"(x)\1"]
    result, received = run_app(patterns, ["token-12 Token-34", "ab then xx then x"])
    assert result.returncode == 0, result.stderr
    assert received == [f"token-12 {REDACTED}", f"{REDACTED} then {REDACTED} then x"]


def test_a_bad_pattern_is_named_once_and_only_it_is_skipped():
    patterns = [r"(?i)password=\S+", "(unclosed", "", r"pin-\d+"]
    result, received = run_app(patterns, ["PASSWORD=a pin-1234 (unclosed"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "app ran\n"
    lines = [line for line in result.stderr.splitlines() if "RESPAN_REDACT_PATTERNS" in line]
    assert len(lines) == 2, result.stderr
    assert "'(unclosed'" in lines[0] and "''" in lines[1]
    assert "Traceback" not in result.stderr
    assert received == [f"{REDACTED} {REDACTED} (unclosed"]


def test_not_a_list_is_named_and_nothing_else_changes():
    result, received = run_app('{"a": 1}', ["kept as it is"])
    assert result.returncode == 0, result.stderr
    assert sum("RESPAN_REDACT_PATTERNS" in line for line in result.stderr.splitlines()) == 1, result.stderr
    assert received == ["kept as it is"]


REGEX_BITS = st.sampled_from(
    ["(", ")", "(?i)", "(?x)", "(?-i:", "[", "]", "\\", "*", "+", "?", "{2}", "|", "a", "#", "\\1"]
)
PATTERN = st.lists(REGEX_BITS, max_size=6).map("".join) | st.text(max_size=8)


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")  # Python's words on odd regexes
@given(patterns=st.lists(PATTERN, max_size=5), text=st.text(alphabet="aA#()[]\\ x1", max_size=20))
def test_no_pattern_list_can_raise(patterns, text):
    settings = Settings.load(environ={"RESPAN_REDACT_PATTERNS": json.dumps(patterns)})
    assert settings.redact_patterns == tuple(p for p in patterns if pattern_problem(p) is None)
    redactor = Redactor(patterns=settings.redact_patterns, builtin=False)
    assert len(redactor.patterns) == len(settings.redact_patterns)  # every pattern the settings kept is used
    assert isinstance(redactor(text), str)


@pytest.mark.parametrize(
    "token",
    [
        "Bearer abcdefgh.ijklmnop",
        "BeArEr abcdefgh.ijklmnop",
        "bearer abcdefgh.ijklmnop",
        "sk-proj-AAAAAAAAAAAAAAAAAAAA",
        "pk-live-0123456789abcdefXYZ",
        "AKIAABCDEFGHIJKLMNOP",
        "ghp_" + "a" * 36,
        "xoxb-0123456789-abc",
    ],
)
def test_the_builtin_policy_finds_each_kind_of_token_in_any_case_it_matches(token):
    """The cheap pre-test must never hide a match: the whole span's text and each value are redacted."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, TraceFlags

    from respan_auto.export.limits import Cleaner

    text = f"prefix text, then {token} and more"
    redactor = Redactor()
    assert token not in redactor(text) and REDACTED in redactor(text)
    span = ReadableSpan(
        name="s",
        context=SpanContext(1, 2, False, TraceFlags(1)),
        resource=Resource({}),
        attributes={"gen_ai.prompt.0.content": text, "n": 1},
    )
    assert token not in Cleaner(redactor)(span).attributes["gen_ai.prompt.0.content"]
