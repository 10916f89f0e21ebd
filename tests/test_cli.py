"""``respan-instrument`` as a Unix tool: argparse's rules, errors that name what the user wrote, every setting
checked at launch, pipes, and a program that keeps its own arguments, signals and exit code.

Each test runs the installed console script as a subprocess.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from respan_auto.testing.otlp_receiver import OtlpReceiver
from respan_auto.version import __version__
from tests.conftest import REPO

LAUNCHER = str(Path(sys.executable).parent / "respan-instrument")
RESPAN_KEY = "rk-respan-sentinel-0xC11C11"
SECRET = "rk-has a space-0xC11C11"  # a key no HTTP header takes
SHOW_ARGV = "import sys; print(sys.argv[1:])"


def clean_env(tmp_path: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
    env.update(PYTHONPATH=str(REPO), RESPAN_LOCAL_STORE=str(tmp_path / "store" / "traces.jsonl"), **more)
    return env


def launch(args: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([LAUNCHER, *args], capture_output=True, text=True, env=env, timeout=60, **kwargs)


def test_an_unknown_option_is_named_and_nothing_runs(tmp_path):
    result = launch(["--api", "x", sys.executable, "-c", "print('ran')"], clean_env(tmp_path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "respan-instrument: error: unrecognized arguments: --api" in result.stderr.splitlines()


def test_options_are_never_abbreviated(tmp_path):
    result = launch(["--no-con", sys.executable, "-c", "print('ran')"], clean_env(tmp_path))
    assert result.returncode == 2
    assert "respan-instrument: error: unrecognized arguments: --no-con" in result.stderr.splitlines()
    assert result.stdout == ""


def test_version(tmp_path):
    result = launch(["--version"], clean_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"respan-instrument (respan-auto) {__version__}"


def test_a_bad_key_is_named_as_the_flag_and_never_quoted(tmp_path):
    result = launch(["--api-key", SECRET, sys.executable, "-c", "print('ran')"], clean_env(tmp_path))
    assert result.returncode == 2
    assert "respan-instrument: error: argument --api-key: it holds a space" in result.stderr
    assert SECRET not in result.stderr


def test_options_after_the_command_belong_to_the_program(tmp_path):
    args = ["--api-key", "x", "--version", "-h", "--", "--exit-timeout", "abc"]
    result = launch(["--app-name", "mine", sys.executable, "-c", SHOW_ARGV, *args], clean_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(args)
    assert result.stderr == ""


def test_a_double_dash_ends_the_options(tmp_path):
    result = launch(["--", sys.executable, "-c", SHOW_ARGV, "a"], clean_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['a']"


def test_a_missing_command_is_a_usage_error(tmp_path):
    result = launch(["--no-content"], clean_env(tmp_path))
    assert result.returncode == 2
    assert "the command to run is missing" in result.stderr


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--exit-timeout", "abc", "expected a number of seconds from 0 to 600"),
        ("--base-url", "not-a-url", "expected an http:// or https:// URL"),
        ("--gateway-url", "ftp://gateway.example", "expected an http:// or https:// URL"),
        ("--max-queue-size", "0", "expected a whole number from 1 to"),
        ("--metadata", "[1, 2]", "expected a JSON object"),
        ("--redact-patterns", '["(?i)fine", "(unclosed"]', "pattern '(unclosed'"),
        ("--max-queue-bytes", str(2**80), "expected a whole number from 65536 to"),
    ],
)
def test_a_bad_flag_value_is_named_as_the_flag(tmp_path, flag, value, expected):
    result = launch([flag, value, sys.executable, "-c", "print('ran')"], clean_env(tmp_path))
    assert result.returncode == 2
    assert result.stdout == ""  # the program did not run
    (line,) = [line for line in result.stderr.splitlines() if "error:" in line]
    assert line.startswith(f"respan-instrument: error: argument {flag}: {expected}"), line
    assert "RESPAN_" not in result.stderr


BAD_VARIABLES = {
    "RESPAN_API_KEY": SECRET,
    "RESPAN_EXIT_TIMEOUT": "abc",
    "RESPAN_MAX_QUEUE_SIZE": "99999999999999999999",
    "OTEL_BSP_SCHEDULE_DELAY": "99999999999999999999",
    "RESPAN_BASE_URL": "not-a-url",
    "RESPAN_GATEWAY_URL": "api.respan.ai/api",
    "RESPAN_METADATA": "{not json",
    "RESPAN_REDACT_PATTERNS": '["(unclosed"]',
    "RESPAN_TRACE_CONTENT": "maybe",
}


@pytest.mark.parametrize("imports_mistralai", [False, True])
def test_every_bad_variable_is_named_once_at_launch(tmp_path, imports_mistralai):
    """Even a program that never imports mistralai hears of them; one that does hears of each once, not twice."""
    code = "import mistralai\nprint('ran')" if imports_mistralai else "print('ran')"
    result = launch([sys.executable, "-c", code], clean_env(tmp_path, **BAD_VARIABLES))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ran\n"
    for variable in BAD_VARIABLES:
        lines = [line for line in result.stderr.splitlines() if "ignoring" in line and variable in line]
        assert len(lines) == 1, (variable, result.stderr)
        assert lines[0].startswith("respan-instrument: ignoring"), lines[0]
    assert SECRET not in result.stderr
    assert "Traceback" not in result.stderr and "could not start" not in result.stderr


def test_the_program_exit_code_and_pid_are_its_own(tmp_path):
    code = "import os, sys; print(os.getpid()); sys.exit(7)"
    proc = subprocess.Popen(
        [LAUNCHER, sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=clean_env(tmp_path)
    )
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 7
    assert int(out) == proc.pid  # exec'd, not a child


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the signal dispositions from /proc")
def test_the_program_inherits_no_ignored_signals(tmp_path):
    """Python ignores SIGPIPE and SIGXFSZ at start; the exec'd program must get the dispositions it would have had.

    (``cat ... | head`` under the launcher must die of SIGPIPE as it does without it.)
    """

    def ignored(args: list[str]) -> int:
        out = subprocess.run(args, capture_output=True, text=True, env=clean_env(tmp_path), timeout=60).stdout
        return int(re.search(r"^SigIgn:\s*(\w+)$", out, re.M).group(1), 16)  # type: ignore[union-attr]

    launched, plain = ignored([LAUNCHER, "cat", "/proc/self/status"]), ignored(["cat", "/proc/self/status"])
    for number in (signal.SIGPIPE, signal.SIGXFSZ):
        bit = 1 << (number - 1)
        assert launched & bit == plain & bit == 0, signal.Signals(number).name


@pytest.mark.parametrize(
    "args", [["traces"], ["traces", "--help"], ["--help"], ["--version"], ["flush", "--help"]], ids=" ".join
)
def test_a_closed_pipe_ends_quietly(tmp_path, args):
    """As ``respan-instrument traces | head -1``: the reader is gone before anything is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [LAUNCHER, *args], stdout=write_end, stderr=subprocess.PIPE, text=True, env=clean_env(tmp_path), timeout=60
        )
    finally:
        os.close(write_end)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def spool_one_span(spool: Path) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from respan_auto.export.spool import Spool

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.get_tracer("t").start_span("spooled-earlier").end()
    Spool(str(spool), "respan").write([(encode_spans(memory.get_finished_spans()).SerializeToString(), 1)])


@pytest.mark.parametrize("form", ["separate", "joined"])
def test_flush_takes_the_spool_dir_its_help_offers(tmp_path, form):
    spool = tmp_path / "spool"
    spool_one_span(spool)
    args = ["--spool-dir", str(spool)] if form == "separate" else [f"--spool-dir={spool}"]
    with OtlpReceiver() as rx:
        env = clean_env(tmp_path, RESPAN_API_KEY=RESPAN_KEY, RESPAN_BASE_URL=rx.base_url)
        result = launch(["flush", *args], env)
        names = [s.name for s in rx.spans]
    assert result.returncode == 0, result.stdout + result.stderr
    assert names == ["spooled-earlier"]
    assert result.stdout.startswith(f"sent 1 spooled span to {rx.base_url}/v2/traces; 0 still waiting (0 files)")
    assert list(spool.iterdir()) == []


def test_flush_with_nowhere_to_send_names_what_is_missing(tmp_path):
    spool = tmp_path / "spool"
    spool_one_span(spool)
    result = launch(["flush", "--spool-dir", str(spool)], clean_env(tmp_path))
    assert result.returncode == 2
    assert "1 spooled file" in result.stderr and "RESPAN_API_KEY" in result.stderr
    assert len(list(spool.iterdir())) == 1  # kept for a run that can send it


def test_flush_rejects_what_it_does_not_know(tmp_path):
    result = launch(["flush", "--spool", str(tmp_path)], clean_env(tmp_path))
    assert result.returncode == 2
    assert "unrecognized arguments: --spool" in result.stderr


def test_a_subcommand_after_options_gets_a_hint(tmp_path):
    result = launch(["--spool-dir", str(tmp_path), "flush"], clean_env(tmp_path))
    assert result.returncode == 127
    assert "put it first" in result.stderr


def test_help_names_the_other_commands_and_the_version(tmp_path):
    result = launch(["--help"], clean_env(tmp_path))
    assert result.returncode == 0
    for text in ("--version", "respan-instrument traces", "respan-instrument flush", "--spool-dir"):
        assert text in result.stdout
    assert textwrap.dedent(result.stdout).startswith("usage: respan-instrument [options] <command> [args...]")
