"""The disk spool: export requests still undelivered at exit wait here for the next run.

Each file is one gzip OTLP request body, written atomically. A sender claims a file by renaming
it, so two processes never send the same one; a file is deleted only once the endpoint has
accepted it, and put back when it has not.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

from respan_auto._guard import report_once

SUFFIX = ".otlp.gz"
_STALE_CLAIM_SECONDS = 600


class Spool:
    def __init__(self, directory: str) -> None:
        self.directory = directory

    def write(self, bodies: Iterable[bytes]) -> int:
        written = 0
        try:
            os.makedirs(self.directory, exist_ok=True)
            for body in bodies:
                name = f"{time.time_ns()}-{os.getpid()}-{written}{SUFFIX}"
                temporary = os.path.join(self.directory, "." + name + ".tmp")
                with open(temporary, "wb") as handle:
                    handle.write(body)
                os.replace(temporary, os.path.join(self.directory, name))
                written += 1
        except OSError as exc:
            report_once("spool write", exc)
        return written

    def _claimable(self) -> list[str]:
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        now = time.time()
        ready = [n for n in names if n.endswith(SUFFIX)]
        for name in names:  # claims left by a process that died while sending
            if ".sending-" in name:
                path = os.path.join(self.directory, name)
                try:
                    if now - os.path.getmtime(path) > _STALE_CLAIM_SECONDS:
                        original = name.split(".sending-")[0]
                        os.replace(path, os.path.join(self.directory, original))
                        ready.append(original)
                except OSError:
                    continue
        return sorted(set(ready))

    def deliver(self, post: Callable[[bytes], bool]) -> tuple[int, int]:
        """Send every spooled request with ``post``; returns (delivered, still waiting)."""
        delivered = waiting = 0
        for name in self._claimable():
            path = os.path.join(self.directory, name)
            claimed = f"{path}.sending-{os.getpid()}"
            try:
                os.replace(path, claimed)
            except OSError:
                continue  # another process took it
            try:
                with open(claimed, "rb") as handle:
                    body = handle.read()
                ok = post(body)
            except Exception as exc:  # noqa: BLE001
                report_once("spool delivery", exc)
                ok = False
            if ok:
                os.remove(claimed)
                delivered += 1
            else:
                os.replace(claimed, path)
                waiting += 1
        return delivered, waiting
