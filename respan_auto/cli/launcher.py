"""``respan-instrument [options] <command> [args...]``: trace an unmodified program.

It sets RESPAN_* variables from the options, puts the bootstrap folder on PYTHONPATH and
``exec``s the command, so the PID, stdin/stdout and exit code are the program's own.
"""

from __future__ import annotations

import os
import sys

from respan_auto.options import ENVIRONMENT

# option -> (flag, takes a value, value for a bare flag)
_FLAGS = {
    "api_key": ("--api-key", True, None),
    "base_url": ("--base-url", True, None),
    "environment": ("--environment", True, None),
    "app_name": ("--app-name", True, None),
    "customer_identifier": ("--customer-identifier", True, None),
    "metadata": ("--metadata", True, None),
    "local_store": ("--local-store", True, None),
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


def _parser() -> object:
    import argparse

    lines = [
        f"  {var:<30} {flag:<23} {text}" for option, (var, text) in ENVIRONMENT.items() for flag in [_FLAGS[option][0]]
    ]
    parser = argparse.ArgumentParser(
        prog="respan-instrument",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a program with its Mistral calls traced. No code changes needed.",
        epilog="every option is also an environment variable (the option wins):\n"
        + "\n".join(lines)
        + "\n\nThe standard OTEL_* variables keep their meaning (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "
        "OTEL_SERVICE_NAME, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT, ...).\n\n"
        "other commands:\n  respan-instrument traces [--limit N]   show recent traces from the local store\n"
        "  respan-instrument flush                send the spans spooled in RESPAN_SPOOL_DIR",
    )
    for option, (flag, takes_value, _) in _FLAGS.items():
        help_text = _BARE_HELP.get(option) or ENVIRONMENT[option][1]
        if takes_value:
            parser.add_argument(flag, dest=option, metavar="VALUE", help=help_text)
        else:
            parser.add_argument(flag, dest=option, action="store_true", help=help_text)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the program to run, with its arguments")
    return parser


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


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]] | None:
    """Options (as RESPAN_* variables) and the command; None when --help or an error needs argparse.

    Hand-rolled because this runs on every launch and argparse alone costs milliseconds.
    """
    by_flag = {flag: (option, takes_value, bare) for option, (flag, takes_value, bare) in _FLAGS.items()}
    env: dict[str, str] = {}
    args = iter(argv)
    for arg in args:
        if arg == "--":
            return env, list(args)
        if not arg.startswith("-"):
            return env, [arg, *args]
        flag, has_value, value = arg.partition("=")
        known = by_flag.get(flag)
        if known is None:
            return None
        option, takes_value, bare = known
        if takes_value and not has_value:
            value = next(args, None)
            if value is None:
                return None
        elif not takes_value:
            if has_value:
                return None
            value = bare
        env[ENVIRONMENT[option][0]] = value
    return None


def bootstrap_dir() -> str:
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_bootstrap")
    if os.path.isfile(os.path.join(here, "sitecustomize.py")):
        return here
    from importlib.util import find_spec  # an editable install maps the folder elsewhere

    spec = find_spec("respan_auto._bootstrap")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("respan_auto._bootstrap is missing from this installation")
    return next(iter(spec.submodule_search_locations))


def main(argv: list[str]) -> int:
    parsed = parse(argv)
    if parsed is None or not parsed[1]:
        parser = _parser()
        parser.parse_args(argv)  # prints help or the error, and exits
        parser.print_help(sys.stderr)
        return 2
    env, command = parsed
    os.environ.update(env)
    flags = disabling_flags(command)
    if flags:
        sys.stderr.write(
            f"respan-instrument: {command[0]} {' '.join(flags)} ignores PYTHONPATH or site customisation, "
            "so this program will not be traced\n"
        )
    here = bootstrap_dir()
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != here]
    os.environ["PYTHONPATH"] = os.pathsep.join([here, *parts])
    try:
        os.execvp(command[0], command)
    except OSError as error:
        sys.stderr.write(f"respan-instrument: cannot run {command[0]}: {error.strerror}\n")
        return 127
    return 0  # not reached
