"""The lines a process prints at exit about spans that did not arrive: counts by cause in words, no cause with
a count of 0, correct plurals, and the time the exit really waited.

Apps run as real subprocesses exporting to a loopback receiver (or to a closed port).
"""

from __future__ import annotations

import re
import socket

import pytest

from respan_auto.testing.otlp_receiver import OtlpReceiver
from tests.test_reliability import RESPAN_KEY, run_app

APP = """
    import os
    from opentelemetry import trace
    from respan_auto import Respan
    respan = Respan()
    tracer = trace.get_tracer("app")
    for i in range(int(os.environ["SPANS"])):
        tracer.start_span(f"s{i}").end()
"""
ZERO_CAUSE = re.compile(r"[:(,;] 0 ")  # "...: 0 because ...", "(0 waiting ...", "; 0 refused ..."


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def report_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "did not reach" in line or "dropped on the way" in line]


@pytest.mark.parametrize(("spans", "counted"), [(1, "1 span was"), (3, "3 spans were")])
def test_refused_spans_are_counted_by_cause_in_words(spans, counted):
    with OtlpReceiver(status=401) as rx:
        result, _ = run_app(APP, {"RESPAN_API_KEY": RESPAN_KEY, "RESPAN_BASE_URL": rx.base_url, "SPANS": str(spans)})
        url = f"{rx.base_url}/v2/traces"
    assert result.returncode == 0, result.stderr
    lines = report_lines(result.stderr)
    assert lines == [f"respan_auto: {counted} dropped on the way to {url}: {spans} refused by the endpoint (HTTP 401)"]
    assert "span(s)" not in result.stderr
    assert not ZERO_CAUSE.search(result.stderr), result.stderr


@pytest.mark.parametrize(("spans", "counted"), [(1, "1 span did"), (4, "4 spans did")])
def test_undelivered_spans_say_why_and_how_long_the_exit_really_waited(spans, counted):
    url = f"http://127.0.0.1:{closed_port()}/api"
    env = {"RESPAN_API_KEY": RESPAN_KEY, "RESPAN_BASE_URL": url, "RESPAN_EXIT_TIMEOUT": "1", "SPANS": str(spans)}
    result, elapsed = run_app(APP, env)
    assert result.returncode == 0, result.stderr
    (line,) = report_lines(result.stderr)
    match = re.fullmatch(
        rf"respan_auto: {counted} not reach {re.escape(url)}/v2/traces before exit \((?P<causes>[^)]*)\); "
        r"the exit waited (?P<waited>[\d.]+) s of RESPAN_EXIT_TIMEOUT=1\. "
        r"Set RESPAN_SPOOL_DIR to keep such spans for the next run",
        line,
    )
    assert match, line
    assert match["causes"] == f"{spans} waiting to be sent"
    assert float(match["waited"]) <= elapsed  # what was measured, not what was allowed
    assert "span(s)" not in result.stderr
    assert not ZERO_CAUSE.search(result.stderr), result.stderr


def test_a_spool_that_cannot_be_written_names_only_what_happened(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    env = {
        "RESPAN_API_KEY": RESPAN_KEY,
        "RESPAN_BASE_URL": f"http://127.0.0.1:{closed_port()}/api",
        "RESPAN_SPOOL_DIR": str(blocker / "spool"),
        "RESPAN_EXIT_TIMEOUT": "1",
        "SPANS": "2",
    }
    result, _ = run_app(APP, env)
    assert result.returncode == 0, result.stderr
    (line,) = report_lines(result.stderr)
    assert "2 spans could not be spooled" in line
    assert "spooled to" not in line  # nothing was: no "0 spans spooled"
    assert not ZERO_CAUSE.search(result.stderr), result.stderr
