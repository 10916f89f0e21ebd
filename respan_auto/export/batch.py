"""A batching span processor that never makes an app thread wait on export.

The app's threads only append to a bounded queue (past the bound the oldest span goes, and is
counted). One daemon thread prepares (redacts, truncates) and exports. A failure worth retrying
keeps its batch and tries again with exponential backoff and jitter, or after the server's
``Retry-After``. ``force_flush`` waits at most its timeout, so process exit is bounded even when
the endpoint never answers; what is still undelivered then can be spooled to disk. After
``fork`` the child starts empty with a thread of its own, so nothing queued by the parent is
sent twice.
"""

from __future__ import annotations

import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence

from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from respan_auto._guard import report_once

MAX_RETRY_SECONDS = 300.0
MAX_BACKOFF_SECONDS = 30.0

Prepare = Callable[[ReadableSpan], "ReadableSpan | None"]


class _Flush:
    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = True


def backoff(attempt: int, retry_after: float | None) -> float:
    """Seconds before the next try: the server's word when it gave one, else exponential with jitter."""
    if retry_after is not None:
        return min(retry_after, MAX_BACKOFF_SECONDS)
    ceiling = min(MAX_BACKOFF_SECONDS, 0.5 * 2**attempt)
    return ceiling / 2 + random.random() * ceiling / 2


class BatchProcessor(SpanProcessor):
    def __init__(
        self,
        exporter: SpanExporter,
        max_queue_size: int = 2048,
        max_batch_size: int = 512,
        schedule_delay: float = 1.0,
        prepare: Prepare | None = None,
    ) -> None:
        self.exporter = exporter
        self.prepare = prepare
        self.max_queue_size = max(1, max_queue_size)
        self.max_batch_size = max(1, min(max_batch_size, self.max_queue_size))
        self.schedule_delay = schedule_delay
        self._start()
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)

            def after_in_child() -> None:
                processor = ref()
                if processor is not None:
                    processor._start()

            os.register_at_fork(after_in_child=after_in_child)

    def _start(self) -> None:
        self._queue: deque[ReadableSpan] = deque()
        self._flushes: list[_Flush] = []
        self._cond = threading.Condition(threading.Lock())
        self._stop = threading.Event()
        self._closed = False
        self._inflight: Sequence[ReadableSpan] = ()
        self.dropped = 0  # pushed out of a full queue
        self.failed = 0  # refused by the endpoint, or given up on
        self._thread = threading.Thread(target=self._work, name="respan-export", daemon=True)
        self._thread.start()

    def on_start(self, span: object, parent_context: object = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self._closed or not span.context.trace_flags.sampled:
            return
        with self._cond:
            if len(self._queue) >= self.max_queue_size:
                self._queue.popleft()  # the oldest goes, so the newest (usually the root) survives
                self.dropped += 1
            self._queue.append(span)
            if len(self._queue) >= self.max_batch_size:
                self._cond.notify()

    def _work(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._flushes and not self._closed:
                    self._cond.wait(self.schedule_delay)
                flushes, self._flushes = self._flushes, []
                closed = self._closed
            ok = self._drain()
            for flush in flushes:
                flush.ok = ok
                flush.done.set()
            if closed:
                return

    def _take(self) -> list[ReadableSpan]:
        with self._cond:
            count = min(self.max_batch_size, len(self._queue))
            return [self._queue.popleft() for _ in range(count)]

    def _drain(self) -> bool:
        ok = True
        while batch := self._take():
            ok = self._export(self._prepared(batch)) and ok
        return ok

    def _prepared(self, batch: list[ReadableSpan]) -> list[ReadableSpan]:
        if self.prepare is None:
            return batch
        return [p for p in map(self.prepare, batch) if p is not None]

    def _send_once(self, batch: Sequence[ReadableSpan]) -> tuple[bool, bool, float | None]:
        """(delivered, worth retrying, retry after)."""
        try:
            with suppress_instrumentation():  # the export's own HTTP call must not be traced
                send = getattr(self.exporter, "send", None)
                if send is not None:
                    outcome = send(batch)
                    return outcome.ok, outcome.retry, outcome.retry_after
                return self.exporter.export(batch) is SpanExportResult.SUCCESS, False, None
        except Exception as exc:  # noqa: BLE001 - an exporter bug must not kill the export thread
            report_once("span export", exc)
            return False, False, None

    def _export(self, batch: Sequence[ReadableSpan]) -> bool:
        if not batch:
            return True
        self._inflight = batch
        started = time.monotonic()
        attempt = 0
        try:
            while True:
                ok, retry, retry_after = self._send_once(batch)
                if ok:
                    return True
                if not retry or self._closed or time.monotonic() - started > MAX_RETRY_SECONDS:
                    self.failed += len(batch)
                    return False
                if self._stop.wait(backoff(attempt, retry_after)):
                    self.failed += len(batch)
                    return False
                attempt += 1
        finally:
            self._inflight = ()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Ask the export thread to send everything queued; wait at most ``timeout_millis``."""
        if not self._thread.is_alive():
            return not self._queue
        flush = _Flush()
        with self._cond:
            self._flushes.append(flush)
            self._cond.notify()
        return flush.done.wait(timeout_millis / 1000) and flush.ok

    def undelivered(self) -> list[ReadableSpan]:
        """Take what is still queued or in flight (prepared), for the spool; the export thread may still be trying."""
        inflight = list(self._inflight)
        with self._cond:
            queued = list(self._queue)
            self._queue.clear()
        return inflight + self._prepared(queued)

    def shutdown(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._stop.set()
        self._thread.join(5)
        self.exporter.shutdown()
