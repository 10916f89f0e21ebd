"""``respan-instrument flush``: send the spans that earlier runs spooled to RESPAN_SPOOL_DIR."""

from __future__ import annotations

import os

from respan_auto.config import Settings
from respan_auto.export.pipeline import make_exporter
from respan_auto.export.spool import Spool

USAGE = """usage: respan-instrument flush

Send the export requests that earlier runs spooled to RESPAN_SPOOL_DIR (or --spool-dir under the
launcher) because their endpoint was down at exit. Each file is deleted once the endpoint accepts it.
"""


def main(argv: list[str]) -> int:
    if argv:
        print(USAGE)
        return 0 if argv[0] in ("-h", "--help") else 2
    settings = Settings.load()
    if not settings.spool_dir:
        print("RESPAN_SPOOL_DIR is not set: there is no spool to send.")
        return 2
    exporter, destination = make_exporter(settings, os.environ)
    post = getattr(exporter, "post", None)
    if post is None:
        print(f"Spans go to {destination}, which needs no spool: nothing to send.")
        return 2
    delivered, waiting = Spool(settings.spool_dir).deliver(lambda body: post(body).ok)
    print(f"sent {delivered} spooled request(s) to {destination}; {waiting} still waiting")
    return 0 if waiting == 0 else 1
