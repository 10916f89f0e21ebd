"""Scopes that end in another context than they began in: generators that a server steps from a thread pool.

Starlette's StreamingResponse runs each step of a sync generator in a worker thread, in a fresh copy of the
request's context, so a ``with propagate_attributes(...)`` around a ``yield`` is left in another context than it
was entered in. That must log nothing, and the scope must still reach the spans started inside it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging

import pytest
from opentelemetry import context as context_api
from opentelemetry import trace
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route

from respan_auto import gateway, propagate_attributes, task, workflow
from tests.serving import serve

CUSTOMER = "respan.customer_params.customer_identifier"
THREAD = "respan.threads.thread_identifier"
DETACH_FAILED = "Failed to detach context"


@pytest.fixture
def tracer(spans):
    return spans.provider.get_tracer("test_context_detach")


@pytest.fixture
def otel_log(caplog):
    caplog.set_level(logging.DEBUG, logger="opentelemetry.context")
    return caplog


def failures(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if DETACH_FAILED in r.getMessage()]


def by_name(spans):
    return {s.name: s for s in spans.finished()}


def test_streaming_response_sync_generators_log_nothing_and_keep_their_scope(spans, tracer, otel_log):
    def plain():
        with propagate_attributes(customer_identifier="plain"):
            tracer.start_span("plain.before").end()
            yield b"a"
            yield b"b"
        tracer.start_span("plain.after").end()

    @task(name="chunks")
    def decorated():
        with propagate_attributes(customer_identifier="decorated"):
            tracer.start_span("decorated.before").end()
            yield b"a"
            with propagate_attributes(thread_identifier="nested"):
                yield b"b"
                tracer.start_span("decorated.nested").end()
            tracer.start_span("decorated.between").end()
            yield b"c"
        tracer.start_span("decorated.after").end()

    async def plain_route(request):
        return StreamingResponse(plain())

    async def decorated_route(request):
        return StreamingResponse(decorated())

    app = Starlette(routes=[Route("/plain", plain_route), Route("/decorated", decorated_route)])
    with serve(app) as get:
        for _ in range(3):
            assert get("/plain") == b"ab"
            assert get("/decorated") == b"abc"
    assert failures(otel_log) == []
    found = by_name(spans)
    assert found["plain.before"].attributes[CUSTOMER] == "plain"
    assert CUSTOMER not in found["plain.after"].attributes
    root = found["chunks.task"]
    assert root.attributes[CUSTOMER] == "decorated"
    # a decorated generator keeps what its body attached from one step (and worker thread) to the next
    for name in ("decorated.before", "decorated.nested", "decorated.between", "decorated.after"):
        assert found[name].parent.span_id == root.context.span_id, name
    assert found["decorated.between"].attributes[CUSTOMER] == "decorated"
    assert found["decorated.nested"].attributes[CUSTOMER] == "decorated"
    assert found["decorated.nested"].attributes[THREAD] == "nested"
    assert THREAD not in found["decorated.between"].attributes
    assert CUSTOMER not in found["decorated.after"].attributes


def step_in_fresh_contexts(generator):
    """What Starlette's thread pool does: each ``next`` in a new copy of the caller's context."""
    return [contextvars.copy_context().run(next, generator, None) for _ in range(4)]


@pytest.mark.parametrize("scope", [propagate_attributes, gateway.gateway_params], ids=["propagate", "gateway"])
def test_a_scope_left_in_another_context_logs_nothing_and_leaks_nothing(scope, otel_log):
    before = context_api.get_current()
    seen = []

    def body():
        with scope(customer_identifier="x"):
            seen.append(context_api.get_current())
            yield 1
            yield 2
        seen.append(context_api.get_current())
        yield 3

    assert step_in_fresh_contexts(body()) == [1, 2, 3, None]
    assert failures(otel_log) == []
    assert context_api.get_current() is before
    assert seen[0] is not before
    assert seen[1] is before  # the scope was never in force in the step that left it


def test_a_scope_left_in_a_copy_taken_inside_it_is_undone_there(otel_log):
    def body():
        with propagate_attributes(customer_identifier="x"):
            yield context_api.get_current()
        yield context_api.get_current()

    outside = context_api.get_current()
    generator = body()
    inside = next(generator)
    assert inside is not outside
    copied = contextvars.copy_context()  # taken while the scope is in force here
    after = copied.run(next, generator)
    assert after is outside
    assert failures(otel_log) == []
    assert context_api.get_current() is inside  # this context still has the scope: its block is not over here
    context_api.attach(outside)


def test_decorated_generators_keep_their_scope_across_fresh_contexts(spans, tracer, otel_log):
    @workflow(name="flow")
    def body():
        with propagate_attributes(customer_identifier="kept"):
            yield 1
            tracer.start_span("second").end()
            yield 2
        tracer.start_span("third").end()

    outside = context_api.get_current()
    assert step_in_fresh_contexts(body()) == [1, 2, None, None]
    assert context_api.get_current() is outside
    assert failures(otel_log) == []
    found = by_name(spans)
    assert found["second"].attributes[CUSTOMER] == "kept"
    assert CUSTOMER not in found["third"].attributes
    assert found["third"].parent.span_id == found["flow.workflow"].context.span_id


def test_async_generators_stepped_from_separate_tasks(spans, tracer, otel_log):
    async def plain():
        async with propagate_attributes(customer_identifier="plain"):
            yield 1
            yield 2

    @task(name="agen")
    async def decorated():
        async with propagate_attributes(customer_identifier="decorated"):
            yield 1
            tracer.start_span("after-yield").end()
            yield 2

    async def main():
        results = []
        for generator in (plain(), decorated()):
            # each step its own task, hence its own copy of the context
            results.append([await asyncio.create_task(anext(generator)) for _ in range(2)])
            with pytest.raises(StopAsyncIteration):
                await asyncio.create_task(anext(generator))
        return results

    assert asyncio.run(main()) == [[1, 2], [1, 2]]
    assert failures(otel_log) == []
    found = by_name(spans)
    assert found["after-yield"].attributes[CUSTOMER] == "decorated"
    assert found["after-yield"].parent.span_id == found["agen.task"].context.span_id
    assert trace.get_current_span() is trace.INVALID_SPAN
