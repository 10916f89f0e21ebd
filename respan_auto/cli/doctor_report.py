"""What ``respan-instrument doctor`` found: sections of marked lines and facts, and the set-up they were judged on.

Each check fills one section and is run behind a guard, so a check that breaks becomes its own problem line
rather than a traceback, and a warning that reused code logs while it runs becomes a line of that section.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from respan_auto.config import Settings

OK, NOTE, PROBLEM = "ok", "note", "problem"


@dataclass(frozen=True)
class Setup:
    """The doctor's view of the run: the environment with the launcher's flags applied, and the command."""

    environ: Mapping[str, str]
    flags: Mapping[str, str]  # variable -> the flag that set it, for the variables given as flags
    settings: Settings
    command: list[str]
    offline: bool

    def written(self, variable: str) -> str:
        """The name the user gave a setting by: its flag, else its variable."""
        return self.flags.get(variable, variable)

    def source(self, variable: str) -> str:
        """Where a setting's value came from: its flag, its variable, or the default."""
        if variable in self.flags:
            return self.flags[variable]
        return variable if (self.environ.get(variable) or "").strip() else "default"


@dataclass
class Section:
    key: str  # its name in --json
    title: str
    facts: dict[str, Any] = field(default_factory=dict)
    lines: list[tuple[str, str]] = field(default_factory=list)

    def ok(self, text: str) -> None:
        self.lines.append((OK, text))

    def note(self, text: str) -> None:
        self.lines.append((NOTE, text))

    def problem(self, text: str) -> None:
        self.lines.append((PROBLEM, text))


def mask(secret: str) -> str:
    """A secret as it may be shown: its last 4 characters, and only when they are a small part of it."""
    return f"****{secret[-4:]}" if len(secret) >= 12 else "****"


class _Collector(logging.Handler):
    def __init__(self, section: Section) -> None:
        super().__init__(logging.WARNING)
        self.section = section

    def emit(self, record: logging.LogRecord) -> None:
        self.section.problem(record.getMessage().removeprefix("respan_auto: "))


def attempt(section: Section, name: str, check: Callable[[Section, Setup], None], setup: Setup) -> None:
    """Run one check into ``section``; if it raises, that is its line, and the section goes on."""
    try:
        check(section, setup)
    except Exception as error:  # noqa: BLE001 - the doctor reports, never raises
        section.problem(f"{name}: failed unexpectedly ({type(error).__name__}: {error})")


def run(key: str, title: str, check: Callable[[Section, Setup], None], setup: Setup) -> Section:
    """One check's section; what it logs at warning level, and what it raises, become its problem lines."""
    section = Section(key, title)
    logger = logging.getLogger("respan_auto")
    collector = _Collector(section)
    propagate = logger.propagate
    logger.addHandler(collector)
    logger.propagate = False
    try:
        attempt(section, title, check, setup)
    finally:
        logger.removeHandler(collector)
        logger.propagate = propagate
    return section
