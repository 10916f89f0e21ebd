"""Thin wrappers around the SDK's ``BatchSpanProcessor`` and the standard exporter.

``EndStage`` sits in front of the batch processor: when a span ends it is cut and sized
(``Trimmer``), and admitted only while the spans waiting to be encoded stay within their count and
byte bounds, so the batch processor never drops anything silently. ``ExportStage`` sits in front
of the standard exporter: it redacts and repairs each span (``Cleaner``) and splits the batch
into requests under the size limit. Both keep counts for the exit report.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from respan_auto._guard import report_once
from respan_auto.export import transport
from respan_auto.export.encoding import UnencodableError, encode_request
from respan_auto.export.fork import reset_in_child
from respan_auto.export.limits import Cleaner, Trimmer, span_size


class Waiting:
    """Spans ended but not yet encoded: their count and bytes, shared by the two stages."""

    def __init__(self, max_spans: int, max_bytes: int) -> None:
        self.max_spans = max_spans
        self.max_bytes = max_bytes
        self._reset()
        reset_in_child(self, "_reset")  # the batch processor empties its queue in the child too

    def _reset(self) -> None:
        self.lock = threading.Lock()
        self.spans = 0
        self.bytes = 0
        self.sizes: dict[int, int] = {}
        self.dropped = 0  # refused at the door: too many waiting already
        self.oversize = 0  # too large for any request, even alone

    def admit(self, span: ReadableSpan, size: int) -> bool:
        with self.lock:
            if self.spans >= self.max_spans or self.bytes + size > self.max_bytes:
                self.dropped += 1
                return False
            self.spans += 1
            self.bytes += size
            self.sizes[id(span)] = size
            return True

    def release(self, spans: Sequence[ReadableSpan]) -> list[int]:
        with self.lock:
            sizes = [self.sizes.pop(id(span), 0) for span in spans]
            self.spans = max(0, self.spans - len(spans))
            self.bytes = max(0, self.bytes - sum(sizes))
        return sizes


class EndStage(SpanProcessor):
    def __init__(self, batch_processor: SpanProcessor, trimmer: Trimmer, waiting: Waiting) -> None:
        self.batch_processor = batch_processor
        self.trimmer = trimmer
        self.waiting = waiting
        self._nudging = threading.Lock()

    def _nudge(self) -> None:
        """Large spans fill the byte budget long before a batch is full: have them encoded now, off this thread."""
        if not self._nudging.acquire(blocking=False):
            return

        def encode() -> None:
            try:
                self.batch_processor.force_flush()
            finally:
                self._nudging.release()

        try:
            threading.Thread(target=encode, name="respan-encode", daemon=True).start()
        except RuntimeError:  # interpreter shutdown: the exit flush encodes what is left
            self._nudging.release()

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        try:
            if not span.context.trace_flags.sampled:
                return
            trimmed, size = self.trimmer(span)
            if trimmed is None:
                with self.waiting.lock:
                    self.waiting.oversize += 1
                return
            if self.waiting.admit(trimmed, size):
                self.batch_processor.on_end(trimmed)
                if self.waiting.bytes > self.waiting.max_bytes // 4:
                    self._nudge()
        except Exception as exc:  # noqa: BLE001 - never raise into the span's end, which is the app's call
            report_once("span end", exc)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.batch_processor.force_flush(timeout_millis))

    def shutdown(self) -> None:
        self.batch_processor.shutdown()


def requests_under(spans: Sequence[ReadableSpan], sizes: Sequence[int], limit: int) -> Iterator[list[ReadableSpan]]:
    """Consecutive groups whose estimated sizes add up to at most ``limit`` (a lone span always goes)."""
    group: list[ReadableSpan] = []
    total = 0
    for span, size in zip(spans, sizes, strict=True):
        if group and total + size > limit:
            yield group
            group, total = [], 0
        group.append(span)
        total += size
    if group:
        yield group


class ExportStage(SpanExporter):
    """``send_encoded`` is the standard exporter's own send step, when it has one we can hand bytes to."""

    def __init__(
        self,
        exporter: SpanExporter,
        cleaner: Cleaner,
        waiting: Waiting,
        max_request_bytes: int,
        send_encoded: Callable[[bytes, int], bool] | None = None,
    ) -> None:
        self.exporter = exporter
        self.cleaner = cleaner
        self.waiting = waiting
        self.max_request_bytes = max_request_bytes
        self.send_encoded = send_encoded

    def _clean(self, spans: Sequence[ReadableSpan], sizes: list[int]) -> tuple[list[ReadableSpan], list[int]]:
        kept, kept_sizes = [], []
        for span, size in zip(spans, sizes, strict=True):
            try:
                cleaned = self.cleaner(span)
            except Exception as exc:  # noqa: BLE001 - an unpreparable span is dropped rather than sent raw
                report_once("span preparation", exc)
                continue
            kept.append(cleaned)
            kept_sizes.append(size or span_size(cleaned))
        return kept, kept_sizes

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        sizes = self.waiting.release(spans)
        cleaned, sizes = self._clean(spans, sizes)
        ok = True
        for group in requests_under(cleaned, sizes, self.max_request_bytes):
            transport.batch.spans = len(group)
            try:
                ok = self._export(group) and ok
            except Exception as exc:  # noqa: BLE001
                report_once("span export", exc)
                ok = False
            finally:
                transport.batch.spans = 0
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def _export(self, group: list[ReadableSpan]) -> bool:
        """Our byte-equal encoder and the exporter's send step; the standard export for what ours refuses."""
        if self.send_encoded is not None:
            try:
                data = encode_request(group)
            except UnencodableError:
                pass
            else:
                return self.send_encoded(data, len(group))
        return self.exporter.export(group) is SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
