"""``respan-instrument``: run a program traced; or show the local traces (``traces``, ``ui``), check the set-up
(``doctor``) or send the spool (``flush``).

Output to a closed pipe (``respan-instrument traces | head -1``) ends the command quietly with
status 0, as Unix tools do, whichever subcommand was writing.
"""

from __future__ import annotations

import os
import sys


def _run(args: list[str]) -> int:
    if args and args[0] == "traces":
        from respan_auto.cli.traces import main as traces_main

        return traces_main(args[1:])
    if args and args[0] == "ui":
        from respan_auto.ui.command import main as ui_main

        return ui_main(args[1:])
    if args and args[0] == "doctor":
        from respan_auto.cli.doctor import main as doctor_main

        return doctor_main(args[1:])
    if args and args[0] == "flush":
        from respan_auto.cli.flush import main as flush_main

        return flush_main(args[1:])
    from respan_auto.cli.launcher import main as launch

    return launch(args)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush finds no closed pipe either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        try:
            return _run(args)
        finally:
            if sys.stdout is not None:
                sys.stdout.flush()  # what is still buffered meets a closed pipe here, not at interpreter exit
    except BrokenPipeError:
        _quiet_stdout()
        return 0
