"""Deliver at every kind of process end: run ``flush`` once when the process goes."""

from __future__ import annotations

import atexit
from collections.abc import Callable


def install(flush: Callable[[], None]) -> None:
    """Run ``flush`` at normal interpreter exit."""
    atexit.register(flush)
