"""Trace structure: decorators, propagate_attributes, defaults, and context across threads and tasks."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.instrumentation.threading import ThreadingInstrumentor
from opentelemetry.trace import StatusCode

from respan_auto import _guard, agent, content, context, propagate_attributes, task, tool, workflow
from tests.conftest import user

MODEL = "mistral-large-latest"
CUSTOMER = "respan.customer_params.customer_identifier"
THREAD = "respan.threads.thread_identifier"


def by_name(spans):
    return {s.name: s for s in spans.finished()}


@pytest.fixture
def threading_context():
    instrumentor = ThreadingInstrumentor()
    instrumentor.instrument()
    yield
    instrumentor.uninstrument()


@pytest.fixture
def defaults():
    saved = dict(context._defaults)
    yield context.add_defaults
    context._defaults = saved


def test_seed_handle_request(client, spans, defaults):
    defaults(context.to_attributes({}, {"service": "chat-api", "version": "1.0.0"}))

    @workflow(name="handle_request")
    def handle_request(user_id: str, question: str):
        with propagate_attributes(customer_identifier=user_id, thread_identifier="conv_001", metadata={"plan": "pro"}):
            response = client.chat.complete(model=MODEL, messages=[{"role": "user", "content": question}])
            return response.choices[0].message.content

    handle_request("user_42", "What is an API gateway?")
    found = by_name(spans)
    root, llm = found["handle_request.workflow"], found[f"chat {MODEL}"]
    assert root.parent is None
    assert llm.parent.span_id == root.context.span_id
    for span in (root, llm):  # the root too: it was current when the scope was entered
        a = span.attributes
        assert a[CUSTOMER] == "user_42"
        assert a[THREAD] == "conv_001"
        assert a["respan.metadata.plan"] == "pro"
        assert a["respan.metadata.service"] == "chat-api"  # merged with the defaults
        assert a["traceloop.workflow.name"] == "handle_request"
    assert root.attributes["traceloop.span.kind"] == "workflow"
    assert json.loads(root.attributes["traceloop.entity.input"]) == {
        "args": ["user_42", "What is an API gateway?"],
        "kwargs": {},
    }
    assert json.loads(root.attributes["traceloop.entity.output"]).startswith("Offline stand-in reply")


def test_seed_content_pipeline(client, spans):
    @task(name="generate_outline")
    def outline(topic: str) -> str:
        response = client.chat.complete(model=MODEL, messages=user(f"Create a brief outline about: {topic}"))
        return response.choices[0].message.content

    @workflow(name="content_pipeline")
    def pipeline(topic: str):
        plan = outline(topic)
        client.chat.complete(model=MODEL, messages=user(f"Write content from this outline: {plan}"))

    pipeline("Benefits of API gateways")
    finished = spans.finished()
    assert len(finished) == 4
    root = next(s for s in finished if s.name == "content_pipeline.workflow")
    outline_span = next(s for s in finished if s.name == "generate_outline.task")
    llms = sorted((s for s in finished if s.name == f"chat {MODEL}"), key=lambda s: s.start_time)
    assert outline_span.parent.span_id == root.context.span_id
    assert llms[0].parent.span_id == outline_span.context.span_id
    assert llms[1].parent.span_id == root.context.span_id
    assert outline_span.attributes["traceloop.span.kind"] == "task"
    assert outline_span.attributes["traceloop.entity.name"] == "generate_outline"
    assert outline_span.attributes["traceloop.workflow.name"] == "content_pipeline"
    assert "traceloop.entity.path" not in outline_span.attributes  # no enclosing task
    assert llms[0].attributes["traceloop.entity.path"] == "generate_outline"
    assert llms[1].attributes["traceloop.workflow.name"] == "content_pipeline"
    assert len({s.context.trace_id for s in finished}) == 1


def test_bare_and_called_forms_and_default_names(spans):
    @task
    def bare():
        return 1

    @agent("named_agent")
    def positional():
        return 2

    class Toolbox:
        @tool
        def lookup(self, key):
            return {"key": key}

    assert bare() == 1
    assert positional() == 2
    assert Toolbox().lookup("k") == {"key": "k"}
    names = by_name(spans)
    assert set(names) == {
        "test_bare_and_called_forms_and_default_names.<locals>.bare.task",
        "named_agent.agent",
        "test_bare_and_called_forms_and_default_names.<locals>.Toolbox.lookup.tool",
    }
    method = next(s for s in spans.finished() if s.name.endswith("lookup.tool"))
    assert json.loads(method.attributes["traceloop.entity.input"]) == {"args": ["<Toolbox>", "k"], "kwargs": {}}


def test_nested_paths(spans):
    @tool(name="leaf")
    def leaf():
        return trace.get_current_span()

    @task(name="inner")
    def inner():
        return leaf()

    @task(name="outer")
    def outer():
        return inner()

    @workflow(name="flow")
    def flow():
        return outer()

    flow()
    found = by_name(spans)
    assert found["leaf.tool"].attributes["traceloop.entity.path"] == "outer.inner"
    assert found["inner.task"].attributes["traceloop.entity.path"] == "outer"
    assert all(s.attributes["traceloop.workflow.name"] == "flow" for s in found.values())


def test_async_function_and_exception(spans):
    class Boom(Exception):  # noqa: N818
        pass

    error = Boom("no")

    @workflow
    async def fails():
        raise error

    with pytest.raises(Boom) as raised:
        asyncio.run(fails())
    assert raised.value is error
    (span,) = spans.finished()
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_generator_span_covers_iteration_without_leaking_context(spans):
    @task(name="gen")
    def numbers(n):
        for i in range(n):
            yield i, trace.get_current_span()

    outside = trace.get_current_span()
    gen = numbers(3)
    seen = []
    for value, current in gen:
        seen.append(value)
        assert trace.get_current_span() is outside  # the caller's code between items
        assert current.is_recording()
    assert seen == [0, 1, 2]
    (span,) = spans.finished()
    assert span.name == "gen.task"

    spans.clear()
    never = numbers(5)
    assert trace.get_current_span() is outside
    del never
    gc.collect()
    assert [s.name for s in spans.finished()] == ["gen.task"]

    spans.clear()
    half = numbers(5)
    next(half)
    half.close()
    assert trace.get_current_span() is outside
    assert len(spans.finished()) == 1
    with pytest.raises(StopIteration):
        next(half)

    @workflow(name="later")
    def later():
        return trace.get_current_span().get_span_context().trace_id

    spans.clear()
    abandoned = numbers(5)
    next(abandoned)
    later_trace = later()
    assert spans.finished()[-1].parent is None  # not adopted by the abandoned generator
    assert later_trace != 0
    del abandoned
    gc.collect()


def test_async_generator(spans):
    @agent(name="agen")
    async def numbers():
        for i in range(3):
            yield i

    async def main():
        return [i async for i in numbers()]

    assert asyncio.run(main()) == [0, 1, 2]
    assert [s.name for s in spans.finished()] == ["agen.agent"]


def test_content_capture_off_leaves_no_input_or_output(spans):
    content.set_from_code(False)
    try:

        @task(name="quiet")
        def quiet(secret):
            return secret * 2

        assert quiet("s3cr3t") == "s3cr3ts3cr3t"
    finally:
        content.reset()
    (span,) = spans.finished()
    assert "traceloop.entity.input" not in span.attributes
    assert "traceloop.entity.output" not in span.attributes
    assert "s3cr3t" not in json.dumps(dict(span.attributes))


def test_pydantic_values_and_truncation(spans):
    pydantic = pytest.importorskip("pydantic")

    class Point(pydantic.BaseModel):
        x: int

    @tool(name="p")
    def make(point, blob):
        return Point(x=point.x + 1)

    make(Point(x=1), "y" * 50_000)
    (span,) = spans.finished()
    assert json.loads(span.attributes["traceloop.entity.output"]) == {"x": 2}
    raw = span.attributes["traceloop.entity.input"]
    assert raw.startswith('{"args": [{"x": 1}, "yyy')
    assert raw.endswith("…[truncated]")
    assert len(raw) < 11_000


def test_metadata_is_json_not_repr_and_bad_types_are_coerced_once(spans, caplog, monkeypatch):
    monkeypatch.setattr(_guard, "_reported", set())
    caplog.set_level(logging.WARNING)
    with pytest.raises(TypeError):
        propagate_attributes(customer_id="typo")
    tracer = trace.get_tracer("t")
    for _ in range(2):
        with propagate_attributes(customer_identifier=42, metadata={"n": 1, "tags": ["a", "b"], "d": {"k": None}}):
            tracer.start_span("s").end()
    a = spans.finished()[0].attributes
    assert a[CUSTOMER] == "42"
    assert a["respan.metadata.n"] == "1"
    assert a["respan.metadata.tags"] == '["a", "b"]'
    assert a["respan.metadata.d"] == '{"k": null}'
    assert len([r for r in caplog.records if "customer_identifier" in r.getMessage()]) == 1


def test_scope_reaches_other_instrumentors_spans_and_async_with(spans):
    tracer = trace.get_tracer("some.other.instrumentation")

    async def main():
        async with propagate_attributes(session_identifier="sess-1", trace_group_identifier="tg"):
            tracer.start_span("foreign").end()

    asyncio.run(main())
    a = spans.finished()[0].attributes
    assert a["respan.sessions.session_identifier"] == "sess-1"
    assert a["respan.trace.trace_group_identifier"] == "tg"


def test_defaults_apply_in_every_thread_and_scopes_override(spans, defaults):
    defaults(context.to_attributes({"customer_identifier": "default-cust", "environment": "prod"}, {"svc": "x"}))
    tracer = trace.get_tracer("t")

    def work():
        tracer.start_span("in-thread").end()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    with propagate_attributes(customer_identifier="scoped"):
        tracer.start_span("scoped").end()
    found = by_name(spans)
    assert found["in-thread"].attributes[CUSTOMER] == "default-cust"
    assert found["in-thread"].attributes["respan.environment"] == "prod"
    assert found["scoped"].attributes[CUSTOMER] == "scoped"
    assert found["scoped"].attributes["respan.metadata.svc"] == "x"


def test_scope_and_parent_follow_threads_and_pools(client, spans, threading_context):
    @workflow(name="fan_out")
    def fan_out():
        with propagate_attributes(customer_identifier="fan"):
            thread = threading.Thread(target=lambda: client.chat.complete(model=MODEL, messages=user("thread")))
            thread.start()
            thread.join()
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(lambda q: client.chat.complete(model=MODEL, messages=user(q)), ["a", "b"]))

    fan_out()
    finished = spans.finished()
    root = next(s for s in finished if s.name == "fan_out.workflow")
    llms = [s for s in finished if s.name.startswith("chat ")]
    assert len(llms) == 3
    for span in llms:
        assert span.parent.span_id == root.context.span_id
        assert span.attributes[CUSTOMER] == "fan"


def test_fifty_concurrent_async_requests(new_client, spans):
    @workflow(name="request")
    async def request(client, i):
        async with propagate_attributes(customer_identifier=f"c{i}", thread_identifier=f"t{i}"):
            await asyncio.sleep(0)
            response = await client.chat.complete_async(model=MODEL, messages=user(f"q{i}"))
            return response.choices[0].message.content

    async def main():
        client = new_client()
        return await asyncio.gather(*(request(client, i) for i in range(50)))

    asyncio.run(main())
    finished = spans.finished()
    assert len(finished) == 100
    roots = {s.context.span_id: s for s in finished if s.name == "request.workflow"}
    for span in finished:
        if span.name.startswith("chat "):
            i = span.attributes["gen_ai.prompt.0.content"][1:]
            root = roots[span.parent.span_id]
            assert root.attributes[CUSTOMER] == span.attributes[CUSTOMER] == f"c{i}"
            assert root.attributes[THREAD] == span.attributes[THREAD] == f"t{i}"


def test_sixteen_thread_pool(client, spans, threading_context):
    @workflow(name="job")
    def job(i):
        with propagate_attributes(customer_identifier=f"c{i}", thread_identifier=f"t{i}"):
            client.chat.complete(model=MODEL, messages=user(f"q{i}"))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(job, range(16)))
    finished = spans.finished()
    assert len(finished) == 32
    for span in finished:
        if span.name.startswith("chat "):
            i = span.attributes["gen_ai.prompt.0.content"][1:]
            assert span.attributes[CUSTOMER] == f"c{i}" and span.attributes[THREAD] == f"t{i}"


# ---- hypothesis: random nestings of scopes and decorators give the merged attributes

OPTIONS = ("customer_identifier", "thread_identifier", "environment")
options = st.fixed_dictionaries({}, optional={k: st.sampled_from(["a", "b", "c"]) for k in OPTIONS})
metadata = st.dictionaries(st.sampled_from(["m1", "m2"]), st.integers(0, 3), max_size=2)
kinds = st.sampled_from(["workflow", "task", "agent", "tool"])
layer = st.one_of(
    st.tuples(st.just("scope"), options, metadata),
    st.tuples(st.just("decorator"), kinds, st.sampled_from(["x", "y"])),
)


@settings(max_examples=60, deadline=None)
@given(layers=st.lists(layer, max_size=5))
def test_random_nestings_merge_as_specified(layers):
    tracer = trace.get_tracer("probe")
    expected: dict[str, str] = {}
    workflow_name = None
    captured = {}

    def run(depth: int) -> None:
        nonlocal workflow_name
        if depth == len(layers):
            span = tracer.start_span("probe")
            captured.update(span.attributes)
            span.end()
            return
        kind, first, second = layers[depth]
        if kind == "scope":
            with propagate_attributes(**first, metadata=second):
                run(depth + 1)
        else:
            decorate = {"workflow": workflow, "task": task, "agent": agent, "tool": tool}[first]
            decorate(name=second)(lambda: run(depth + 1))()

    for kind, first, second in layers:
        if kind == "scope":
            expected.update(context.to_attributes(first, second))
        elif first == "workflow":
            workflow_name = second
    run(0)
    for key, value in expected.items():
        assert captured[key] == value
    assert captured.get("traceloop.workflow.name") == workflow_name
    assert not [k for k in captured if k.startswith("respan.") and k not in expected]
