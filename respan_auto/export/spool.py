"""The disk spool: export requests still undelivered at exit wait here for the next run.

Each file is one OTLP protobuf request, gzip-compressed, written atomically, named for its
destination and its span count. A sender claims a file by renaming it, so two processes never
send the same one. A file is deleted once the endpoint has accepted it, or has refused it for good
(a 400 or 401 will not change by sending again); otherwise it is put back. The folder is bounded
in bytes: the oldest files go first.
"""

from __future__ import annotations

import gzip
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from respan_auto._guard import report_once
from respan_auto.export.sender import Outcome

SUFFIX = ".otlp.gz"
_STALE_CLAIM_SECONDS = 600
_NAME = re.compile(r"^(?P<dest>[a-z]+)-\d+-\d+-\d+-(?P<spans>\d+)s\.otlp\.gz$")


@dataclass
class Delivery:
    """What one pass over the spool did, in spans and files."""

    delivered: int = 0
    refused: int = 0
    waiting: int = 0
    files_left: int = 0


class Spool:
    def __init__(self, directory: str, destination: str, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.directory = directory
        self.destination = destination  # a short tag: "respan" or "otlp"
        self.max_bytes = max_bytes
        self.evicted_spans = 0

    def write(self, requests: Iterable[tuple[bytes, int]]) -> tuple[list[str], str | None]:
        """Write (protobuf, span count) pairs; the paths written, and the error that stopped it, if any."""
        paths: list[str] = []
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            for raw, spans in requests:
                name = f"{self.destination}-{time.time_ns()}-{os.getpid()}-{len(paths)}-{spans}s{SUFFIX}"
                temporary = os.path.join(self.directory, "." + name + ".tmp")
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(gzip.compress(raw, compresslevel=1))
                final = os.path.join(self.directory, name)
                os.replace(temporary, final)
                paths.append(final)
        except OSError as exc:
            return paths, exc.strerror or type(exc).__name__
        self._bound()
        return paths, None

    def _bound(self) -> None:
        """Evict the oldest files past ``max_bytes``, counting their spans."""
        try:
            entries = sorted(
                (e for e in os.scandir(self.directory) if e.name.endswith(SUFFIX)), key=lambda e: e.name.split("-")[1]
            )
            total = sum(e.stat().st_size for e in entries)
            for entry in entries:
                if total <= self.max_bytes:
                    break
                total -= entry.stat().st_size
                os.remove(entry.path)
                match = _NAME.match(entry.name)
                self.evicted_spans += int(match["spans"]) if match else 0
        except OSError as exc:
            report_once("spool bound", exc)

    @staticmethod
    def forget(path: str) -> None:
        """A spooled request whose late answer came after all: it must not be sent again."""
        try:
            os.remove(path)
        except OSError:
            pass

    def _claimable(self) -> list[str]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        now = time.time()
        ready = [n for n in names if n.endswith(SUFFIX) and n.startswith(self.destination + "-")]
        for name in names:  # claims left by a process that died while sending
            if ".sending-" in name and name.startswith(self.destination + "-"):
                path = os.path.join(self.directory, name)
                try:
                    if now - os.path.getmtime(path) > _STALE_CLAIM_SECONDS:
                        original = name.split(".sending-")[0]
                        os.replace(path, os.path.join(self.directory, original))
                        ready.append(original)
                except OSError:
                    continue
        return sorted(set(ready), key=lambda n: n.split("-")[1])

    def deliver(self, send: Callable[[bytes, int], Outcome]) -> Delivery:
        """Send every spooled request of this destination with ``send(protobuf, spans)``."""
        result = Delivery()
        for name in self._claimable():
            path = os.path.join(self.directory, name)
            claimed = f"{path}.sending-{os.getpid()}"
            match = _NAME.match(name)
            spans = int(match["spans"]) if match else 0
            try:
                os.replace(path, claimed)
            except OSError:
                continue  # another process took it
            try:
                with open(claimed, "rb") as handle:
                    raw = gzip.decompress(handle.read())
                outcome = send(raw, spans)
            except Exception as exc:  # noqa: BLE001
                report_once("spool delivery", exc)
                outcome = Outcome(ok=False, retry=True)
            if outcome.ok or not outcome.retry:
                os.remove(claimed)
                if outcome.ok:
                    result.delivered += spans
                else:
                    result.refused += spans
            else:
                os.replace(claimed, path)
                result.waiting += spans
                result.files_left += 1
        return result
