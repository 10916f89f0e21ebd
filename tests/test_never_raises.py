"""``Respan()`` never raises, whatever the environment holds: each unusable value is named in one line, its default
is used, and the app goes on. Each case runs a real app in a subprocess."""

from __future__ import annotations

import pytest

from tests.test_reliability import run_app

APP = """
    from opentelemetry import trace
    from respan_auto import Respan
    respan = Respan(is_auto_instrument=True)
    trace.get_tracer("app").start_span("s").end()
    print("app ran", flush=True)
"""


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RESPAN_REDACT_PATTERNS", '["(?i)password=\\\\S+", "(unclosed"]'),
        ("RESPAN_REDACT_PATTERNS", '{"not": "a list"}'),
        ("RESPAN_MAX_QUEUE_SIZE", "99999999999999999999"),
        ("RESPAN_MAX_QUEUE_BYTES", str(2**80)),
        ("OTEL_BSP_SCHEDULE_DELAY", "99999999999999999999"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "-1"),
        ("RESPAN_BASE_URL", "http://[::1"),
        ("RESPAN_GATEWAY_URL", "not-a-url"),
        ("RESPAN_API_KEY", "rk-line\nbreak-0xFACE"),
        ("RESPAN_METADATA", "[1, 2]"),
        ("RESPAN_EXIT_TIMEOUT", "nan"),
    ],
)
def test_an_unusable_value_is_named_and_the_app_goes_on(tmp_path, variable, value):
    env = {"RESPAN_LOCAL_STORE": str(tmp_path / "traces.jsonl"), "RESPAN_EXIT_TIMEOUT": "1", variable: value}
    result, _ = run_app(APP, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "app ran\n"
    assert "Traceback" not in result.stderr and "Exception in thread" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    named = [line for line in lines if line.startswith("respan_auto: ignoring") and variable in line]
    assert len(named) == 1, result.stderr
    if variable == "RESPAN_API_KEY":
        assert "0xFACE" not in result.stderr  # a key is never quoted back


def test_an_unusable_argument_is_named_as_written(tmp_path):
    arguments = "base_url='nope', metadata=[1], api_key='rk bad 0xFACE'"
    code = APP.replace("Respan(is_auto_instrument=True)", f"Respan({arguments})")
    result, _ = run_app(code, {"RESPAN_LOCAL_STORE": str(tmp_path / "traces.jsonl"), "RESPAN_EXIT_TIMEOUT": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "app ran\n"
    lines = result.stderr.splitlines()
    url = "respan_auto: ignoring Respan(base_url='nope'): expected an http:// or https:// URL; using "
    assert any(line.startswith(url) for line in lines)
    assert any(line.startswith("respan_auto: ignoring Respan(metadata=...): expected a JSON object") for line in lines)
    assert any(line.startswith("respan_auto: ignoring Respan(api_key=...): it holds a space") for line in lines)
    assert "0xFACE" not in result.stderr
