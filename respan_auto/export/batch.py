"""A batching span processor that never makes an app thread wait on export.

The app's threads only append to a bounded queue; one daemon thread exports. ``force_flush``
asks that thread to drain and waits at most its timeout, so process exit is bounded even when
the endpoint never answers. After ``fork`` the child starts empty with a thread of its own, so
nothing queued by the parent is sent twice.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from collections.abc import Sequence

from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from respan_auto._guard import report_once


class _Flush:
    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = True


class BatchProcessor(SpanProcessor):
    def __init__(
        self,
        exporter: SpanExporter,
        max_queue_size: int = 2048,
        max_batch_size: int = 512,
        schedule_delay: float = 1.0,
    ) -> None:
        self.exporter = exporter
        self.max_queue_size = max(1, max_queue_size)
        self.max_batch_size = max(1, min(max_batch_size, self.max_queue_size))
        self.schedule_delay = schedule_delay
        self.dropped = 0
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
        self._closed = False
        self.dropped = 0
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

    def _drain(self) -> bool:
        ok = True
        while True:
            with self._cond:
                count = min(self.max_batch_size, len(self._queue))
                batch = [self._queue.popleft() for _ in range(count)]
            if not batch:
                return ok
            ok = self._export(batch) and ok

    def _export(self, batch: Sequence[ReadableSpan]) -> bool:
        try:
            with suppress_instrumentation():  # the export's own HTTP call must not be traced
                return self.exporter.export(batch) is SpanExportResult.SUCCESS
        except Exception as exc:  # noqa: BLE001 - an exporter bug must not kill the export thread
            report_once("span export", exc)
            return False

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Ask the export thread to send everything queued; wait at most ``timeout_millis``."""
        if not self._thread.is_alive():
            return not self._queue
        flush = _Flush()
        with self._cond:
            self._flushes.append(flush)
            self._cond.notify()
        return flush.done.wait(timeout_millis / 1000) and flush.ok

    def shutdown(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(5)
        self.exporter.shutdown()
