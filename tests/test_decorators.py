"""The decorators keep a function's nature: what inspect, frameworks and callers see is the function's own."""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import pickle
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from respan_auto import agent, task, tool, workflow
from tests.serving import serve

DECORATORS = {"workflow": workflow, "task": task, "agent": agent, "tool": tool}


def plain(a: int, b: int = 1, *rest: int, flag: bool = False, **extra: str) -> int:
    """Adds."""
    return a + b


async def coroutine(a: int, b: int = 1, *rest: int, flag: bool = False, **extra: str) -> int:
    """Adds, later."""
    return a + b


def generator(a: int, b: int = 1, *rest: int, flag: bool = False, **extra: str):
    """Yields a then b."""
    yield a
    yield b
    return a + b


async def async_generator(a: int, b: int = 1, *rest: int, flag: bool = False, **extra: str):
    """Yields a then b, later."""
    yield a
    yield b


PREDICATES = ("iscoroutinefunction", "isgeneratorfunction", "isasyncgenfunction", "isfunction", "isroutine")
RESULTS = ("iscoroutine", "isgenerator", "isasyncgen", "isawaitable")


def nature(fn):
    return {name: getattr(inspect, name)(fn) for name in PREDICATES}


def result_nature(fn):
    result = fn(2, 3)
    try:
        found = {name: getattr(inspect, name)(result) for name in RESULTS}
        return {**found, "name": getattr(result, "__name__", None), "qualname": getattr(result, "__qualname__", None)}
    finally:
        if inspect.iscoroutine(result):
            result.close()


async def collect(agen):
    return [item async for item in agen]


def run(fn, *args):
    """What a call gives its caller, driven to the end."""
    if inspect.iscoroutinefunction(fn):
        return asyncio.run(fn(*args))
    if inspect.isasyncgenfunction(fn):
        return asyncio.run(collect(fn(*args)))
    if inspect.isgeneratorfunction(fn):
        return list(fn(*args))
    return fn(*args)


@task
def module_level(x):  # pickled by reference
    return x


@pytest.mark.parametrize("fn", [plain, coroutine, generator, async_generator], ids=lambda f: f.__name__)
@pytest.mark.parametrize("kind", DECORATORS)
@pytest.mark.parametrize("form", ["bare", "named"])
def test_inspect_sees_the_function_itself(fn, kind, form, spans):
    decorate = DECORATORS[kind]
    decorated = decorate(fn) if form == "bare" else decorate(name="custom")(fn)
    assert nature(decorated) == nature(fn)
    assert result_nature(decorated) == result_nature(fn)
    assert inspect.signature(decorated) == inspect.signature(fn)
    for attribute in ("__name__", "__qualname__", "__doc__", "__module__", "__annotations__"):
        assert getattr(decorated, attribute) == getattr(fn, attribute)
    assert inspect.unwrap(decorated) is fn
    spans.clear()
    assert run(decorated, 2, 3) == run(fn, 2, 3)
    (span,) = spans.finished()
    assert span.name == f"{fn.__name__ if form == 'bare' else 'custom'}.{kind}"
    assert span.attributes["traceloop.span.kind"] == kind
    assert json.loads(span.attributes["traceloop.entity.input"]) == {"args": [2, 3], "kwargs": {}}


class Box:
    @task
    def method(self, x):
        yield x

    @classmethod
    @task
    def class_first(cls, x):
        yield x

    @task
    @classmethod
    def class_inner(cls, x):
        yield x

    @staticmethod
    @task
    def static_first(x):
        yield x

    @task
    @staticmethod
    def static_inner(x):
        yield x

    @tool
    async def coroutine_method(self, x):
        return x

    @agent
    async def async_generator_method(self, x):
        yield x


@pytest.mark.parametrize(
    ("name", "first"),
    [
        ("method", "<Box>"),
        ("class_first", "<type>"),
        ("class_inner", "<type>"),
        ("static_first", None),
        ("static_inner", None),
        ("coroutine_method", "<Box>"),
        ("async_generator_method", "<Box>"),
    ],
)
@pytest.mark.parametrize("via", ["instance", "class"])
def test_methods_classmethods_and_staticmethods(name, first, via, spans):
    box = Box()
    owner = box if via == "instance" else Box
    bound = getattr(owner, name)
    args = (box, 7) if via == "class" and first == "<Box>" else (7,)
    plain_kind = {"coroutine_method": "iscoroutinefunction", "async_generator_method": "isasyncgenfunction"}
    assert getattr(inspect, plain_kind.get(name, "isgeneratorfunction"))(bound)
    parameters = list(inspect.signature(bound).parameters)
    assert parameters == (["self", "x"] if via == "class" and first == "<Box>" else ["x"])
    assert run(bound, *args) == (7 if name == "coroutine_method" else [7])
    (span,) = spans.finished()
    assert span.name == f"Box.{name}.{span.attributes['traceloop.span.kind']}"
    assert json.loads(span.attributes["traceloop.entity.input"])["args"] == ([first, 7] if first else [7])


class Counter:
    def upto(self, n):
        yield from range(n)


def test_a_method_bound_before_decorating_is_traced_without_its_instance(spans):
    decorated = workflow(Counter().upto)
    assert inspect.isgeneratorfunction(decorated)
    assert list(inspect.signature(decorated).parameters) == ["n"]
    assert list(decorated(2)) == [0, 1]
    (span,) = spans.finished()
    assert json.loads(span.attributes["traceloop.entity.input"])["args"] == [2]


def test_pickles_and_copies_as_a_function_does():
    assert pickle.loads(pickle.dumps(module_level)) is module_level
    assert copy.copy(module_level) is module_level
    assert copy.deepcopy({"f": module_level})["f"] is module_level
    box = Box()
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        again = pickle.loads(pickle.dumps(Box.class_first, protocol))
        assert list(again(5)) == [5]
        assert list(pickle.loads(pickle.dumps(Box.static_first, protocol))(6)) == [6]
        assert list(pickle.loads(pickle.dumps(box.method, protocol))(7)) == [7]
        assert list(pickle.loads(pickle.dumps(Box.method, protocol))(box, 7)) == [7]
        assert list(pickle.loads(pickle.dumps(Box.static_inner, protocol))(6)) == [6]
    assert list(copy.copy(box.method)(8)) == [8]
    assert list(copy.deepcopy(box.method)(9)) == [9]


def test_errors_are_recorded_and_reraised_unchanged(spans):
    error = LookupError("missing")

    @task(name="fails")
    def fails():
        yield 1
        raise error

    generator = fails()
    assert next(generator) == 1
    with pytest.raises(LookupError) as raised:
        next(generator)
    assert raised.value is error
    (span,) = spans.finished()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "LookupError"  # the viewers name the failure, as for a model call
    assert [e.name for e in span.events] == ["exception"]


# ---- the generator protocol: a decorated generator answers every next/send/throw/close as the plain one does


class HandledError(Exception):
    pass


class UnhandledError(Exception):
    pass


def counter(log):
    total = 0
    try:
        while True:
            try:
                got = yield total
            except HandledError:
                log.append("handled")
                continue
            if got == "stop":
                return total
            if got == "boom":
                raise KeyError("boom")
            total += got or 1
    finally:
        log.append(("finally", trace.get_current_span().is_recording()))


async def async_counter(log):
    total = 0
    try:
        while True:
            try:
                got = yield total
            except HandledError:
                log.append("handled")
                continue
            if got == "stop":
                return
            if got == "boom":
                raise KeyError("boom")
            total += got or 1
    finally:
        log.append(("finally", trace.get_current_span().is_recording()))


operation = st.one_of(
    st.just(("next",)),
    st.tuples(st.just("send"), st.sampled_from([2, 5, "stop", "boom"])),
    st.tuples(st.just("throw"), st.sampled_from([HandledError, UnhandledError])),
    st.just(("close",)),
)
# sending a value to a generator that has not started is the caller's error; the script starts it otherwise
script = st.tuples(st.sampled_from([("next",), ("throw", HandledError), ("close",)]), st.lists(operation, max_size=8))


def outcome(call):
    try:
        return ("value", call())
    except StopIteration as stop:
        return ("return", stop.value)
    except StopAsyncIteration:
        return ("return", None)
    except Exception as exc:  # noqa: BLE001
        return ("raised", type(exc).__name__)


def drive(generator, operations):
    results = []
    for name, *arg in operations:
        if name == "next":
            results.append(outcome(lambda: next(generator)))
        elif name == "send":
            results.append(outcome(lambda: generator.send(arg[0])))  # noqa: B023
        elif name == "throw":
            results.append(outcome(lambda: generator.throw(arg[0]())))  # noqa: B023
        else:
            results.append(outcome(generator.close))
    return results


async def adrive(generator, operations):
    results = []
    for name, *arg in operations:
        if name == "next":
            step = generator.__anext__
        elif name == "send":
            step = lambda: generator.asend(arg[0])  # noqa: B023, E731
        elif name == "throw":
            step = lambda: generator.athrow(arg[0]())  # noqa: B023, E731
        else:
            step = generator.aclose
        try:
            results.append(("value", await step()))
        except StopAsyncIteration:
            results.append(("return", None))
        except Exception as exc:  # noqa: BLE001
            results.append(("raised", type(exc).__name__))
    return results


def ending(operations, results):
    """The outcome of the step that finished the generator: its return, its error, or a close."""
    for (name, *_), result in zip(operations, results, strict=True):
        if result[0] != "value" or name == "close":
            return result
    raise AssertionError("every script ends with a close")


def same_log(traced_log, plain_log):
    def shape(log):
        return [entry if entry == "handled" else entry[0] for entry in log]

    assert shape(traced_log) == shape(plain_log)
    assert all(entry[1] for entry in traced_log if entry != "handled")  # the body's cleanup runs in its span


def check_span(spans, name, end):
    (span,) = spans.finished()
    assert span.name == name
    assert span.status.status_code is (StatusCode.ERROR if end[0] == "raised" else StatusCode.UNSET)
    if end[0] == "return" and end[1] is not None:
        assert json.loads(span.attributes["traceloop.entity.output"]) == end[1]
    else:
        assert "traceloop.entity.output" not in span.attributes


@settings(max_examples=150, deadline=None)
@given(steps=script)
def test_a_generator_answers_every_step_as_the_plain_one(steps, spans):
    spans.clear()
    operations = [steps[0], *steps[1], ("close",)]
    plain_log, traced_log = [], []
    expected = drive(counter(plain_log), operations)
    assert drive(task(name="counter")(counter)(traced_log), operations) == expected
    same_log(traced_log, plain_log)
    check_span(spans, "counter.task", ending(operations, expected))


@settings(max_examples=60, deadline=None)
@given(steps=script)
def test_an_async_generator_answers_every_step_as_the_plain_one(steps, spans):
    spans.clear()
    operations = [steps[0], *steps[1], ("close",)]
    plain_log, traced_log = [], []
    expected = asyncio.run(adrive(async_counter(plain_log), operations))
    assert asyncio.run(adrive(agent(name="counter")(async_counter)(traced_log), operations)) == expected
    same_log(traced_log, plain_log)
    end = ending(operations, expected)
    if steps[0][0] == "throw":
        # thrown in before the first step: the body never ran, so its span ends when the generator goes, unmarked
        end = ("value", None)
    check_span(spans, "counter.agent", end)


# ---- frameworks that look at a function's nature: pytest fixtures, FastAPI dependencies

FIXTURE_TESTS = """
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from respan_auto import task, workflow

EXPORTER = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(provider)
TEARDOWNS = []


@pytest.fixture
@task(name="resource")
def resource(tmp_path):
    yield {"dir": tmp_path.is_dir()}
    TEARDOWNS.append(("resource", trace.get_current_span().is_recording()))


def test_gets_the_yielded_value(resource):
    assert resource == {"dir": True}
    assert TEARDOWNS == []


class TestInAClass:
    @pytest.fixture
    @workflow
    def per_test(self):
        yield "method"
        TEARDOWNS.append(("per_test", trace.get_current_span().is_recording()))

    def test_method_fixture(self, per_test):
        assert per_test == "method"


def test_teardowns_ran_in_their_spans():
    assert TEARDOWNS == [("resource", True), ("per_test", True)]
    names = sorted(s.name for s in EXPORTER.get_finished_spans())
    assert names == ["TestInAClass.per_test.workflow", "resource.task"]
"""


def test_pytest_yield_fixtures(tmp_path):
    (tmp_path / "test_fixtures.py").write_text(FIXTURE_TESTS)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_fixtures.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_fastapi_yield_dependencies_over_http(spans):
    fastapi = pytest.importorskip("fastapi")
    events = []

    @task(name="session")
    def session():
        events.append("open")
        yield "db"
        events.append(("closed", trace.get_current_span().is_recording()))

    @workflow(name="current_user")
    async def current_user(db: str = fastapi.Depends(session)):
        yield f"user of {db}"
        events.append(("user done", trace.get_current_span().is_recording()))

    app = fastapi.FastAPI()

    @app.get("/")
    def root(user: str = fastapi.Depends(current_user)):
        return {"user": user}

    with serve(app) as get:
        assert json.loads(get("/")) == {"user": "user of db"}
        assert json.loads(get("/")) == {"user": "user of db"}
    assert sorted(events, key=str) == sorted(["open", ("closed", True), ("user done", True)] * 2, key=str)
    names = sorted(s.name for s in spans.finished() if s.name.endswith((".task", ".workflow")))
    assert names == ["current_user.workflow"] * 2 + ["session.task"] * 2
