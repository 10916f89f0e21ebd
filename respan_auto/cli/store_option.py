"""What the two viewers (``traces`` and ``ui``) share: option errors in one line, and the store they read.

A viewer never changes a file that is not a trace store: it says what is there, naming where the path came from.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from respan_auto.config import Settings
from respan_auto.export.local_store import import_earlier, store_problem

STORE_HELP = "the store file (default: RESPAN_LOCAL_STORE or the per-user store)"


class OneLineParser(argparse.ArgumentParser):
    """Errors are one line naming the option, as the user wrote it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def whole_number(value: str, lowest: int, highest: int, expected: str) -> int:
    """An option's whole number from ``lowest`` to ``highest``; else an error saying ``expected`` and the value."""
    try:
        number = int(value)
    except ValueError:
        number = lowest - 1
    if not lowest <= number <= highest:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")
    return number


def store_to_read(given: str | None, command: str) -> str | None:
    """The store's path, an earlier version's records imported; None, said in one line, when it holds another file."""
    path = given or Settings.load().local_store
    problem = store_problem(path)
    if problem is None:
        import_earlier(path)
        return path
    origin = "--store" if given else "RESPAN_LOCAL_STORE" if os.environ.get("RESPAN_LOCAL_STORE") else "the store"
    print(f"{command}: {origin} {path} {problem}; it was left as it is (name a store with --store)", file=sys.stderr)
    return None
