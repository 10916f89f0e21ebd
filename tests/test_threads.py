"""Context propagation into threads and pools (respan_auto.threads), in-process and under the launcher."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from opentelemetry import context as context_api

from respan_auto import propagate_attributes, threads
from respan_auto.export.local_store import read_records
from tests.conftest import REPO

CUSTOMER = "respan.customer_params.customer_identifier"
LAUNCHER = str(Path(sys.executable).parent / "respan-instrument")
WRAPPED = [(threading.Thread, "start"), (threading.Thread, "_bootstrap_inner"), (ThreadPoolExecutor, "submit")]


@pytest.fixture
def propagating():
    """Ours on for the test; the state before is restored after (another test may have turned it on)."""
    was = threads.active()
    threads.instrument()
    assert threads.active()
    yield
    if not was:
        threads.uninstrument()


@pytest.fixture
def tracer(spans):
    return spans.provider.get_tracer("test_threads")


def parent_of(spans, name):
    (span,) = [s for s in spans.finished() if s.name == name]
    return span.parent.span_id if span.parent else None


def span_id(span):
    return span.get_span_context().span_id


def in_thread(fn, thread_cls=threading.Thread):
    thread = thread_cls(target=fn)
    thread.start()
    thread.join()


def test_a_span_in_a_thread_has_the_span_current_at_start_as_parent(spans, tracer, propagating):
    with tracer.start_as_current_span("constructed"):
        thread = threading.Thread(target=lambda: tracer.start_span("child").end())
    with tracer.start_as_current_span("started") as started:
        thread.start()  # captured at start(), not at construction
        thread.join()
    assert parent_of(spans, "child") == span_id(started)


def test_subclasses_that_override_run_get_the_context(spans, tracer, propagating):
    class Worker(threading.Thread):
        def __init__(self):
            super().__init__()
            self.seen = None

        def run(self):
            self.seen = "ran"
            tracer.start_span("subclass").end()

    with tracer.start_as_current_span("parent") as parent:
        worker = Worker()
        worker.start()
        worker.join()
    assert worker.seen == "ran"
    assert parent_of(spans, "subclass") == span_id(parent)
    assert not hasattr(worker, threads._ATTRIBUTE)  # the finished thread no longer holds the context


def test_pool_tasks_run_in_the_context_current_at_submit(spans, tracer, propagating):
    with ThreadPoolExecutor(1) as pool:
        with tracer.start_as_current_span("first") as first:
            pool.submit(lambda: tracer.start_span("a").end()).result()
        with tracer.start_as_current_span("second") as second:
            # the same worker thread (started under "first") runs this one
            pool.submit(lambda: tracer.start_span("b").end()).result()
            list(pool.map(lambda n: tracer.start_span(f"m{n}").end(), [1, 2]))
        pool.submit(lambda: tracer.start_span("none").end()).result()
    assert parent_of(spans, "a") == span_id(first)
    assert parent_of(spans, "b") == parent_of(spans, "m1") == parent_of(spans, "m2") == span_id(second)
    assert parent_of(spans, "none") is None


def test_propagate_attributes_crosses_into_threads_and_pools(spans, tracer, propagating):
    with propagate_attributes(customer_identifier="cust-t"):
        in_thread(lambda: tracer.start_span("thread").end())
        with ThreadPoolExecutor(2) as pool:
            pool.submit(lambda: tracer.start_span("task").end()).result()
    found = {s.name: s for s in spans.finished()}
    assert found["thread"].attributes[CUSTOMER] == found["task"].attributes[CUSTOMER] == "cust-t"


def test_no_detach_errors_and_user_code_leaks_are_contained(spans, tracer, propagating, caplog):
    leaked = context_api.create_key("leaked")

    def leaky():
        context_api.attach(context_api.set_value(leaked, "x"))  # never detached by the user
        tracer.start_span("leaky").end()

    with caplog.at_level(logging.ERROR), tracer.start_as_current_span("parent"):
        in_thread(leaky)
        with ThreadPoolExecutor(1) as pool:
            pool.submit(leaky).result()
            assert pool.submit(lambda: context_api.get_value(leaked)).result() is None
    assert "Failed to detach context" not in caplog.text


def test_exceptions_still_reach_the_future_and_the_excepthook(propagating, monkeypatch):
    def boom():
        raise ValueError("from the task")

    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="from the task"):
        pool.submit(boom).result()
    hooked = []
    monkeypatch.setattr(threading, "excepthook", lambda args: hooked.append(args.exc_type))
    in_thread(boom)
    assert hooked == [ValueError]


def test_a_failing_capture_never_reaches_user_code(propagating, monkeypatch):
    def broken():
        raise RuntimeError("no context today")

    monkeypatch.setattr(threads.context_api, "get_current", broken)
    ran = []
    in_thread(lambda: ran.append("thread"))
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(lambda: "task").result() == "task"
    assert ran == ["thread"]


def test_instrument_is_idempotent_and_uninstrument_restores_the_originals(spans, tracer):
    was = threads.active()
    threads.uninstrument()
    try:
        originals = {(owner, name): vars(owner)[name] for owner, name in WRAPPED}
        assert not any(hasattr(f, "__wrapped__") for f in originals.values())
        assert threads.instrument() is True
        assert threads.instrument() is False
        for owner, name in WRAPPED:
            wrapper = vars(owner)[name]
            assert wrapper.__wrapped__ is originals[(owner, name)]
        threads.uninstrument()
        assert {(owner, name): vars(owner)[name] for owner, name in WRAPPED} == originals
        with tracer.start_as_current_span("parent"):
            in_thread(lambda: tracer.start_span("off").end())
        assert parent_of(spans, "off") is None
    finally:
        if was:
            threads.instrument()


def test_the_contrib_instrumentor_is_never_doubled():
    contrib = pytest.importorskip("opentelemetry.instrumentation.threading")
    was = threads.active()
    threads.uninstrument()
    instrumentor = contrib.ThreadingInstrumentor()
    instrumentor.instrument()
    try:
        assert threads.contrib_active()
        assert threads.instrument() is False  # the contrib one already propagates
        assert not threads.active()
    finally:
        instrumentor.uninstrument()
        if was:
            threads.instrument()


# What a thread, a timer and a pool task see, printed as JSON by a fresh process (so that no earlier test's
# instrumentation is in the way: the contrib instrumentor's uninstrument leaves a Timer.start of its own behind).
PROBE = """
import json, threading
from concurrent.futures import ThreadPoolExecutor
from opentelemetry import trace
from respan_auto import context, propagate_attributes, task

def seen():
    span = trace.get_current_span().get_span_context()
    return {"span": span.span_id, "scope": dict(context.scoped_attributes())}

class Worker(threading.Thread):
    def run(self):
        self.seen = seen()

@task(name="parent")
def main():
    with propagate_attributes(customer_identifier="probe"):
        worker = Worker()
        worker.start()
        worker.join()
        timed = []
        timer = threading.Timer(0.01, lambda: timed.append(seen()))
        timer.start()
        timer.join()
        with ThreadPoolExecutor(2) as pool:
            pooled = pool.submit(seen).result()
        parent = trace.get_current_span().get_span_context().span_id
        return {"parent": parent, "thread": worker.seen, "timer": timed[0], "pool": pooled}

result = main()
start = threading.Thread.__dict__["start"]
result["wrappers"] = 0
while hasattr(start, "__wrapped__"):
    result["wrappers"] += 1
    start = start.__wrapped__
print(json.dumps(result))
"""


def probe_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_"))}
    env.update(PYTHONPATH=str(REPO), RESPAN_LOCAL_STORE=str(tmp_path / "traces.jsonl"), RESPAN_ANNOUNCED="1", **extra)
    return env


def seen_by_threads(result):
    return [result["thread"], result["timer"], result["pool"]]


@pytest.mark.parametrize("setting", ["", "false"])
def test_respan_auto_instrument_propagates_unless_switched_off(tmp_path, setting):
    env = probe_env(tmp_path, RESPAN_INSTRUMENT_THREADING=setting) if setting else probe_env(tmp_path)
    code = "from respan_auto import Respan\nrespan = Respan(is_auto_instrument=True)\n" + PROBE
    code += "respan.flush()\nassert ('threading' in respan.activated) == (respan.settings.instrument_threading)\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.splitlines()[-1])
    if setting == "false":
        assert found["wrappers"] == 0  # nothing wraps threads: neither ours nor the contrib instrumentor
        assert seen_by_threads(found) == [{"span": 0, "scope": {}}] * 3
    else:
        assert found["wrappers"] == 1  # ours only, even where the contrib instrumentor is installed
        assert seen_by_threads(found) == [{"span": found["parent"], "scope": {CUSTOMER: "probe"}}] * 3


def stored(store: Path) -> dict[str, dict]:
    return {r["name"]: r for r in read_records(str(store))}


@pytest.mark.parametrize("switch", [[], ["--no-threading"]])
def test_under_the_launcher(tmp_path, switch):
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent(
            """
            import threading
            from concurrent.futures import ThreadPoolExecutor
            from respan_auto import Respan, propagate_attributes, task, workflow

            @task(name="in_thread")
            def in_thread():
                pass

            @task(name="in_pool")
            def in_pool():
                pass

            @workflow(name="fan_out")
            def fan_out():
                with propagate_attributes(customer_identifier="launched"):
                    worker = threading.Thread(target=in_thread)
                    worker.start()
                    worker.join()
                    with ThreadPoolExecutor(2) as pool:
                        pool.submit(in_pool).result()

            fan_out()
            Respan().flush(10)  # the pipeline the launcher set up: this test is about threads, not the exit path
            """
        )
    )
    env = probe_env(tmp_path)
    result = subprocess.run(
        [LAUNCHER, *switch, sys.executable, str(app)], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    found = stored(tmp_path / "traces.jsonl")
    root = found["fan_out.workflow"]
    for name in ("in_thread.task", "in_pool.task"):
        span = found[name]
        if switch:
            assert span["parent_id"] is None and span["trace_id"] != root["trace_id"]
            assert CUSTOMER not in span["attributes"]
        else:
            assert span["parent_id"] == root["span_id"] and span["trace_id"] == root["trace_id"]
            assert span["attributes"][CUSTOMER] == "launched"
