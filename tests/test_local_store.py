"""The local store: private to its user, shared safely by many writer processes at once, bounded, and queryable."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Span, Status, StatusCode

from respan_auto.export import local_store
from respan_auto.export.local_store import (
    LocalStoreExporter,
    Selection,
    TraceQuery,
    change_marker,
    facets,
    list_traces,
    llm_calls,
    read_records,
    select_traces,
    store_problem,
    trace_records,
)
from tests.conftest import REPO

LAUNCHER = str(Path(sys.executable).parent / "respan-instrument")

# An app whose traces are a task and one step inside it; spans end one by one and go out one per export, each its
# own transaction. Our internal failures are logged at debug level, so the writer shows them: a failed write reaches
# its stderr.
WRITER = """
import logging
import sys

logging.basicConfig(format="%(message)s")
logging.getLogger("respan_auto").setLevel(logging.DEBUG)

from opentelemetry import trace
from respan_auto import task
writer, count, pad = sys.argv[1], int(sys.argv[2]), "x" * int(sys.argv[3])
tracer = trace.get_tracer("writer")


@task(name="write")
def write(i):
    trace.get_current_span().set_attributes({"write": f"w{writer}-{i}", "pad": pad})
    with tracer.start_as_current_span("step") as step:
        step.set_attribute("write", f"w{writer}-{i}-step")


for i in range(count):
    write(i)
"""

WRITERS = 8
TRACES = 250  # two spans each: 500 spans a writer
HOUR = 3600 * 10**9
RECENT = time.time_ns() - HOUR


def launch_env(store: Path | None, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
    env.update(
        PYTHONPATH=str(REPO),
        RESPAN_ANNOUNCED="1",
        RESPAN_EXIT_TIMEOUT="120",  # the exit flush writes whatever is still queued: nothing may be cut off
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="1",
        **more,
    )
    if store is not None:
        env["RESPAN_LOCAL_STORE"] = str(store)
    return env


def start_writers(
    tmp_path: Path, store: Path | None, writers: int, traces: int, pad: int = 1000, **env: str
) -> list[subprocess.Popen]:
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    return [
        subprocess.Popen(
            [LAUNCHER, sys.executable, str(script), str(w), str(traces), str(pad)],
            env=launch_env(store, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(writers)
    ]


def finish(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        assert err == "", err  # no failed write, no span left behind at exit


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def written(store: Path) -> list[str]:
    return [r["attributes"]["write"] for r in read_records(str(store)) if "write" in r["attributes"]]


def expected_order(writer: int, traces: int) -> list[str]:
    """What one writer stores, in order: each step ends (and is exported) before its task."""
    return [name for i in range(traces) for name in (f"w{writer}-{i}-step", f"w{writer}-{i}")]


def test_eight_writers_store_every_span_exactly_once_while_a_reader_sees_a_consistent_store(tmp_path):
    store = tmp_path / "private" / "traces.jsonl"  # a fresh store by any name is SQLite
    processes = start_writers(tmp_path, store, WRITERS, TRACES)
    seen_spans = seen_traces = 0
    modes_seen: set[int] = set()
    while any(p.poll() is None for p in processes):
        snapshot = written(store)
        by_writer = defaultdict(list)
        for name in snapshot:
            by_writer[int(name[1 : name.index("-")])].append(name)
        for writer, names in by_writer.items():  # each writer's spans so far, whole, once, in order
            assert names == expected_order(writer, TRACES)[: len(names)]
        assert len(snapshot) >= seen_spans
        traces = list_traces(str(store), TraceQuery(limit=10**6))
        assert len(traces) >= seen_traces
        assert sum(t["span_count"] for t in traces) >= len(snapshot)  # read later, so at least as much
        assert all(t["span_count"] in (1, 2) for t in traces)
        seen_spans, seen_traces = len(snapshot), len(traces)
        if store.parent.exists():
            modes_seen |= {mode(p) for p in store.parent.iterdir() if p.exists()}
        time.sleep(0.05)
    finish(processes)
    names = written(store)
    expected = {name for w in range(WRITERS) for name in expected_order(w, TRACES)}
    assert len(names) == len(expected) == WRITERS * TRACES * 2  # none twice
    assert set(names) == expected  # none lost
    traces = list_traces(str(store), TraceQuery(limit=10**6))
    assert len(traces) == WRITERS * TRACES
    assert {(t["span_count"], t["root_name"]) for t in traces} == {(2, "write.task")}
    assert store.read_bytes()[:16] == b"SQLite format 3\x00"
    assert mode(store.parent) == 0o700
    assert modes_seen == {0o600}  # the -wal and -shm files too, while they existed
    assert {mode(p) for p in store.parent.iterdir()} == {0o600}


def legacy_record(i: int, name: str) -> dict:
    """A span record as earlier versions wrote it, one JSON line each."""
    return {
        "trace_id": f"{i:032x}",
        "span_id": f"{i:016x}",
        "parent_id": None,
        "name": name,
        "kind": "INTERNAL",
        "start": RECENT + i,  # within the age kept
        "end": RECENT + 100 + i,
        "status": "UNSET",
        "service": "legacy",
        "attributes": {"gen_ai.prompt.0.content": f"old prompt {i}", "tags": ["a", "b"]},
    }


def lines(records: list[dict]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


@pytest.mark.parametrize("layout", ["in place", "beside the default store"])
def test_a_json_lines_store_is_imported_once_by_four_processes_starting_together(tmp_path, layout):
    state = tmp_path / "state"
    folder = state / "respan-auto"
    folder.mkdir(parents=True)
    legacy = folder / "traces.jsonl"
    older, newer = [legacy_record(i, f"old {i}") for i in range(3)], [legacy_record(i, f"new {i}") for i in range(3, 5)]
    Path(f"{legacy}.1").write_bytes(lines(older))
    legacy.write_bytes(lines(newer) + b'{"trace_id": "cut sh')  # a writer died mid-line
    before = {legacy.name: legacy.read_bytes(), f"{legacy.name}.1": Path(f"{legacy}.1").read_bytes()}
    if layout == "in place":
        store, processes = legacy, start_writers(tmp_path, legacy, writers=4, traces=1)
    else:
        store = folder / "traces.db"
        processes = start_writers(tmp_path, None, writers=4, traces=1, XDG_STATE_HOME=str(state))
    finish(processes)
    records = list(read_records(str(store)))
    assert records[:5] == [{**r, "events": []} for r in older + newer]  # imported first, each once, as it was
    assert sorted(r["attributes"]["write"] for r in records[5:]) == sorted(
        name for w in range(4) for name in expected_order(w, 1)
    )
    assert {p.name for p in folder.iterdir()} >= {f"{name}.imported" for name in before}
    for name, data in before.items():
        assert (folder / f"{name}.imported").read_bytes() == data
    assert not (folder / "traces.jsonl.1").exists()
    assert not list(folder.glob("*.importing*"))
    assert store.read_bytes()[:16] == b"SQLite format 3\x00"
    assert {mode(p) for p in folder.iterdir()} == {0o600}


def test_an_existing_store_and_directory_we_did_not_create(tmp_path):
    """A store an earlier version left readable is tightened; a directory that is not ours keeps its mode."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    store = shared / "traces.db"
    finish(start_writers(tmp_path, store, writers=1, traces=1))
    store.chmod(0o644)
    finish(start_writers(tmp_path, store, writers=1, traces=1))
    assert mode(store) == 0o600
    assert mode(shared) == 0o755
    assert len(written(store)) == 4


def spans_at(path: Path, starts: list[int], pad: int = 0, **limits: float) -> LocalStoreExporter:
    """Write one two-span trace per start time (ns) through an exporter of its own, and return that exporter."""
    exporter = LocalStoreExporter(
        str(path), max_bytes=int(limits.get("max_bytes", 2**40)), max_age=limits.get("max_age", 10**9)
    )
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for start in starts:
        root = tracer.start_span("root", start_time=start, attributes={"pad": "y" * pad, "at": start})
        with tracer.start_as_current_span("child", context=_context(root), start_time=start + 1) as child:
            child.set_attribute("at", start)
        root.end(end_time=start + 10)
    return exporter


def _context(span: Span) -> Context:
    return trace.set_span_in_context(span)


def stored_starts(path: Path) -> list[int]:
    return sorted(t["start"] for t in list_traces(str(path), TraceQuery(limit=10**6)))


def test_paging_by_start_and_id_loses_no_trace_that_shares_a_start(tmp_path):
    """Imported records and coarse clocks give traces equal starts: a page must not skip the rest of them."""
    store = tmp_path / "traces.db"
    now = time.time_ns()
    spans_at(store, [now] * 5 + [now + 1000])
    seen: list[str] = []
    query = TraceQuery(limit=2)
    while page := list_traces(str(store), query):
        seen += [t["trace_id"] for t in page]
        query = TraceQuery(limit=2, before_ns=page[-1]["start"], before_trace_id=page[-1]["trace_id"])
    assert len(seen) == len(set(seen)) == 6
    assert seen == [t["trace_id"] for t in list_traces(str(store), TraceQuery(limit=10))]


def test_retention_by_age_drops_whole_old_traces_at_most_every_so_often(tmp_path, monkeypatch):
    store = tmp_path / "traces.db"
    now = time.time_ns()
    spans_at(store, [now - 50 * HOUR, now - 3 * HOUR, now - 2 * HOUR, now - 1000])
    assert len(stored_starts(store)) == 4
    monkeypatch.setattr(local_store, "RETENTION_EVERY", 0.0)  # every export applies the bounds
    spans_at(store, [now], max_age=2.5 * 3600)
    assert stored_starts(store) == [now - 2 * HOUR, now - 1000, now]
    assert {r["attributes"]["at"] for r in read_records(str(store))} == {now - 2 * HOUR, now - 1000, now}
    monkeypatch.setattr(local_store, "RETENTION_EVERY", 3600.0)
    spans_at(store, [now - 30 * HOUR], max_age=2.5 * 3600)  # the last pass was just now: none for an hour
    assert stored_starts(store) == [now - 30 * HOUR, now - 2 * HOUR, now - 1000, now]


def test_retention_by_size_through_the_launcher_keeps_the_newest_traces(tmp_path):
    store = tmp_path / "traces.db"
    finish(start_writers(tmp_path, store, writers=1, traces=300, pad=2000))
    assert len(written(store)) == 600
    bound = 150_000
    finish(start_writers(tmp_path, store, writers=1, traces=1, pad=2000, RESPAN_LOCAL_MAX_BYTES=str(bound)))
    kept = written(store)
    assert 20 < len(kept) < 150
    # the newest: the last traces of the first run, and the one of the second, each whole
    last = [name for i in range(300) for name in (f"w0-{i}-step", f"w0-{i}")]
    assert kept[:-2] == last[len(last) - len(kept) + 2 :]
    assert kept[-2:] == ["w0-0-step", "w0-0"]
    connection = sqlite3.connect(store)
    try:
        assert local_store.live_bytes(connection) <= bound + 20_000  # the bound, and the trace written after it
        assert connection.execute("PRAGMA freelist_count").fetchone()[0] == 0  # every freed page vacuumed away
    finally:
        connection.close()
    assert store.stat().st_size < 400_000  # freed pages were given back (600 spans took about 1.5 MB)


def test_retention_settings_are_checked_like_the_others(tmp_path):
    app = tmp_path / "app.py"
    app.write_text("print('ran')\n")
    flag = subprocess.run([LAUNCHER, "--local-max-age", "7x", sys.executable, str(app)], capture_output=True, text=True)
    assert flag.returncode == 2 and "--local-max-age" in flag.stderr and "ran" not in flag.stdout
    env = launch_env(tmp_path / "traces.db", RESPAN_LOCAL_MAX_BYTES="lots", RESPAN_LOCAL_MAX_AGE="12h")
    variable = subprocess.run([LAUNCHER, sys.executable, str(app)], capture_output=True, text=True, env=env)
    assert variable.returncode == 0 and variable.stdout == "ran\n"
    assert variable.stderr.count("\n") == 1 and "RESPAN_LOCAL_MAX_BYTES='lots'" in variable.stderr
    from respan_auto.config import Settings

    settings = Settings.load({"RESPAN_LOCAL_MAX_AGE": "7d", "RESPAN_LOCAL_MAX_BYTES": "1000000"})
    assert (settings.local_max_age, settings.local_max_bytes) == (7 * 86400, 1_000_000)
    assert Settings.load({}).local_store.endswith(os.path.join("respan-auto", "traces.db"))


@pytest.fixture
def queried(tmp_path) -> Iterator[dict]:
    """A store of five traces made by real spans, with every field the queries read."""
    store = tmp_path / "q" / "traces.db"
    base = time.time_ns() - 10 * HOUR
    made: dict = {"store": str(store), "base": base, "ids": []}
    shapes = [  # app, model, customer, error, prompt
        ("alpha", "mistral-small-2506", "acme", False, "Hello there"),
        ("alpha", "mistral-large-2411", None, True, "Explain WAL mode"),
        ("beta", "mistral-small-2506", "globex", False, 'Quoted "text" and 100% sure_thing'),
        ("beta", None, None, False, None),
        ("gamma", "mistral-small-2506", "acme", False, "Grüße aus Köln"),
    ]
    exporters = []
    for n, (app, model, customer, error, prompt) in enumerate(shapes):
        exporter = LocalStoreExporter(str(store), max_bytes=2**40, max_age=10**9)
        exporters.append(exporter)
        provider = TracerProvider(resource=Resource.create({"service.name": app}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("test")
        start = base + n * HOUR
        root = tracer.start_span(f"run {n}", start_time=start)
        if customer:
            root.set_attribute(local_store.CUSTOMER, customer)
        made["ids"].append(f"{root.get_span_context().trace_id:032x}")
        if model:
            call = tracer.start_span(f"chat {model}", context=_context(root), start_time=start + 100)
            call.set_attributes(
                {
                    "gen_ai.request.model": model,
                    "gen_ai.usage.input_tokens": 10 + n,
                    "gen_ai.usage.output_tokens": 20 + n,
                    "gen_ai.usage.cache_read.input_tokens": n,
                    "gen_ai.prompt.0.content": prompt or "",
                    "gen_ai.response.time_to_first_chunk": 0.5 + n,
                }
            )
            call.add_event("respan.stream.chunk", {"index": 0, "size": 12}, timestamp=start + 150)
            if error:
                call.set_status(Status(StatusCode.ERROR, "boom"))
                call.set_attribute("error.type", "500")
            call.end(end_time=start + 1000)
        tracer.start_span("tool", context=_context(root), start_time=start + 50).end(end_time=start + 60)
        root.end(end_time=start + 2000)
    yield made
    for exporter in exporters:
        exporter.shutdown()


def ids(traces: list[dict]) -> list[str]:
    return [t["trace_id"] for t in traces]


def test_list_traces_summarises_and_filters(queried):
    store, every = queried["store"], queried["ids"]
    newest = list(reversed(every))
    listed = list_traces(store, TraceQuery())
    assert ids(listed) == newest
    first = listed[-1]
    assert {k: v for k, v in first.items() if k != "trace_id"} == {
        "start": queried["base"],
        "end": queried["base"] + 2000,
        "duration_ns": 2000,
        "app": "alpha",
        "root_name": "run 0",
        "span_count": 3,
        "llm_calls": 1,
        "input_tokens": 10,
        "output_tokens": 20,
        "error": False,
        "customer": "acme",
        "models": [
            {
                "model": "mistral-small-2506",
                "calls": 1,
                "input_tokens": 10,
                "output_tokens": 20,
                "cached_tokens": 0,
                "start": queried["base"] + 100,
            }
        ],
    }
    assert listed[1]["models"] == [] and listed[1]["llm_calls"] == 0
    assert ids(list_traces(store, TraceQuery(limit=2))) == newest[:2]
    assert ids(list_traces(store, TraceQuery(limit=2, before_ns=listed[1]["start"]))) == newest[2:4]  # paging
    assert ids(list_traces(store, TraceQuery(since_ns=listed[2]["start"]))) == newest[:3]
    assert ids(list_traces(store, TraceQuery(until_ns=listed[2]["start"]))) == newest[2:]
    assert ids(list_traces(store, TraceQuery(app="beta"))) == [every[3], every[2]]
    assert ids(list_traces(store, TraceQuery(model="mistral-small-2506"))) == [every[4], every[2], every[0]]
    assert ids(list_traces(store, TraceQuery(customer="acme"))) == [every[4], every[0]]
    assert ids(list_traces(store, TraceQuery(errors=True))) == [every[1]]
    assert list_traces(store, TraceQuery(errors=True))[0]["error"] is True
    assert ids(list_traces(store, TraceQuery(text="explain wal"))) == [every[1]]
    assert ids(list_traces(store, TraceQuery(text='"TEXT" and 100% SURE_'))) == [every[2]]
    assert ids(list_traces(store, TraceQuery(text="100_"))) == []  # % and _ are literal
    assert ids(list_traces(store, TraceQuery(text="GRÜSSE"))) == [every[4]]  # case folded: ß is ss
    assert ids(list_traces(store, TraceQuery(text="grüße AUS köln"))) == [every[4]]
    assert ids(list_traces(store, TraceQuery(trace_id=every[2][:6].upper()))) == [every[2]]
    assert ids(list_traces(store, TraceQuery(app="beta", model="mistral-small-2506", customer="globex"))) == [every[2]]
    assert list_traces(store, TraceQuery(app="nobody")) == []


def test_trace_records_llm_calls_facets_and_the_change_marker(queried):
    store, every = queried["store"], queried["ids"]
    records = trace_records(store, every[1])
    assert [r["name"] for r in records] == ["run 1", "tool", "chat mistral-large-2411"]
    assert set(records[0]) == {
        "trace_id", "span_id", "parent_id", "name", "kind", "start", "end", "status", "service", "attributes",
        "events",
    }  # fmt: skip
    assert records[2]["status"] == "ERROR" and records[2]["parent_id"] == records[0]["span_id"]
    assert records[2]["events"] == [
        {"name": "respan.stream.chunk", "time": queried["base"] + HOUR + 150, "attributes": {"index": 0, "size": 12}}
    ]
    assert trace_records(store, every[1][:10]) == []  # a full id only
    calls = llm_calls(store)
    assert [(c["model"], c["app"], c["error"]) for c in calls] == [
        ("mistral-small-2506", "alpha", False),
        ("mistral-large-2411", "alpha", True),
        ("mistral-small-2506", "beta", False),
        ("mistral-small-2506", "gamma", False),
    ]
    assert calls[1] == {
        "start": queried["base"] + HOUR + 100,
        "duration_ns": 900,
        "model": "mistral-large-2411",
        "app": "alpha",
        "input_tokens": 11,
        "output_tokens": 21,
        "cached_tokens": 1,
        "error": True,
        "time_to_first_chunk": 1.5,
        "request_model": "mistral-large-2411",
    }
    assert [c["start"] for c in llm_calls(store, since_ns=calls[1]["start"], until_ns=calls[2]["start"])] == [
        calls[1]["start"],
        calls[2]["start"],
    ]
    assert llm_calls(store, limit=2) == calls[2:]  # the newest
    assert facets(store) == {
        "apps": ["alpha", "beta", "gamma"],
        "models": ["mistral-large-2411", "mistral-small-2506"],
        "customers": ["acme", "globex"],
    }
    marker = change_marker(store)
    assert marker == 14
    spans_at(Path(store), [time.time_ns()])
    assert change_marker(store) == marker + 2
    assert [[s["name"] for s in spans] for spans in select_traces(store, Selection(limit=2, app="alpha"))] == [
        ["run 0", "tool", "chat mistral-small-2506"],
        ["run 1", "tool", "chat mistral-large-2411"],
    ]


def test_readers_of_a_missing_or_not_yet_imported_store_find_nothing_and_create_nothing(tmp_path):
    missing = tmp_path / "none" / "traces.db"
    legacy = tmp_path / "traces.jsonl"
    legacy.write_bytes(lines([legacy_record(1, "old")]))
    for path in (str(missing), str(legacy)):
        assert list(read_records(path)) == []
        assert list_traces(path, TraceQuery()) == []
        assert select_traces(path, Selection()) == []
        assert trace_records(path, "ab" * 16) == []
        assert llm_calls(path) == []
        assert facets(path) == {"apps": [], "models": [], "customers": []}
        assert change_marker(path) == 0
    assert not missing.parent.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["traces.jsonl"]


def test_the_viewer_imports_an_earlier_store_before_any_traced_run(tmp_path):
    """Readers never write, but `respan-instrument traces` is the user's own command: it imports what it would show."""
    folder = tmp_path / "state" / "respan-auto"
    folder.mkdir(parents=True)
    (folder / "traces.jsonl").write_bytes(lines([legacy_record(7, "kept from before")]))
    env = {**launch_env(None), "XDG_STATE_HOME": str(tmp_path / "state")}
    result = subprocess.run([LAUNCHER, "traces", "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    [document] = [json.loads(line) for line in result.stdout.splitlines()]
    assert [s["name"] for s in document["spans"]] == ["kept from before"]
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(("-wal", "-shm"))) == [
        "traces.db",
        "traces.jsonl.imported",
        "traces.jsonl.lock",
    ]


def test_a_reader_holds_no_lock_that_stops_a_writer(tmp_path):
    store = tmp_path / "traces.db"
    spans_at(store, [time.time_ns()])
    records = read_records(str(store))
    assert next(records)["name"] == "child"  # a read transaction is open
    spans_at(store, [time.time_ns()])  # a writer is not kept waiting
    assert len(list(records)) == 1  # the reader's snapshot is the one it started with
    assert len(list(read_records(str(store)))) == 4


def test_an_unwritable_store_is_one_line_naming_the_variable(tmp_path):
    """The app runs on unchanged; the user hears once that nothing is kept, and which setting to change."""
    from tests.test_reliability import run_app

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = """
        from respan_auto import Respan
        from opentelemetry import trace
        Respan()
        for i in range(5):
            trace.get_tracer("app").start_span(f"s{i}").end()
        print("done", flush=True)
    """
    result, _ = run_app(code, {"RESPAN_LOCAL_STORE": str(blocker / "sub" / "traces.db")})
    assert result.returncode == 0 and result.stdout.strip() == "done"
    lines = [line for line in result.stderr.splitlines() if "cannot write the local trace store" in line]
    assert len(lines) == 1, result.stderr
    assert "RESPAN_LOCAL_STORE" in lines[0] and str(blocker) in lines[0]
    assert "Traceback" not in result.stderr


def foreign_files(folder: Path) -> dict[str, Path]:
    """Files a mistyped RESPAN_LOCAL_STORE could name: none may be imported, replaced, given tables or loosened."""
    folder.mkdir()
    text = folder / "notes.txt"
    text.write_text("my notes\n{not json}\n")
    jsonl = folder / "events.jsonl"
    jsonl.write_text('{"event": "signup", "user": 1}\n')
    database = folder / "app.db"
    connection = sqlite3.connect(database)
    connection.execute("CREATE TABLE users (name TEXT)")
    connection.execute("INSERT INTO users VALUES ('ada')")
    connection.commit()
    connection.close()
    for path in (text, jsonl, database):
        path.chmod(0o644)
    return {"text": text, "json lines": jsonl, "sqlite": database, "directory": folder}


def snapshot(folder: Path) -> dict[str, tuple[bytes | None, int]]:
    return {p.name: (None if p.is_dir() else p.read_bytes(), mode(p)) for p in sorted(folder.rglob("*"))}


FOREIGN_PROBLEMS = {
    "text": "is not a respan-auto trace store",
    "json lines": "is not a respan-auto trace store",
    "sqlite": "is another program's SQLite database",
    "directory": "is a directory",
}


@pytest.mark.parametrize("kind", list(FOREIGN_PROBLEMS))
def test_a_store_path_that_holds_another_file_is_left_as_it_is(tmp_path, kind):
    """The traced app runs on; the user hears once, naming the variable; the file, its mode and folder are unchanged."""
    from tests.test_reliability import run_app

    files = foreign_files(tmp_path / "mine")
    before = snapshot(tmp_path / "mine")
    code = """
        from respan_auto import Respan
        from opentelemetry import trace
        Respan()
        for i in range(3):
            trace.get_tracer("app").start_span(f"s{i}").end()
        print("done", flush=True)
    """
    result, _ = run_app(code, {"RESPAN_LOCAL_STORE": str(files[kind])})
    assert result.returncode == 0 and result.stdout.strip() == "done"
    said = [line for line in result.stderr.splitlines() if "no instrumentor is active" not in line]
    assert len(said) == 1, result.stderr
    assert FOREIGN_PROBLEMS[kind] in said[0] and str(files[kind]) in said[0] and "RESPAN_LOCAL_STORE" in said[0]
    assert snapshot(tmp_path / "mine") == before
    assert store_problem(str(files[kind])) == FOREIGN_PROBLEMS[kind]


@pytest.mark.parametrize("command", ["traces", "ui"])
@pytest.mark.parametrize("kind", list(FOREIGN_PROBLEMS))
def test_the_viewers_refuse_another_file_in_one_line_naming_where_the_path_came_from(tmp_path, command, kind):
    files = foreign_files(tmp_path / "mine")
    before = snapshot(tmp_path / "mine")
    env = launch_env(files[kind])
    named = subprocess.run([LAUNCHER, command], capture_output=True, text=True, env=env, timeout=60)
    given = subprocess.run(
        [LAUNCHER, command, "--store", str(files[kind])],
        capture_output=True,
        text=True,
        env=launch_env(None),
        timeout=60,
    )
    for result, origin in ((named, "RESPAN_LOCAL_STORE"), (given, "--store")):
        assert result.returncode == 1 and result.stdout == ""
        assert (
            result.stderr == f"respan-instrument {command}: {origin} {files[kind]} {FOREIGN_PROBLEMS[kind]}; "
            "it was left as it is (name a store with --store)\n"
        )
    assert snapshot(tmp_path / "mine") == before


def test_only_our_records_beside_the_store_are_imported(tmp_path):
    """A traces.jsonl of another program beside traces.db stays where it is, as it is."""
    folder = tmp_path / "state" / "respan-auto"
    folder.mkdir(parents=True)
    theirs = folder / "traces.jsonl"
    theirs.write_text('{"span": "not ours"}\n')
    finish(start_writers(tmp_path, None, writers=1, traces=1, XDG_STATE_HOME=str(tmp_path / "state")))
    assert theirs.read_text() == '{"span": "not ours"}\n'
    assert len(written(folder / "traces.db")) == 2
    assert not list(folder.glob("*.imported"))


def test_a_store_a_writer_is_still_creating_is_not_mistaken_for_another_file(tmp_path):
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    bare = tmp_path / "bare.db"
    sqlite3.connect(bare).execute("PRAGMA journal_mode = WAL").fetchall()  # a header, no tables yet
    ours = tmp_path / "traces.db"
    spans_at(ours, [time.time_ns()])
    legacy = tmp_path / "traces.jsonl"
    legacy.write_bytes(lines([legacy_record(1, "old")]))
    for path in (empty, bare, ours, legacy, tmp_path / "missing.db"):
        assert store_problem(str(path)) is None, path


def test_a_database_whose_tables_are_still_only_in_its_wal_is_judged_by_them(tmp_path):
    """Ours being created by a writer still connected passes; another program's in use is refused, and not touched."""
    ours = tmp_path / "traces.db"
    writer = local_store.open_writer(str(ours))
    theirs = tmp_path / "app.db"
    other = sqlite3.connect(theirs, isolation_level=None)
    try:
        other.execute("PRAGMA journal_mode = WAL")
        other.execute("PRAGMA wal_autocheckpoint = 0")  # its tables stay in its WAL, as in a busy program
        other.execute("CREATE TABLE users (name TEXT)")
        theirs.chmod(0o644)
        assert (tmp_path / "app.db-wal").stat().st_size > 0
        assert store_problem(str(ours)) is None
        assert store_problem(str(theirs)) == "is another program's SQLite database"
        with pytest.raises(local_store.NotAStoreError):
            local_store.open_writer(str(theirs))
        assert mode(theirs) == 0o644
        assert [row[0] for row in other.execute("SELECT name FROM sqlite_master")] == ["users"]
    finally:
        other.close()
        writer.close()


def test_odd_paths_are_judged_never_raised(tmp_path):
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    foreign = foreign_files(tmp_path / "mine")["sqlite"]
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    not_ours = tmp_path / "spans.jsonl"
    not_ours.write_text('{"trace_id": "t1", "span_id": "s1", "attributes": {}}\n')
    assert store_problem(str(damaged)) == "is an SQLite database that cannot be read"
    assert store_problem("//" + str(foreign).lstrip("/")) == "is another program's SQLite database"
    assert store_problem(str(loop)) == "cannot be read (Too many levels of symbolic links)"
    assert store_problem(str(not_ours)) == "is not a respan-auto trace store"
    result = subprocess.run([LAUNCHER, "traces", "--store", str(loop)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_a_refused_store_is_said_once_for_a_program_and_the_programs_it_starts(tmp_path):
    from tests.test_reliability import run_app

    notes = foreign_files(tmp_path / "mine")["text"]
    code = """
        import subprocess, sys
        from respan_auto import Respan
        from opentelemetry import trace
        Respan()
        trace.get_tracer("app").start_span("parent").end()
        child = "from respan_auto import Respan; from opentelemetry import trace; Respan(); "
        child += "trace.get_tracer('app').start_span('child').end()"
        subprocess.run([sys.executable, "-c", child], check=True)
        print("done", flush=True)
    """
    result, _ = run_app(code, {"RESPAN_LOCAL_STORE": str(notes)})
    assert result.returncode == 0 and result.stdout.strip() == "done"
    said = [line for line in result.stderr.splitlines() if "is not a respan-auto trace store" in line]
    assert len(said) == 1, result.stderr
    assert "Traceback" not in result.stderr and "set-up failed" not in result.stderr


def test_a_forked_worker_writes_through_a_connection_of_its_own(tmp_path):
    from tests.test_reliability import run_app

    store = tmp_path / "traces.db"
    code = """
        import os
        from opentelemetry import trace
        from respan_auto import Respan
        Respan()
        tracer, provider = trace.get_tracer("app"), trace.get_tracer_provider()
        tracer.start_span("before the fork").end()
        provider.force_flush()
        pid = os.fork()
        for i in range(20):
            tracer.start_span(f"{'child' if pid == 0 else 'parent'} {i}").end()
        provider.force_flush()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        print("done", flush=True)
    """
    result, _ = run_app(code, {"RESPAN_LOCAL_STORE": str(store), "RESPAN_ANNOUNCED": "1"})
    assert result.returncode == 0 and result.stdout == "done\n", result.stderr
    assert "local trace store" not in result.stderr and "Traceback" not in result.stderr
    names = sorted(r["name"] for r in read_records(str(store)))
    assert names == sorted(["before the fork", *(f"{who} {i}" for who in ("child", "parent") for i in range(20))])
