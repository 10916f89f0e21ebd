"""The local store: private to its user, and shared safely by many writer processes at once."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from respan_auto.export import local_store
from respan_auto.export.local_store import read_records
from tests.conftest import REPO

LAUNCHER = str(Path(sys.executable).parent / "respan-instrument")

# An app whose spans end one by one and go out one per export, each export taking the store's lock. Our internal
# failures are logged at debug level, so the writer shows them: a failed write reaches its stderr.
# The store rotates every 64 KiB and keeps every rotated file, so that nothing is old enough to be dropped.
WRITER = """
import logging
import sys

logging.basicConfig(format="%(message)s")
logging.getLogger("respan_auto").setLevel(logging.DEBUG)

from opentelemetry import trace
from respan_auto import task
from respan_auto.export import local_store

local_store.MAX_BYTES = int(sys.argv[4])
local_store.KEEP_ROTATED = 100_000
writer, count, pad = sys.argv[1], int(sys.argv[2]), "x" * int(sys.argv[3])


@task(name="write")
def write(i):
    trace.get_current_span().set_attributes({"write": f"w{writer}-{i}", "pad": pad})


for i in range(count):
    write(i)
"""

WRITERS = 8
SPANS = 400


def launch_env(store: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
    env.update(
        PYTHONPATH=str(REPO),
        RESPAN_LOCAL_STORE=str(store),
        RESPAN_ANNOUNCED="1",
        RESPAN_EXIT_TIMEOUT="120",  # the exit flush writes whatever is still queued: nothing may be cut off
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="1",
    )
    return env


def start_writers(
    tmp_path: Path, store: Path, writers: int, spans: int, pad: int = 1000, rotate_at: int = 64 * 1024
) -> list[subprocess.Popen]:
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    return [
        subprocess.Popen(
            [LAUNCHER, sys.executable, str(script), str(w), str(spans), str(pad), str(rotate_at)],
            env=launch_env(store),
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


def test_eight_writers_through_many_rotations_store_every_span_exactly_once(tmp_path):
    store = tmp_path / "private" / "traces.jsonl"
    processes = start_writers(tmp_path, store, WRITERS, SPANS)
    seen = 0
    while any(p.poll() is None for p in processes):
        snapshot = written(store)  # a reader meanwhile sees each span once, and never fewer than before
        assert len(snapshot) == len(set(snapshot))
        assert len(snapshot) >= seen
        seen = len(snapshot)
        time.sleep(0.05)
    finish(processes)
    names = written(store)
    expected = {f"w{w}-{i}" for w in range(WRITERS) for i in range(SPANS)}
    assert len(names) == len(expected)  # none twice
    assert set(names) == expected  # none lost
    rotated = sorted(store.parent.glob("traces.jsonl.[0-9]*"))
    assert len(rotated) > 20  # 3,200 records of about 1.4 KB: rotated about 70 times
    for path in [store, *rotated]:
        assert path.read_bytes().endswith(b"}\n")  # whole lines only
    assert mode(store.parent) == 0o700
    assert {mode(p) for p in store.parent.iterdir()} == {0o600}
    assert (store.parent / "traces.jsonl.lock").exists()


def test_an_existing_store_is_tightened_and_a_cut_line_swallows_nothing(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    store = shared / "traces.jsonl"
    old = {"trace_id": "ab" * 16, "span_id": "cd" * 8, "name": "from an earlier version", "attributes": {}}
    Path(f"{store}.1").write_text(json.dumps(old) + "\n")
    store.write_text(json.dumps({**old, "name": "before the crash"}) + '\n{"trace_id": "ab')  # a writer died here
    for path in (store, Path(f"{store}.1")):
        path.chmod(0o644)
    finish(start_writers(tmp_path, store, writers=1, spans=3))
    assert mode(store) == mode(Path(f"{store}.1")) == 0o600
    assert mode(shared) == 0o755  # a directory we did not create is not ours to change
    assert [r["name"] for r in read_records(str(store))] == [
        "from an earlier version",
        "before the crash",
        "write.task",
        "write.task",
        "write.task",
    ]


def test_rotation_keeps_the_newest_files_only(tmp_path, monkeypatch):
    store = tmp_path / "new" / "traces.jsonl"
    monkeypatch.setattr(local_store, "MAX_BYTES", 100)
    for i in range(6):
        local_store.append(str(store), json.dumps({"trace_id": f"{i:032x}", "pad": "x" * 80}).encode() + b"\n")
    assert sorted(p.name for p in store.parent.iterdir()) == ["traces.jsonl", "traces.jsonl.1", "traces.jsonl.lock"]
    assert [r["trace_id"][-1] for r in read_records(str(store))] == ["4", "5"]
    monkeypatch.setattr(local_store, "KEEP_ROTATED", 3)
    for i in range(6, 10):
        local_store.append(str(store), json.dumps({"trace_id": f"{i:032x}", "pad": "x" * 80}).encode() + b"\n")
    assert [r["trace_id"][-1] for r in read_records(str(store))] == ["6", "7", "8", "9"]
    assert mode(store.parent) == 0o700


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
    result, _ = run_app(code, {"RESPAN_LOCAL_STORE": str(blocker / "sub" / "traces.jsonl")})
    assert result.returncode == 0 and result.stdout.strip() == "done"
    lines = [line for line in result.stderr.splitlines() if "cannot write the local trace store" in line]
    assert len(lines) == 1, result.stderr
    assert "RESPAN_LOCAL_STORE" in lines[0] and str(blocker) in lines[0]
    assert "Traceback" not in result.stderr
