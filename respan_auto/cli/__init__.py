"""``respan-instrument``: run a program traced, or show the local traces."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "traces":
        from respan_auto.cli.traces import main as traces_main

        return traces_main(args[1:])
    if args and args[0] == "flush":
        from respan_auto.cli.flush import main as flush_main

        return flush_main(args[1:])
    from respan_auto.cli.launcher import main as launch

    return launch(args)
