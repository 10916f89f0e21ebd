"""The embedded default with no account: spans in a local SQLite file, private to its user.

The store holds prompts and completions, so the file is created 0600 in a directory created 0700 before SQLite opens
it (SQLite gives its ``-wal`` and ``-shm`` files the database's mode), and a file of ours left readable by an earlier
version is tightened when a writer opens it.

Many processes write at once (a launcher's children, forked workers, parallel runs), so the database is in WAL mode
with a busy timeout: each export is one ``BEGIN IMMEDIATE`` transaction, retried a few times when the timeout passes.
Each process has one writer connection per store, guarded by a lock for its threads; it is closed before a fork and
opened afresh on either side, since an SQLite connection must not cross a fork. Readers open the file read-only, one
read transaction per call, so they never create a store, never block writers and always see whole exports.

Schema (``user_version`` 1):

- ``spans``: one row per span, primary key ``(trace_id, span_id)`` and written with ``INSERT OR IGNORE``, so a span
  is stored once. The record fields (ids, name, kind, start/end ns, status, service, attributes and events as JSON
  text) plus what queries filter on: model, operation, token counts, customer, the error and LLM-call flags and the
  time to first chunk. The rowid is the order spans arrived in.
- ``traces``: a summary row per trace kept by a trigger on every inserted span (start = min, end = max, the root
  span's name and app, span and LLM call counts, token sums, error, customer), so listing reads 20,000 rows rather
  than 100,000 spans.
- ``store``: one row counting changes (each span added, each retention pass that removed traces): the change marker
  a live view polls.

Retention is applied by writers, at most every ``RETENTION_EVERY`` seconds per process: whole traces that started
before the maximum age go, then the oldest traces until the live size (pages in use) is under the bound; the freed
pages are given back to the file system (incremental auto-vacuum).

A JSON-lines store of an earlier version (at the path itself, or ``traces.jsonl`` beside ``traces.db``) is imported
once, under the ``flock`` those versions used (the ``.lock`` sibling), and then kept as ``<name>.imported``.

Everything outside this module writes through ``LocalStoreExporter`` and reads through the functions at the end.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import stat
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from respan_auto import cost
from respan_auto import semconv as sc
from respan_auto._guard import report_once, warn_once

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700
STORE_NAME = "traces.db"  # the default store's name; a LEGACY_NAME file beside it is imported
LEGACY_NAME = "traces.jsonl"
BUSY_TIMEOUT = 5.0  # seconds a write waits for other writers before it is retried
WRITE_ATTEMPTS = 3
RETENTION_EVERY = 60.0  # seconds between a process's retention passes (the first export makes one)
CUSTOMER = "respan.customer_params.customer_identifier"
_SQLITE_HEADER = b"SQLite format 3\x00"
_OUR_TABLES = {"spans", "traces", "store"}
_FIRST_LINE_LIMIT = 1 << 24  # an earlier version's first record, however long its prompt
_HEX_ID = re.compile(r"[0-9a-f]{16}|[0-9a-f]{32}")
_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED: the primary codes, under the extended ones (517: BUSY_SNAPSHOT)
_BINARY = getattr(os, "O_BINARY", 0)
_T = TypeVar("_T")

try:
    import fcntl
except ImportError:  # Windows: an import is not locked against another process
    fcntl = None  # type: ignore[assignment]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_id TEXT, name TEXT, kind TEXT,
    start INTEGER, "end" INTEGER, status TEXT, service TEXT, model TEXT, operation TEXT,
    input_tokens INTEGER, output_tokens INTEGER, cached_tokens INTEGER, customer TEXT,
    error INTEGER NOT NULL, llm INTEGER NOT NULL, first_chunk REAL,
    attributes TEXT NOT NULL, events TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT PRIMARY KEY, start INTEGER NOT NULL, "end" INTEGER NOT NULL, app TEXT, root_name TEXT,
    root_rank INTEGER NOT NULL, root_start INTEGER NOT NULL, span_count INTEGER NOT NULL, llm_calls INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL,
    error INTEGER NOT NULL, customer TEXT
);
CREATE TABLE IF NOT EXISTS store (id INTEGER PRIMARY KEY CHECK (id = 0), added INTEGER NOT NULL);
INSERT OR IGNORE INTO store VALUES (0, 0);
CREATE INDEX IF NOT EXISTS traces_start ON traces (start);
CREATE INDEX IF NOT EXISTS traces_error ON traces (start) WHERE error;
CREATE INDEX IF NOT EXISTS spans_service ON spans (service, trace_id) WHERE service IS NOT NULL;
CREATE INDEX IF NOT EXISTS spans_model ON spans (model, trace_id) WHERE model IS NOT NULL;
CREATE INDEX IF NOT EXISTS spans_customer ON spans (customer, trace_id) WHERE customer IS NOT NULL;
CREATE INDEX IF NOT EXISTS spans_llm_start ON spans (start) WHERE llm;
CREATE TRIGGER IF NOT EXISTS span_added AFTER INSERT ON spans BEGIN
    INSERT INTO traces VALUES (
        new.trace_id, coalesce(new.start, 0), coalesce(new."end", new.start, 0), new.service, new.name,
        new.parent_id IS NOT NULL, coalesce(new.start, 0), 1, new.llm, coalesce(new.input_tokens, 0),
        coalesce(new.output_tokens, 0), coalesce(new.cached_tokens, 0), new.error, new.customer
    ) ON CONFLICT (trace_id) DO UPDATE SET
        start = min(start, excluded.start),
        "end" = max("end", excluded."end"),
        app = CASE WHEN {rooter} THEN coalesce(excluded.app, app) ELSE coalesce(app, excluded.app) END,
        root_name = CASE WHEN {rooter} THEN excluded.root_name ELSE root_name END,
        root_rank = CASE WHEN {rooter} THEN excluded.root_rank ELSE root_rank END,
        root_start = CASE WHEN {rooter} THEN excluded.root_start ELSE root_start END,
        span_count = span_count + 1,
        llm_calls = llm_calls + excluded.llm_calls,
        input_tokens = input_tokens + excluded.input_tokens,
        output_tokens = output_tokens + excluded.output_tokens,
        cached_tokens = cached_tokens + excluded.cached_tokens,
        error = max(error, excluded.error),
        customer = coalesce(customer, excluded.customer);
    UPDATE store SET added = added + 1;
END;
PRAGMA user_version = 1;
""".replace("{rooter}", "(excluded.root_rank, excluded.root_start) < (root_rank, root_start)")
# A span without a parent, else the earliest, names the trace: (has a parent, start) is compared, lowest wins.

_COLUMNS = (
    'trace_id, span_id, parent_id, name, kind, start, "end", status, service, model, operation, input_tokens, '
    "output_tokens, cached_tokens, customer, error, llm, first_chunk, attributes, events"
)
_INSERT = f"INSERT OR IGNORE INTO spans ({_COLUMNS}) VALUES ({', '.join('?' * 20)})"
_RECORD_COLUMNS = 'trace_id, span_id, parent_id, name, kind, start, "end", status, service, attributes, events'
_RECORD_KEYS = ("trace_id", "span_id", "parent_id", "name", "kind", "start", "end", "status", "service")


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
        "attributes": _plain(span.attributes),
        "events": [{"name": e.name, "time": e.timestamp, "attributes": _plain(e.attributes)} for e in span.events],
    }


def _plain(attributes: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in (attributes or {}).items()}


# ---- records to rows -----------------------------------------------------------------------------------------------


def _storable(text: str) -> str:
    """Text SQLite takes: a lone surrogate (not UTF-8) becomes its escape, which JSON reads back as it was."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _text(value: Any) -> str | None:
    return None if value is None else _storable(value if isinstance(value, str) else str(value))


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _json(value: Any) -> str:
    return _storable(json.dumps(value, default=str, ensure_ascii=False))


def _row(record: dict[str, Any]) -> tuple[Any, ...]:
    """A span record as the ``spans`` columns, with the fields queries filter on pulled out of its attributes."""
    attributes = record.get("attributes")
    attributes = attributes if isinstance(attributes, dict) else {}
    events = record.get("events")
    status = _text(record.get("status"))
    return (
        _text(record.get("trace_id")),
        _text(record.get("span_id")) or "",
        _text(record.get("parent_id")),
        _text(record.get("name")),
        _text(record.get("kind")),
        _whole(record.get("start")),
        _whole(record.get("end")),
        status,
        _text(record.get("service")),
        _text(cost.span_model(attributes)),
        _text(attributes.get(sc.GEN_AI_OPERATION_NAME)),
        _whole(attributes.get(sc.GEN_AI_USAGE_INPUT_TOKENS)),
        _whole(attributes.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS)),
        _whole(attributes.get(cost.CACHE_READ_TOKENS)),
        _text(attributes.get(CUSTOMER)),
        int(status == "ERROR" or sc.ERROR_TYPE in attributes),
        int(cost.is_model_call(attributes)),
        _number(attributes.get(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)),
        _json(attributes),
        _json(events if isinstance(events, list) else []),
    )


def _record(row: Sequence[Any]) -> dict[str, Any]:
    record = dict(zip(_RECORD_KEYS, row[:9], strict=True))
    record["attributes"] = json.loads(row[9])
    record["events"] = json.loads(row[10])
    return record


# ---- files ---------------------------------------------------------------------------------------------------------


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


def _create_private(path: str) -> None:
    """Create a database file 0600 (its directory 0700) for SQLite to open, or tighten the one there.

    A file SQLite may have open is never opened and closed here: closing any descriptor of a file drops every POSIX
    lock the process holds on it, SQLite's included.
    """
    try:
        os.close(_open_private(path, os.O_RDWR | os.O_EXCL))
    except FileExistsError:
        _tighten_path(path)


def _tighten_path(path: str) -> None:
    """``_tighten`` by name, without a descriptor (see ``_create_private``)."""
    if os.name != "posix":
        return
    with suppress(FileNotFoundError):
        info = os.stat(path, follow_symlinks=False)
        if stat.S_ISREG(info.st_mode) and info.st_mode & 0o077 and info.st_uid == os.geteuid():
            os.chmod(path, FILE_MODE)


class NotAStoreError(Exception):
    """The store's path holds something else, which is left as it is: never imported, replaced or given tables."""


REFUSED_VARIABLE = "RESPAN_LOCAL_STORE_REFUSED"  # the path a process said it refused: its children stay quiet


def say_not_a_store(path: str, problem: str) -> None:
    """The one line that says the store's path holds something else: once per process, and not again in children."""
    if os.environ.get(REFUSED_VARIABLE) == path:
        return
    os.environ[REFUSED_VARIABLE] = path
    warn_once(
        "local-store-foreign",
        "respan_auto: the local trace store %s %s, so it is left as it is and spans are not kept there. "
        "Set RESPAN_LOCAL_STORE (or --local-store) to a new file's path",
        path,
        problem,
    )


def _first_line(path: str) -> bytes | None:
    """The file's SQLite header, else its first line (up to ``_FIRST_LINE_LIMIT``); None when it is not a file."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        return None
    with open(path, "rb") as file:
        head = file.read(len(_SQLITE_HEADER))
        return head if head == _SQLITE_HEADER or b"\n" in head else head + file.readline(_FIRST_LINE_LIMIT)


def _is_record(line: bytes) -> bool:
    """A span record as earlier versions wrote them: hex ids, and the attributes as an object."""
    try:
        record = json.loads(line)
    except ValueError:
        return False
    if not isinstance(record, dict):
        return False
    trace_id, span_id = record.get("trace_id"), record.get("span_id")
    return (
        isinstance(trace_id, str)
        and _HEX_ID.fullmatch(trace_id) is not None
        and isinstance(span_id, str)
        and _HEX_ID.fullmatch(span_id) is not None
        and isinstance(record.get("attributes"), dict)
    )


def _is_json_lines(path: str) -> bool:
    """An earlier version's store: a file of JSON lines whose first is a span record."""
    try:
        line = _first_line(path)
    except OSError:
        return False
    return line is not None and _is_record(line)


def _tables(path: str) -> set[str] | None:
    """The tables of the SQLite database at ``path``, or None when SQLite cannot read it.

    Read as immutable first: no lock is taken and no ``-wal`` or ``-shm`` made. A database whose tables may still be
    only in its WAL (ours being created, or another program's in use), or one that read oddly (a page being written
    back), is read again the usual way, which sees the WAL.
    """
    try:
        tables: set[str] | None = _table_names(path, "immutable=1")
    except sqlite3.DatabaseError:
        tables = None
    if tables or (tables is not None and not _has_wal(path)):
        return tables
    try:
        return _table_names(path, "mode=ro")
    except sqlite3.DatabaseError as exc:
        if _is_busy(exc):
            raise
        return None


def _has_wal(path: str) -> bool:
    try:
        return os.path.getsize(path + "-wal") > 0
    except OSError:
        return False


def _table_names(path: str, how: str) -> set[str]:
    connection = sqlite3.connect(_read_only_uri(path, how), uri=True, timeout=BUSY_TIMEOUT)
    try:
        return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        connection.close()


def store_problem(path: str) -> str | None:
    """Why ``path`` cannot hold the store, or None: it does, or an earlier version's, or nothing (yet)."""
    try:
        if os.path.isdir(path):
            return "is a directory"
        if not os.path.lexists(path):
            return None
        line = _first_line(path)
    except FileNotFoundError:  # gone meanwhile, or a link to nothing yet
        return None
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    if line is None:
        return "is not a regular file"
    if not line:
        return None
    if line == _SQLITE_HEADER:
        try:
            tables = _tables(path)
        except sqlite3.Error:  # busy: a writer of ours is at work, and its store is judged by the next look
            return None
        if tables is None:
            return "is an SQLite database that cannot be read"
        if tables and not _OUR_TABLES <= tables:
            return "is another program's SQLite database"
        return None
    return None if _is_record(line) else "is not a respan-auto trace store"


@contextmanager
def _flocked(path: str) -> Iterator[None]:
    """Hold the exclusive ``flock`` on ``path``'s ``.lock`` sibling, as earlier versions' writers did."""
    if fcntl is None:
        yield
        return
    fd = _open_private(path + ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _rotated(path: str) -> list[str]:
    """The rotated files ``path.1``, ``path.2``, ... an earlier version left, oldest (highest number) first."""
    directory, base = os.path.split(path)
    found = []
    with suppress(FileNotFoundError, NotADirectoryError):
        for name in os.listdir(directory or "."):
            suffix = name[len(base) + 1 :]
            if name.startswith(base + ".") and suffix.isascii() and suffix.isdigit():
                found.append((int(suffix), os.path.join(directory, name)))
    return [name for _, name in sorted(found, reverse=True)]


def _json_lines_records(data: bytes) -> Iterator[dict[str, Any]]:
    for line in data.split(b"\n"):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        if isinstance(record, dict) and isinstance(record.get("trace_id"), str):
            yield record


# ---- connections ---------------------------------------------------------------------------------------------------


def _is_busy(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    return (code & 0xFF) in _BUSY_CODES if code is not None else "locked" in str(error) or "busy" in str(error)


@contextmanager
def _transaction(connection: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
    connection.execute(begin)
    try:
        yield
    except BaseException:
        with suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _open_database(path: str) -> sqlite3.Connection:
    """A writer connection to an SQLite store at ``path`` (a private file that exists), its schema in place."""
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    try:
        connection.execute("PRAGMA auto_vacuum = INCREMENTAL")  # takes effect only while the file has no tables
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")  # WAL stays consistent; a power cut may lose the last
        with _transaction(connection):
            for statement in _statements(_SCHEMA):
                connection.execute(statement)
    except BaseException:
        connection.close()
        raise
    for sibling in (path + "-wal", path + "-shm"):
        _tighten_path(sibling)
    return connection


def _statements(script: str) -> Iterator[str]:
    """The script's statements one by one (``executescript`` would commit the transaction they belong to)."""
    pending = ""
    for line in script.strip().splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""


def _insert(connection: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    with _transaction(connection):
        connection.executemany(_INSERT, rows)


def _import_in_place(path: str) -> None:
    """``path`` is an earlier version's store: its records go to a new database that then takes its place.

    The old content is kept as ``path.imported`` before the swap, and the swap is one rename, so the path is never
    missing for a process about to open it.
    """
    sources = [*filter(_is_json_lines, _rotated(path)), path]
    contents = []
    for name in sources:
        with open(name, "rb") as file:
            contents.append(file.read())
    fresh = path + ".importing"
    with suppress(FileNotFoundError):
        os.unlink(fresh)
    _create_private(fresh)
    connection = _open_database(fresh)
    try:
        _insert(connection, [_row(r) for data in contents for r in _json_lines_records(data)])
    finally:
        connection.close()
    for name, data in zip(sources, contents, strict=True):
        fd = _open_private(name + ".imported", os.O_WRONLY | os.O_TRUNC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        if name != path:
            os.unlink(name)
    os.replace(fresh, path)


def _import_beside(connection: sqlite3.Connection, legacy: str) -> None:
    """An earlier version's ``traces.jsonl`` beside the store: imported, then renamed ``<name>.imported``.

    Importing twice (a crash before the renames) stores nothing twice: spans are inserted or ignored.
    """
    with _flocked(legacy):
        sources = [name for name in (*_rotated(legacy), legacy) if _is_json_lines(name)]
        rows: list[tuple[Any, ...]] = []
        for name in sources:
            with open(name, "rb") as file:
                rows.extend(_row(r) for r in _json_lines_records(file.read()))
        if rows:
            _insert(connection, rows)
        for name in sources:
            os.replace(name, name + ".imported")
            _tighten_path(name + ".imported")


def _earlier_beside(path: str) -> str | None:
    """The ``traces.jsonl`` an earlier version left beside a store named ``traces.db``, if it is there."""
    directory, base = os.path.split(path)
    legacy = os.path.join(directory, LEGACY_NAME)
    found = base == STORE_NAME and any(_is_json_lines(name) for name in (*_rotated(legacy), legacy))
    return legacy if found else None


def open_writer(path: str) -> sqlite3.Connection:
    """This process's connection to the store at ``path``, created private, an earlier version's store imported."""
    problem = store_problem(path)
    if problem is not None:
        raise NotAStoreError(path, problem)
    _create_private(path)  # 0600 in a 0700 directory, before SQLite creates it with its own mode
    if _is_json_lines(path):
        with _flocked(path):
            if _is_json_lines(path):  # not imported by another process meanwhile
                _import_in_place(path)
    _tighten_path(path + ".lock")
    connection = _open_database(path)
    legacy = _earlier_beside(path)
    if legacy is not None:
        try:
            _import_beside(connection, legacy)
        except BaseException:
            connection.close()
            raise
    return connection


# ---- retention -----------------------------------------------------------------------------------------------------


def import_earlier(path: str) -> None:
    """An earlier version's store at or beside ``path``, imported now: for a viewer run before any traced program."""
    if store_problem(path) is None and (_is_json_lines(path) or _earlier_beside(path) is not None):
        try:
            open_writer(path).close()
        except (OSError, sqlite3.Error) as exc:  # a read-only store: the viewer shows what it can read
            report_once("local store import", exc)


def live_bytes(connection: sqlite3.Connection) -> int:
    """The bytes of the pages in use (free pages are not counted: they are reused, or vacuumed away)."""
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    free = connection.execute("PRAGMA freelist_count").fetchone()[0]
    size = connection.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


def _drop_traces(connection: sqlite3.Connection, chosen: str, parameters: tuple[Any, ...]) -> None:
    """Delete whole traces: ``chosen`` selects their ids from ``traces`` (deterministically, as it runs twice)."""
    connection.execute(f"DELETE FROM spans WHERE trace_id IN ({chosen})", parameters)
    connection.execute(f"DELETE FROM traces WHERE trace_id IN ({chosen})", parameters)


def _vacuum(connection: sqlite3.Connection) -> None:
    """Give the free pages back to the file.

    The pragma frees one page a step, and Python before 3.12 takes only the first step of a statement that returns
    no columns: so it runs again while that still frees pages.
    """
    free = connection.execute("PRAGMA freelist_count").fetchone()[0]
    while free:
        connection.execute("PRAGMA incremental_vacuum").fetchall()
        left = connection.execute("PRAGMA freelist_count").fetchone()[0]
        if left >= free:  # not an incrementally vacuumed file
            return
        free = left


def apply_retention(connection: sqlite3.Connection, max_bytes: int, max_age: float) -> None:
    """Traces that started more than ``max_age`` seconds ago go, then the oldest until under ``max_bytes``."""
    cutoff = time.time_ns() - int(max_age * 1e9)
    before = connection.total_changes
    with _transaction(connection):
        _drop_traces(connection, "SELECT trace_id FROM traces WHERE start < ?", (cutoff,))
        while (live := live_bytes(connection)) > max_bytes:
            count = connection.execute("SELECT count(*) FROM traces").fetchone()[0]
            if not count:
                break
            oldest = max(1, math.ceil(count * (live - max_bytes) / live))
            _drop_traces(connection, "SELECT trace_id FROM traces ORDER BY start, trace_id LIMIT ?", (oldest,))
        if connection.total_changes != before:
            connection.execute("UPDATE store SET added = added + 1")  # a live view drops what went, too
        _vacuum(connection)  # in the same transaction: the WAL takes each freed page once
    # the file shrinks when the WAL is written back; passive: never waits for readers (the next pass finishes it)
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


# ---- the exporter --------------------------------------------------------------------------------------------------


class _StoreBusyError(Exception):
    """Other writers held the store past every attempt."""


class _Writer:
    """This process's one connection to a store, shared by its exporters and their threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.connection: sqlite3.Connection | None = None
        self.retained_at = -math.inf  # monotonic time of the last retention pass
        self.refused = False  # the path holds something else

    def write(self, rows: list[tuple[Any, ...]], max_bytes: int, max_age: float) -> None:
        """Insert ``rows`` in one transaction, retried while other writers hold the store; retention when due."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                if self.connection is None:
                    self.connection = open_writer(self.path)
                _insert(self.connection, rows)
                break
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if attempt == WRITE_ATTEMPTS - 1:
                    raise _StoreBusyError from None
                time.sleep(0.05 * (attempt + 1))
        if self.connection is not None and time.monotonic() - self.retained_at >= RETENTION_EVERY:
            self.retained_at = time.monotonic()
            try:
                apply_retention(self.connection, max_bytes, max_age)
            except sqlite3.Error as exc:  # the spans are stored: a busy store is trimmed by the next pass
                if not _is_busy(exc):
                    report_once("local store retention", exc)

    def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            with suppress(sqlite3.Error):
                connection.close()


_writers: dict[str, _Writer] = {}
_writers_lock = threading.Lock()


def _writer(path: str) -> _Writer:
    key = os.path.abspath(path)
    with _writers_lock:
        if key not in _writers:
            _writers[key] = _Writer(path)
        return _writers[key]


def _before_fork() -> None:
    """An SQLite connection must not cross a fork: none is open, or half way through an export, when it happens."""
    _writers_lock.acquire()
    for writer in _writers.values():
        writer.lock.acquire()
        writer.close()


def _after_fork_in_parent() -> None:
    for writer in _writers.values():
        writer.lock.release()
    _writers_lock.release()


def _after_fork_in_child() -> None:
    global _writers_lock
    for writer in _writers.values():
        writer.lock = threading.Lock()
        writer.retained_at = -math.inf
    _writers_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)


class LocalStoreExporter(SpanExporter):
    def __init__(self, path: str, *, max_bytes: int, max_age: float) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._writer = _writer(path)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        writer = self._writer
        if writer.refused:
            return SpanExportResult.FAILURE
        try:
            rows = [_row(span_record(s)) for s in spans]
            with writer.lock:
                writer.write(rows, self.max_bytes, self.max_age)
            return SpanExportResult.SUCCESS
        except NotAStoreError as exc:  # checked once: left alone from now on
            writer.refused = True
            say_not_a_store(*exc.args)
        except _StoreBusyError:
            warn_once(
                "local-store-busy",
                "respan_auto: the local trace store %s stayed locked by other writers; some spans were not kept there",
                self.path,
            )
        except (OSError, sqlite3.Error) as exc:  # not writable (or full): where spans were said to be kept, so said
            with writer.lock:
                writer.close()
            warn_once(
                "local-store-write",
                "respan_auto: cannot write the local trace store %s (%s); spans are not being kept there. "
                "Set RESPAN_LOCAL_STORE to a writable path, or send them elsewhere (RESPAN_API_KEY, an OTLP endpoint)",
                self.path,
                (exc.strerror if isinstance(exc, OSError) else str(exc)) or type(exc).__name__,
            )
        except Exception as exc:  # noqa: BLE001
            report_once("local store write", exc)
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        with self._writer.lock:
            self._writer.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


# ---- readers -------------------------------------------------------------------------------------------------------


@contextmanager
def _reading(path: str) -> Iterator[sqlite3.Connection | None]:
    """A read-only connection inside one read transaction, or None when there is no store at ``path``."""
    if not os.path.isfile(path):
        yield None
        return
    connection = sqlite3.connect(
        _read_only_uri(path), uri=True, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    try:
        connection.create_function("folded", 1, _folded, deterministic=True)
        connection.execute("BEGIN")
        yield connection
    finally:
        connection.close()


def _read_only_uri(path: str, how: str = "mode=ro") -> str:
    """An SQLite URI for ``path``: absolute, so that no ``//`` reads as an authority, and every odd character quoted."""
    absolute = os.path.abspath(path)
    if absolute.startswith("//"):
        absolute = "/" + absolute.lstrip("/")
    return "file:" + urllib.parse.quote(absolute) + "?" + how


def _folded(text: Any) -> Any:
    return text.casefold() if isinstance(text, str) else text


def _not_a_store(error: sqlite3.DatabaseError) -> bool:
    """An empty file or one a writer has not given its tables yet, or an earlier version's store not imported yet."""
    return "no such table" in str(error) or "file is not a database" in str(error)


def _query(path: str, work: Callable[[sqlite3.Connection], _T], empty: _T) -> _T:
    """``work`` in one read transaction; ``empty`` where there is no store (yet)."""
    with _reading(path) as connection:
        if connection is None:
            return empty
        try:
            return work(connection)
        except sqlite3.DatabaseError as exc:
            if _not_a_store(exc):
                return empty
            raise


def read_records(path: str) -> Iterator[dict[str, Any]]:
    """Every span record in the store, in the order they were stored, from one consistent snapshot."""
    with _reading(path) as connection:
        if connection is None:
            return
        try:
            rows = connection.execute(f"SELECT {_RECORD_COLUMNS} FROM spans ORDER BY rowid")
        except sqlite3.DatabaseError as exc:
            if _not_a_store(exc):
                return
            raise
        for row in rows:
            yield _record(row)


@dataclass(frozen=True)
class Selection:
    """Which traces to read: the newest ``limit`` of those that match every filter given."""

    limit: int = 5
    trace_id: str | None = None  # a prefix of the hex id, lower case
    app: str | None = None  # a span's ``service.name``
    since_ns: int | None = None  # the trace's first span started at or after this (ns since the epoch)


@dataclass(frozen=True)
class TraceQuery:
    """Which traces to list: the newest ``limit`` of those that match every filter given.

    Times are ns since the epoch and compare with the trace's first span's start; ``before_ns`` (strictly before)
    pages to older traces. ``app``, ``model`` and ``customer`` match if any span of the trace has it. ``text`` is a
    case-insensitive substring of any span's attributes (prompts, completions); ``trace_id`` a hex prefix.
    """

    limit: int = 50
    before_ns: int | None = None
    before_trace_id: str | None = None  # with before_ns: also the traces of that start with a lower id (paging)
    since_ns: int | None = None
    until_ns: int | None = None
    app: str | None = None
    model: str | None = None
    customer: str | None = None
    errors: bool = False
    text: str | None = None
    trace_id: str | None = None


def _like(text: str) -> str:
    """A LIKE pattern for ``text`` as it appears inside the stored JSON (quotes and backslashes escaped)."""
    inner = json.dumps(text, ensure_ascii=False)[1:-1]
    return "%" + inner.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _where(query: TraceQuery) -> tuple[str, list[Any]]:
    """The SQL condition on ``traces t`` for a query, and its parameters."""
    conditions: list[str] = []
    parameters: list[Any] = []

    def add(condition: str, *values: Any) -> None:
        conditions.append(condition)
        parameters.extend(values)

    if query.before_ns is not None and query.before_trace_id is not None:  # the list's order: start, then id
        start, trace_id = query.before_ns, query.before_trace_id
        add("(t.start < ? OR (t.start = ? AND t.trace_id < ?))", start, start, trace_id)
    elif query.before_ns is not None:
        add("t.start < ?", query.before_ns)
    if query.since_ns is not None:
        add("t.start >= ?", query.since_ns)
    if query.until_ns is not None:
        add("t.start <= ?", query.until_ns)
    for column, value in (("service", query.app), ("model", query.model), ("customer", query.customer)):
        if value is not None:
            add(f"t.trace_id IN (SELECT trace_id FROM spans WHERE {column} = ?)", value)
    if query.errors:
        add("t.error")
    if query.trace_id:
        prefix = query.trace_id.lower()
        add("t.trace_id >= ? AND t.trace_id < ?", prefix, prefix + "\U0010ffff")
    if query.text:
        if query.text.isascii():  # LIKE folds ASCII letters, and uses no function call per row
            add(
                "EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = t.trace_id AND s.attributes LIKE ? ESCAPE '\\')",
                _like(query.text),
            )
        else:
            needle = json.dumps(query.text.casefold(), ensure_ascii=False)[1:-1]
            add(
                "EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = t.trace_id AND instr(folded(s.attributes), ?))",
                needle,
            )
    return (" AND ".join(conditions) or "1"), parameters


TRACE_KEYS = (  # a trace's summary, as list_traces gives it (with duration_ns and models)
    "trace_id",
    "start",
    "end",
    "app",
    "root_name",
    "span_count",
    "llm_calls",
    "input_tokens",
    "output_tokens",
    "error",
    "customer",
)


def _newest(connection: sqlite3.Connection, query: TraceQuery) -> list[dict[str, Any]]:
    where, parameters = _where(query)
    rows = connection.execute(
        f'SELECT t.trace_id, t.start, t."end", t.app, t.root_name, t.span_count, t.llm_calls, t.input_tokens, '
        f"t.output_tokens, t.error, t.customer FROM traces t WHERE {where} "
        "ORDER BY t.start DESC, t.trace_id DESC LIMIT ?",
        [*parameters, max(query.limit, 0)],
    )
    return [dict(zip(TRACE_KEYS, row, strict=True)) for row in rows]


def _in_traces(ids: list[str]) -> tuple[str, str]:
    return "trace_id IN (SELECT value FROM json_each(?))", json.dumps(ids)


def list_traces(path: str, query: TraceQuery) -> list[dict[str, Any]]:
    """The matching traces' summaries, newest first, each with its LLM calls (``models``) for pricing."""

    def work(connection: sqlite3.Connection) -> list[dict[str, Any]]:
        traces = _newest(connection, query)
        by_id: dict[str, list[dict[str, Any]]] = {}
        for summary in traces:
            summary["duration_ns"] = summary["end"] - summary["start"]
            summary["error"] = bool(summary["error"])
            summary["models"] = by_id.setdefault(summary["trace_id"], [])
        condition, ids = _in_traces(list(by_id))
        calls = connection.execute(
            f"SELECT trace_id, model, input_tokens, output_tokens, cached_tokens, start FROM spans "
            f"WHERE llm AND (input_tokens IS NOT NULL OR output_tokens IS NOT NULL) AND {condition} "
            "ORDER BY start, rowid",  # what can be priced: calls that reported usage
            (ids,),
        )
        for trace_id, model, input_tokens, output_tokens, cached_tokens, start in calls:
            by_id[trace_id].append(
                {
                    "model": model,
                    "calls": 1,
                    "input_tokens": input_tokens or 0,
                    "output_tokens": output_tokens or 0,
                    "cached_tokens": cached_tokens or 0,
                    "start": start,
                }
            )
        return traces

    return _query(path, work, [])


def _spans_of(connection: sqlite3.Connection, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The span records of the traces ``ids``, each trace's in start order."""
    condition, parameter = _in_traces(ids)
    found: dict[str, list[dict[str, Any]]] = {trace_id: [] for trace_id in ids}
    rows = connection.execute(
        f"SELECT {_RECORD_COLUMNS} FROM spans WHERE {condition} ORDER BY coalesce(start, 0), rowid", (parameter,)
    )
    for row in rows:
        found[row[0]].append(_record(row))
    return found


def trace_records(path: str, trace_id: str) -> list[dict[str, Any]]:
    """Every span record of one trace (its full id), in start order."""
    return _query(path, lambda connection: _spans_of(connection, [trace_id])[trace_id], [])


def select_traces(path: str, selection: Selection) -> list[list[dict[str, Any]]]:
    """The selected traces, oldest first, each as its span records in start order."""
    query = TraceQuery(
        limit=selection.limit, app=selection.app, since_ns=selection.since_ns, trace_id=selection.trace_id
    )

    def work(connection: sqlite3.Connection) -> list[list[dict[str, Any]]]:
        ids = [summary["trace_id"] for summary in reversed(_newest(connection, query))]
        return list(_spans_of(connection, ids).values())

    return _query(path, work, [])


def llm_calls(
    path: str, since_ns: int | None = None, until_ns: int | None = None, limit: int = 100000
) -> list[dict[str, Any]]:
    """One row per model call (failed ones included), the newest ``limit`` in start order, for the overview charts."""

    def work(connection: sqlite3.Connection) -> list[dict[str, Any]]:
        rows = connection.execute(
            'SELECT start, "end" - start, model, service, input_tokens, output_tokens, cached_tokens, error, '
            f"first_chunk, json_extract(attributes, '$.\"{sc.GEN_AI_REQUEST_MODEL}\"') FROM spans "
            "WHERE llm AND start >= ? AND start <= ? ORDER BY start DESC LIMIT ?",
            (since_ns if since_ns is not None else -(2**63), until_ns if until_ns is not None else 2**63 - 1, limit),
        )
        keys = ("start", "duration_ns", "model", "app", "input_tokens", "output_tokens", "cached_tokens", "error")
        calls = []
        for row in rows:
            call = dict(zip(keys, row[:8], strict=True))
            for key in ("input_tokens", "output_tokens", "cached_tokens"):
                call[key] = call[key] or 0
            call["error"] = bool(call["error"])
            call["time_to_first_chunk"] = row[8]
            call["request_model"] = row[9] if isinstance(row[9], str) else None
            calls.append(call)
        calls.reverse()
        return calls

    return _query(path, work, [])


def facets(path: str) -> dict[str, list[str]]:
    """The distinct apps, models and customers in the store, for filter menus."""
    columns = {"apps": "service", "models": "model", "customers": "customer"}

    def work(connection: sqlite3.Connection) -> dict[str, list[str]]:
        return {
            key: [
                row[0]
                for row in connection.execute(
                    f"SELECT DISTINCT {column} FROM spans WHERE {column} IS NOT NULL ORDER BY {column}"
                )
            ]
            for key, column in columns.items()
        }

    return _query(path, work, {key: [] for key in columns})


def change_marker(path: str) -> int:
    """A number that grows whenever spans are added or retention removes some, for a view that refreshes live."""
    return _query(path, lambda connection: int(connection.execute("SELECT added FROM store").fetchone()[0]), 0)
