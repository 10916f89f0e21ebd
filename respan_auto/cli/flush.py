"""``respan-instrument flush``: send the spans that earlier runs spooled to RESPAN_SPOOL_DIR."""

from __future__ import annotations

import os

from respan_auto.config import Settings
from respan_auto.export import destinations
from respan_auto.export.pipeline import spool_for, spool_sender

USAGE = """usage: respan-instrument flush [--spool-dir DIR]

Send the export requests that earlier runs spooled to RESPAN_SPOOL_DIR (or --spool-dir) because
their endpoint was down at exit. Each file is deleted once the endpoint accepts it, or refuses it
for good (the refusal is counted).
"""


def main(argv: list[str]) -> int:
    args = list(argv)
    if args and args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if (len(args) == 2 and args[0] == "--spool-dir") or (len(args) == 1 and args[0].startswith("--spool-dir=")):
        os.environ["RESPAN_SPOOL_DIR"] = args[1] if len(args) == 2 else args[0].split("=", 1)[1]
        args = []
    if args:
        print(USAGE)
        return 2
    settings = Settings.load()
    if not settings.spool_dir:
        print("RESPAN_SPOOL_DIR is not set: there is no spool to send.")
        return 2
    built = [d for d in destinations.build(settings, os.environ, None) if d.transport is not None]
    if not built:
        print("Spans go to the local store, which needs no spool: nothing to send.")
        return 2
    status = 0
    for destination in built:
        spool = spool_for(settings, destination)
        assert spool is not None
        result = spool.deliver(spool_sender(destination))
        line = f"sent {result.delivered} spooled span(s) to {destination.name}; "
        line += f"{result.waiting} still waiting ({result.files_left} file(s))"
        if result.refused:
            line += f"; {result.refused} refused for good and deleted"
        print(line)
        status = status or (1 if result.waiting else 0)
    return status
