"""``respan-instrument flush``: send the spans that earlier runs spooled to RESPAN_SPOOL_DIR."""

from __future__ import annotations

import argparse
import os
import sys

from respan_auto import config
from respan_auto.export import destinations
from respan_auto.export.pipeline import spool_for, spool_sender
from respan_auto.export.spool import SUFFIX

PROG = "respan-instrument flush"
DESCRIPTION = """Send the export requests that earlier runs spooled to RESPAN_SPOOL_DIR (or --spool-dir) because
their endpoint was down at exit. They go where those runs sent them: to Respan with RESPAN_API_KEY (and
RESPAN_BASE_URL), to the OTLP endpoint of OTEL_EXPORTER_OTLP_ENDPOINT. Each file is deleted once the
endpoint accepts it, or refuses it for good (the refusal is counted). Exit status: 0 when nothing is left
waiting, 1 when some is, 2 for a usage error or nowhere to send."""


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _spooled_files(directory: str) -> int:
    try:
        return sum(name.endswith(SUFFIX) for name in os.listdir(directory))
    except OSError:
        return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG,
        allow_abbrev=False,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--spool-dir", metavar="DIR", help="the spool folder (default: RESPAN_SPOOL_DIR)")
    options = parser.parse_args(argv)
    env = dict(os.environ)
    if options.spool_dir is not None:
        env["RESPAN_SPOOL_DIR"] = options.spool_dir
    settings = config.Settings.load(env)
    if not settings.spool_dir:
        parser.error("no spool folder: pass --spool-dir DIR or set RESPAN_SPOOL_DIR")
    built = [d for d in destinations.build(settings, env, None) if d.transport is not None]
    if not built:
        files = _spooled_files(settings.spool_dir)
        if not files:
            print(f"Nothing is spooled in {settings.spool_dir}.")
            return 0
        sys.stderr.write(
            f"{PROG}: {_plural(files, 'spooled file')} in {settings.spool_dir}, but nowhere to send them: "
            "set RESPAN_API_KEY (or OTEL_EXPORTER_OTLP_ENDPOINT) as for the runs that spooled them\n"
        )
        return 2
    status = 0
    for destination in built:
        spool = spool_for(settings, destination)
        assert spool is not None
        result = spool.deliver(spool_sender(destination))
        line = f"sent {_plural(result.delivered, 'spooled span')} to {destination.name}; "
        line += f"{result.waiting} still waiting ({_plural(result.files_left, 'file')})"
        if result.refused:
            line += f"; {result.refused} refused for good and deleted"
        print(line)
        status = status or (1 if result.waiting else 0)
    return status
