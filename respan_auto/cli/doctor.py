"""``respan-instrument doctor``: is this set up right? One screen (or one JSON document), one line per problem.

It takes the launcher's own options (its parser, so a flag means and is checked exactly as there) and, after
``--``, the command the user will run, and judges the set-up that run would have. Exit status 0 when nothing is a
problem, 1 otherwise; notes never fail it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from respan_auto.cli import launcher
from respan_auto.cli.doctor_checks import conflicts, planned_instrumentors, versions
from respan_auto.cli.doctor_destination import destination, live_check, otlp_headers
from respan_auto.cli.doctor_report import NOTE, PROBLEM, Section, Setup, mask, run
from respan_auto.config import Settings
from respan_auto.options import ENVIRONMENT

PROG = f"{launcher.PROG} doctor"
DESCRIPTION = """Check the set-up: versions, the instrumentors respan-instrument will activate, where spans go (with
each setting and where it came from) and whether that destination accepts them, and conflicts. Give it the options
you give respan-instrument, and after -- the command you run under it, to check that command too:

  respan-instrument doctor --api-key KEY -- python app.py

Exit status: 0 when nothing is a problem (notes do not count), 1 otherwise, 2 for a usage error."""
SECTIONS = (
    ("versions", "versions", versions),
    ("instrumentors", "instrumentors under respan-instrument", planned_instrumentors),
    ("destination", "destination", destination),
    ("live_check", "destination check", live_check),
    ("conflicts", "conflicts", conflicts),
)
MARK_WIDTH = len(PROBLEM) + 2


def parse(argv: list[str]) -> tuple[dict[str, str], list[str], bool, bool]:
    """The launcher's options as the variables they set, the command to check, --json and --offline."""
    parser = launcher.parser()
    parser.prog = PROG
    parser.usage = f"{PROG} [--json] [--offline] [launcher options] [-- command [args...]]"
    parser.description = DESCRIPTION
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the screen")
    parser.add_argument("--offline", action="store_true", help="do not contact the destination")
    options = parser.parse_args(argv)
    command = list(options.command)
    if command[:1] == ["--"]:
        command = command[1:]
    flags: dict[str, str] = {}
    for option, (_, takes_value, bare) in launcher.FLAGS.items():
        value = getattr(options, option)
        if takes_value and value is not None:
            flags[ENVIRONMENT[option][0]] = value
        elif not takes_value and value:
            flags[ENVIRONMENT[option][0]] = str(bare)
    return flags, command, options.json, options.offline


def _settings(environ: dict[str, str]) -> Settings:
    """The settings, quietly: what is wrong with them is the destination section's to say."""
    logger = logging.getLogger("respan_auto")
    logger.disabled = True
    try:
        return Settings.load(environ)
    finally:
        logger.disabled = False


def _secrets(setup: Setup) -> list[str]:
    """Every secret the set-up holds, to be masked wherever a message might quote one."""
    found = [setup.settings.api_key or "", (setup.environ.get("RESPAN_API_KEY") or "").strip()]
    variable, _ = otlp_headers(setup)
    if variable:
        from urllib.parse import unquote

        found += [unquote(p.partition("=")[2]).strip() for p in setup.environ[variable].split(",")]
    return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, mask(secret))
    return text


def render(sections: list[Section]) -> str:
    lines = [f"{PROG}"]
    for section in sections:
        lines.append("")
        lines.append(section.title)
        lines += [f"  {mark:<{MARK_WIDTH}}{text}" for mark, text in section.lines]
    problems = [text for section in sections for mark, text in section.lines if mark == PROBLEM]
    lines.append("")
    if problems:
        lines += [f"problem: {text}" for text in problems]
    else:
        notes = sum(mark == NOTE for section in sections for mark, _ in section.lines)
        lines.append(f"healthy: no problems ({notes} note{'' if notes == 1 else 's'})")
    return "\n".join(lines) + "\n"


def as_json(sections: list[Section]) -> str:
    document: dict[str, Any] = {
        "healthy": not any(mark == PROBLEM for s in sections for mark, _ in s.lines),
        "problems": [text for s in sections for mark, text in s.lines if mark == PROBLEM],
        "notes": [text for s in sections for mark, text in s.lines if mark == NOTE],
    }
    for section in sections:
        document[section.key] = {**section.facts, "checks": [{"mark": m, "text": t} for m, t in section.lines]}
    return json.dumps(document, indent=2, default=str) + "\n"


def main(argv: list[str]) -> int:
    flags, command, want_json, offline = parse(argv)
    environ = {**os.environ, **flags}
    flag_names = {variable: launcher.FLAGS[option][0] for option, (variable, _) in ENVIRONMENT.items()}
    setup = Setup(environ, {v: flag_names[v] for v in flags}, _settings(environ), command, offline)
    sections = [run(key, title, check, setup) for key, title, check in SECTIONS]
    output = (as_json if want_json else render)(sections)
    sys.stdout.write(_scrub(output, _secrets(setup)))
    return 1 if any(mark == PROBLEM for s in sections for mark, _ in s.lines) else 0
