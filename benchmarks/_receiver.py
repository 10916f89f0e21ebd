"""The benchmarks' OTLP endpoint: ``respan_auto.testing``'s ``OtlpReceiver``, served from a process of its own.

Why a separate process: the receiver decompresses and decodes every request before it answers, which costs
about as much CPU as encoding it. In the measured process that work would count as export overhead
(process CPU covers every thread) and would compete for the GIL with the export threads. Out here it only
costs wall time on another core (it is pinned to one when the machine has several).

Run as a script, it prints its port, then answers each line on stdin with one JSON line of counts; it stops
at end of input. ``ReceiverProcess`` is the benchmarks' side of that conversation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from typing import Any

from respan_auto.testing.otlp_receiver import Export, OtlpReceiver


class CountingReceiver(OtlpReceiver):
    """Decodes like ``OtlpReceiver`` but keeps counts, not requests: a long run stays small in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.scopes: Counter[str] = Counter()

    def record(self, export: Export) -> None:
        with self._lock:
            self.counts["requests"] += 1
            self.counts["raw_bytes"] += len(export.raw)
            self.counts["spans"] += len(export.spans)
            self.counts["failed"] += 0 if export.spans else 1
            self.scopes.update(span.scope for span in export.spans)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self.counts, "scopes": dict(self.scopes)}


def serve(core: int | None) -> None:
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    with CountingReceiver() as receiver:
        print(receiver.port, flush=True)
        for _ in sys.stdin:
            print(json.dumps(receiver.snapshot()), flush=True)


class ReceiverProcess:
    """Starts the receiver in a child process on ``core`` (if given); ``stats()`` asks it for its counts."""

    def __init__(self, core: int | None = None) -> None:
        args = [sys.executable, os.path.abspath(__file__)] + ([str(core)] if core is not None else [])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._lock = threading.Lock()
        self._process = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env
        )
        assert self._process.stdout is not None and self._process.stdin is not None
        self.port = int(self._process.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        """Requests, spans, bytes (uncompressed) and spans per instrumentation scope received so far."""
        with self._lock:
            assert self._process.stdin is not None and self._process.stdout is not None
            self._process.stdin.write("stats\n")
            self._process.stdin.flush()
            return dict(json.loads(self._process.stdout.readline()))

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> ReceiverProcess:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def other_cores() -> tuple[int | None, set[int] | None]:
    """(the receiver's core, the benchmark's cores): apart when there are at least two, else (None, None)."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None
    return cores[-1], set(cores[:-1])


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else None)
