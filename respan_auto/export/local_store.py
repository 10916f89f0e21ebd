"""The embedded default with no account: spans as JSON lines in a local file.

Several processes may write at once (a launcher's children, forked workers), so each batch is
one locked append. The file is rotated when it grows past a few megabytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from respan_auto._guard import report_once

MAX_BYTES = 8 * 1024 * 1024

try:
    import fcntl
except ImportError:  # Windows: appends are still whole lines, just not locked
    fcntl = None  # type: ignore[assignment]


def span_record(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    parent = span.parent
    return {
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
        "name": span.name,
        "kind": span.kind.name,
        "start": span.start_time,
        "end": span.end_time,
        "status": span.status.status_code.name,
        "service": (span.resource.attributes.get("service.name") if span.resource else None),
        "attributes": {k: list(v) if isinstance(v, tuple) else v for k, v in (span.attributes or {}).items()},
    }


class LocalStoreExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            data = "".join(json.dumps(span_record(s), default=str, ensure_ascii=False) + "\n" for s in spans)
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                if fcntl is not None:
                    fcntl.flock(handle, fcntl.LOCK_EX)
                if handle.tell() > MAX_BYTES:
                    os.replace(self.path, self.path + ".1")  # the next batch starts a new file
                handle.write(data)
            return SpanExportResult.SUCCESS
        except Exception as exc:  # noqa: BLE001
            report_once("local store write", exc)
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def read_records(path: str) -> Iterator[dict[str, Any]]:
    """Every span record in the store, oldest first (the rotated file, then the current one)."""
    for name in (path + ".1", path):
        try:
            with open(name, encoding="utf-8") as handle:
                for line in handle:
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue  # a line cut short by a crash
        except FileNotFoundError:
            continue
