"""``respan-instrument [options] <command> [args...]``: trace an unmodified program.

argparse reads the options up to the program's name; everything after it is the program's own.
Each option becomes its RESPAN_* variable, and every setting is checked here, once, before the
program runs: a bad flag is a usage error naming the flag, a bad variable one line naming the
variable (the program, which reads the same variables, is told not to say it again). Then the
bootstrap folder goes on PYTHONPATH and the command is ``exec``'d, so the PID, stdin/stdout,
signal dispositions and exit code are the program's own.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping

from respan_auto.options import ENVIRONMENT
from respan_auto.version import __version__

PROG = "respan-instrument"

# option -> (flag, takes a value, value for a bare flag)
FLAGS = {
    "api_key": ("--api-key", True, None),
    "base_url": ("--base-url", True, None),
    "environment": ("--environment", True, None),
    "app_name": ("--app-name", True, None),
    "customer_identifier": ("--customer-identifier", True, None),
    "metadata": ("--metadata", True, None),
    "local_store": ("--local-store", True, None),
    "local_max_bytes": ("--local-max-bytes", True, None),
    "local_max_age": ("--local-max-age", True, None),
    "exit_timeout": ("--exit-timeout", True, None),
    "trace_content": ("--no-content", False, "false"),
    "instrument_threading": ("--no-threading", False, "false"),
    "enabled": ("--disable", False, "false"),
    "max_queue_size": ("--max-queue-size", True, None),
    "max_queue_bytes": ("--max-queue-bytes", True, None),
    "max_export_bytes": ("--max-export-bytes", True, None),
    "max_attribute_length": ("--max-attribute-length", True, None),
    "spool_dir": ("--spool-dir", True, None),
    "spool_max_bytes": ("--spool-max-bytes", True, None),
    "redact_patterns": ("--redact-patterns", True, None),
    "redact_keys": ("--no-redact-keys", False, "false"),
    "gateway": ("--gateway", False, "true"),
    "gateway_url": ("--gateway-url", True, None),
    "tracing": ("--no-tracing", False, "false"),
}
_BARE_HELP = {
    "trace_content": "keep prompts, completions and tool arguments out of spans",
    "instrument_threading": "do not carry trace context into threads",
    "enabled": "run the program untraced",
    "redact_keys": "do not redact key-like tokens from captured content",
    "gateway": "route Mistral chat calls through the Respan gateway",
    "tracing": "no tracing (with --gateway: gateway-only mode)",
}
SUBCOMMANDS = ("traces", "ui", "doctor", "flush")
USAGE = f"""{PROG} [options] <command> [args...]
       {PROG} traces [options]
       {PROG} ui [--host ADDRESS] [--port N] [--open] [--store PATH]
       {PROG} doctor [--json] [--offline] [options] [-- command ...]
       {PROG} flush [--spool-dir DIR]"""
# What Python ignores at start-up and an exec'd program would inherit; subprocess restores them the same way.
_RESTORED_SIGNALS = ("SIGPIPE", "SIGXFSZ", "SIGXFZ")


def _checked(option: str) -> Callable[[str], str]:
    """An argparse ``type`` that judges the flag's value as its variable would be, and keeps the text as written."""
    from respan_auto import config

    reader = config.READERS.get(option)

    def check(value: str) -> str:
        if reader is not None:
            try:
                reader(value)
            except config.InvalidValueError as problem:
                shown = "" if option == "api_key" else f", got {value!r}"  # a key is never quoted back
                raise argparse.ArgumentTypeError(f"{problem}{shown}") from None
        return value

    return check


def parser() -> argparse.ArgumentParser:
    lines = [f"  {var:<30} {FLAGS.get(option, ('',))[0]:<23} {text}" for option, (var, text) in ENVIRONMENT.items()]
    built = argparse.ArgumentParser(
        prog=PROG,
        usage=USAGE,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a program with its Mistral calls traced. No code changes needed.",
        epilog="every option is also an environment variable (the option wins):\n"
        + "\n".join(lines)
        + "\n\nThe standard OTEL_* variables keep their meaning (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "
        "OTEL_SERVICE_NAME, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT, ...).\n"
        "Options after the command's name are the command's own.\n\n"
        f"other commands (each has --help):\n  {PROG} traces   show recent traces from the local store\n"
        f"  {PROG} ui       browse the local store in a web view on 127.0.0.1\n"
        f"  {PROG} doctor   check the set-up: versions, instrumentors, destination, conflicts\n"
        f"  {PROG} flush    send the spans spooled in RESPAN_SPOOL_DIR (or --spool-dir)",
    )
    built.add_argument("--version", action="version", version=f"{PROG} (respan-auto) {__version__}")
    for option, (flag, takes_value, _) in FLAGS.items():
        help_text = _BARE_HELP.get(option) or ENVIRONMENT[option][1]
        if takes_value:
            built.add_argument(flag, dest=option, metavar="VALUE", type=_checked(option), help=help_text)
        else:
            built.add_argument(flag, dest=option, action="store_true", help=help_text)
    built.add_argument("command", nargs=argparse.REMAINDER, help="the program to run, with its arguments")
    return built


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """The options as RESPAN_* variables, and the command. argparse exits on --help, --version or a usage error."""
    built = parser()
    options = built.parse_args(argv)
    command = list(options.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        built.error("the command to run is missing")
    env: dict[str, str] = {}
    for option, (_, takes_value, bare) in FLAGS.items():
        value = getattr(options, option)
        if takes_value and value is not None:
            env[ENVIRONMENT[option][0]] = value
        elif not takes_value and value:
            env[ENVIRONMENT[option][0]] = str(bare)
    return env, command


def report_settings(environ: Mapping[str, str]) -> list[str]:
    """One line on stderr per unusable setting; the keys of every problem reported so far, for the program."""
    from respan_auto import config

    raw = (environ.get(ENVIRONMENT["enabled"][0]) or "").strip()
    try:
        enabled = config.read_bool(raw) if raw else True
    except config.InvalidValueError:
        enabled = True  # reported below, as the program would
    if not enabled:
        return []  # off: nothing else is read
    earlier = config.reported_by_launcher()  # by an outer respan-instrument
    problems = [(key, message) for key, message in config.check(environ) if key not in earlier]
    for _, message in problems:
        sys.stderr.write(f"{PROG}: {message}\n")
    return [*earlier, *(key for key, _ in problems)] if problems else []


def disabling_flags(command: list[str]) -> list[str]:
    """Interpreter flags (-I, -E, -S) that would keep the bootstrap from running."""
    if not os.path.basename(command[0]).startswith("python"):
        return []
    found: list[str] = []
    args = iter(command[1:])
    for arg in args:
        if not arg.startswith("-") or arg.startswith("--") or arg == "-":
            break
        for position, letter in enumerate(arg[1:]):
            if letter in "cm":
                return found  # the rest is the program
            if letter in "WX":
                if position == len(arg) - 2:
                    next(args, None)  # the option's value is the next argument
                break
            if letter in "IES":
                found.append(f"-{letter}")
    return found


def bootstrap_dir() -> str:
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_bootstrap")
    if os.path.isfile(os.path.join(here, "sitecustomize.py")):
        return here
    from importlib.util import find_spec  # an editable install maps the folder elsewhere

    spec = find_spec("respan_auto._bootstrap")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("respan_auto._bootstrap is missing from this installation")
    return next(iter(spec.submodule_search_locations))


def _restore_signals() -> None:
    for name in _RESTORED_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None:
            signal.signal(number, signal.SIG_DFL)


def main(argv: list[str]) -> int:
    env, command = parse(argv)
    os.environ.update(env)
    from respan_auto import config

    reported = report_settings(os.environ)
    if reported:
        os.environ[config.REPORTED_VARIABLE] = json.dumps(reported)
    flags = disabling_flags(command)
    if flags:
        sys.stderr.write(
            f"{PROG}: {command[0]} {' '.join(flags)} ignores PYTHONPATH or site customisation, "
            "so this program will not be traced\n"
        )
    here = bootstrap_dir()
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != here]
    os.environ["PYTHONPATH"] = os.pathsep.join([here, *parts])
    _restore_signals()
    try:
        os.execvp(command[0], command)
    except OSError as error:
        hint = ""
        if command[0] in SUBCOMMANDS:  # a subcommand is only one as the first argument
            hint = f" ({PROG} {command[0]} is a command of its own: put it first, before its options)"
        sys.stderr.write(f"{PROG}: cannot run {command[0]}: {error.strerror}{hint}\n")
        return 127
    return 0  # not reached
