"""The embedded default with no account: spans as JSON lines in a local file, private to its user.

The store holds prompts and completions, so the file is created 0600 in a directory created 0700, and a file left
readable by an earlier version is tightened when it is next written.

Many processes write at once (a launcher's children, forked workers, parallel runs). Each export takes an exclusive
``flock`` on a sibling ``.lock`` file that is never renamed, and only then opens the current file, rotates it when it
has grown past ``MAX_BYTES`` and appends the batch: every writer appends to the file that is current at that moment,
so a span is written exactly once and rotation cannot race. The lock is taken on a descriptor opened for that one
export, so a forked child never shares its parent's lock. Readers take the same lock, shared, just long enough to
open the files and note their sizes. On systems without ``fcntl`` (Windows) appends are not locked.

Everything outside this module writes through ``LocalStoreExporter`` and reads through ``read_records`` and
``select_traces``, so the format can change (to SQLite) behind them.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from respan_auto._guard import report_once, warn_once

MAX_BYTES = 8 * 1024 * 1024  # the current file is rotated once it is past this
KEEP_ROTATED = 1  # rotated files kept (``.1`` is the newest); older ones are deleted
FILE_MODE = 0o600
DIRECTORY_MODE = 0o700
_BINARY = getattr(os, "O_BINARY", 0)  # Windows would translate line ends otherwise

try:
    import fcntl
except ImportError:  # Windows: appends are still whole lines, just not locked
    fcntl = None  # type: ignore[assignment]


def span_record(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    trace_id, span_id = (context.trace_id, context.span_id) if context is not None else (0, 0)
    parent = span.parent
    return {
        "trace_id": f"{trace_id:032x}",
        "span_id": f"{span_id:016x}",
        "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
        "name": span.name,
        "kind": span.kind.name,
        "start": span.start_time,
        "end": span.end_time,
        "status": span.status.status_code.name,
        "service": (span.resource.attributes.get("service.name") if span.resource else None),
        "attributes": {k: list(v) if isinstance(v, tuple) else v for k, v in (span.attributes or {}).items()},
    }


def _tighten(fd: int) -> None:
    """A file of ours that others can read (an earlier version made it 0644) becomes 0600."""
    if os.name != "posix":
        return
    info = os.fstat(fd)
    if info.st_mode & 0o077 and info.st_uid == os.geteuid():
        os.fchmod(fd, FILE_MODE)


def _open_private(path: str, flags: int) -> int:
    """Open (creating it 0600, and its directory 0700) and tighten a file of the store."""
    flags |= os.O_CREAT | _BINARY
    try:
        fd = os.open(path, flags, FILE_MODE)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or ".", mode=DIRECTORY_MODE, exist_ok=True)
        fd = os.open(path, flags, FILE_MODE)
    try:
        _tighten(fd)
    except OSError:
        os.close(fd)
        raise
    return fd


@contextmanager
def _locked(path: str, exclusive: bool) -> Iterator[None]:
    """Hold the store's lock. A reader that cannot open the lock file (a read-only store) reads unlocked."""
    if fcntl is None:
        yield
        return
    lock_path = path + ".lock"
    if exclusive:
        fd = _open_private(lock_path, os.O_RDWR)
    else:
        try:
            fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT, FILE_MODE)
        except OSError:
            yield
            return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def _rotated(path: str) -> list[tuple[int, str]]:
    """The rotated files ``path.1``, ``path.2``, ... that exist, newest first."""
    directory, base = os.path.split(path)
    found = []
    with suppress(FileNotFoundError):
        for name in os.listdir(directory or "."):
            suffix = name[len(base) + 1 :]
            if name.startswith(base + ".") and suffix.isascii() and suffix.isdigit():
                found.append((int(suffix), os.path.join(directory, name)))
    return sorted(found)


def _rotate(path: str) -> None:
    """``path`` becomes ``path.1``, each ``path.N`` becomes ``path.N+1``; past ``KEEP_ROTATED`` they go."""
    for number, name in reversed(_rotated(path)):
        if number >= KEEP_ROTATED:
            os.unlink(name)
        else:
            os.replace(name, f"{path}.{number + 1}")
    os.replace(path, f"{path}.1")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def append(path: str, data: bytes) -> None:
    """Append whole lines to the store, rotating it first when it is full; under the exclusive lock."""
    with _locked(path, exclusive=True):
        fd = _open_private(path, os.O_RDWR | os.O_APPEND)
        try:
            size = os.fstat(fd).st_size
            if size > MAX_BYTES:
                os.close(fd)
                fd = -1
                _rotate(path)
                fd = _open_private(path, os.O_RDWR | os.O_APPEND)
            elif size:
                os.lseek(fd, -1, os.SEEK_END)
                if os.read(fd, 1) != b"\n":  # a writer died mid-line: keep that line from swallowing ours
                    data = b"\n" + data
            _write_all(fd, data)
        finally:
            if fd >= 0:
                os.close(fd)


class LocalStoreExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path
        self._checked_rotated = False

    def _tighten_rotated(self) -> None:
        """Rotated files an earlier version left readable: tightened once per process."""
        self._checked_rotated = True
        for _, name in _rotated(self.path):
            with suppress(OSError):
                fd = os.open(name, os.O_RDONLY)
                try:
                    _tighten(fd)
                finally:
                    os.close(fd)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            text = "".join(json.dumps(span_record(s), default=str, ensure_ascii=False) + "\n" for s in spans)
            append(self.path, text.encode("utf-8", "backslashreplace"))  # a lone surrogate: its JSON escape
            if not self._checked_rotated:
                self._tighten_rotated()
            return SpanExportResult.SUCCESS
        except OSError as exc:  # not writable (or full): where spans were said to be kept, so it is said, once
            warn_once(
                "local-store-write",
                "respan_auto: cannot write the local trace store %s (%s); spans are not being kept there. "
                "Set RESPAN_LOCAL_STORE to a writable path, or send them elsewhere (RESPAN_API_KEY, an OTLP endpoint)",
                self.path,
                exc.strerror or type(exc).__name__,
            )
            return SpanExportResult.FAILURE
        except Exception as exc:  # noqa: BLE001
            report_once("local store write", exc)
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _snapshot(path: str) -> list[tuple[int, int]]:
    """Descriptors and sizes of the store's files, oldest first, opened together under the shared lock."""
    opened: list[tuple[int, int]] = []
    with _locked(path, exclusive=False):
        for name in [name for _, name in reversed(_rotated(path))] + [path]:
            try:
                fd = os.open(name, os.O_RDONLY | _BINARY)
            except FileNotFoundError:
                continue
            opened.append((fd, os.fstat(fd).st_size))
    return opened


def read_records(path: str) -> Iterator[dict[str, Any]]:
    """Every span record in the store, oldest first; lines still being written are left for the next read."""
    files = _snapshot(path)
    try:
        for fd, size in files:
            data = os.pread(fd, size, 0) if hasattr(os, "pread") else os.read(fd, size)
            for line in data.split(b"\n")[:-1]:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash
                if isinstance(record, dict) and isinstance(record.get("trace_id"), str):
                    yield record
    finally:
        for fd, _ in files:
            os.close(fd)


@dataclass(frozen=True)
class Selection:
    """Which traces to read: the newest ``limit`` of those that match every filter given."""

    limit: int = 5
    trace_id: str | None = None  # a prefix of the hex id, lower case
    app: str | None = None  # a span's ``service.name``
    since_ns: int | None = None  # the trace's first span started at or after this (ns since the epoch)


def _start(record: dict[str, Any]) -> int:
    start = record.get("start")
    return start if isinstance(start, int) else 0


def select_traces(path: str, selection: Selection) -> list[list[dict[str, Any]]]:
    """The selected traces, oldest first, each as its span records in start order."""
    traces: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in read_records(path):
        if selection.trace_id is None or record["trace_id"].startswith(selection.trace_id):
            traces[record["trace_id"]].append(record)
    chosen = []
    for spans in traces.values():
        spans.sort(key=_start)
        if selection.app is not None and all(s.get("service") != selection.app for s in spans):
            continue
        if selection.since_ns is not None and _start(spans[0]) < selection.since_ns:
            continue
        chosen.append(spans)
    chosen.sort(key=lambda spans: _start(spans[0]))
    return chosen[-selection.limit :] if selection.limit > 0 else []
