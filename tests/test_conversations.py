"""Conversations (``beta.conversations``): start, append and restart, plain and streamed, sync and async; the run
helpers' whole runs and their client-side tool runs; on the real SDK against the loopback stand-in."""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from respan_auto.instrumentation.mistralai import conversations
from respan_auto.testing.conversation_answers import CONVERSATION_ID, MODEL, TOOL_ARGUMENTS
from respan_auto.testing.mistral_server import MistralServer
from tests.conftest import with_sdk_tracing

REQUEST_MODEL = "mistral-medium-latest"
AGENT = "ag_0a1b2c3d"
TOOL_SPAN = "execute_tool get_weather"
OURS = "respan_auto.instrumentation.mistralai"


@pytest.fixture(scope="module")
def server() -> Iterator[MistralServer]:
    with MistralServer() as srv:
        yield srv


def call(new_client: Any, method: str, is_async: bool = False, **kwargs: Any) -> Any:
    """``client.beta.conversations.<method>(**kwargs)``, or its ``_async`` twin run to completion (a stream read)."""
    client = new_client()
    owner = client.beta.conversations
    if not is_async:
        result = getattr(owner, method)(**kwargs)
        return list(result) if method.endswith("_stream") else result

    async def go() -> Any:
        result = await getattr(owner, method + "_async")(**kwargs)
        return [event async for event in result] if method.endswith("_stream") else result

    return asyncio.run(go())


def get_weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: the city's name
    """
    with trace.get_tracer("the app").start_as_current_span("look up the weather"):
        return f"sunny in {city}"


def run(new_client: Any, inputs: str, stream: bool = False) -> Any:
    from mistralai.extra.run.context import RunContext

    async def go() -> Any:
        client = new_client()
        async with RunContext(model=REQUEST_MODEL) as run_ctx:
            run_ctx.register_func(get_weather)
            if not stream:
                return await client.beta.conversations.run_async(run_ctx=run_ctx, inputs=inputs)
            return [event async for event in await client.beta.conversations.run_stream_async(run_ctx, inputs)]

    return asyncio.run(go())


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_started_conversation_is_one_invoke_agent_span(new_client, spans, is_async):
    response = call(
        new_client,
        "start",
        is_async,
        inputs="hello there",
        model=REQUEST_MODEL,
        instructions="be brief",
        completion_args={"temperature": 0.3, "max_tokens": 40, "response_format": {"type": "json_object"}},
    )
    span = spans.one()
    a = span.attributes
    assert span.name == f"invoke_agent {REQUEST_MODEL}" and span.kind is SpanKind.CLIENT
    assert a["gen_ai.operation.name"] == "invoke_agent" and a["llm.request.type"] == "chat"
    assert a["gen_ai.conversation.id"] == response.conversation_id == CONVERSATION_ID
    assert a["gen_ai.request.temperature"] == 0.3 and a["gen_ai.request.max_tokens"] == 40
    assert a["gen_ai.output.type"] == "json"
    assert a["gen_ai.response.model"] == response.outputs[0].model == MODEL
    assert a["gen_ai.usage.input_tokens"] == response.usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == response.usage.completion_tokens
    assert a["gen_ai.prompt.0.role"] == "system" and a["gen_ai.prompt.0.content"] == "be brief"
    assert a["gen_ai.prompt.1.content"] == "hello there"
    assert a["gen_ai.completion.0.content"] == response.outputs[0].content


def test_an_append_is_named_after_who_answered_and_keeps_the_conversation(new_client, spans):
    inputs = [{"role": "user", "content": "and tomorrow?", "type": "message.input", "object": "entry"}]
    response = call(new_client, "append", conversation_id="conv_42", inputs=inputs)
    span = spans.one()
    a = span.attributes
    assert span.name == f"invoke_agent {MODEL}"  # the request names neither agent nor model
    assert a["gen_ai.conversation.id"] == "conv_42" and "gen_ai.request.model" not in a
    assert a["gen_ai.completion.0.content"] == response.outputs[0].content


def test_a_function_call_answer(new_client, spans):
    response = call(new_client, "append", conversation_id="conv_42", inputs="#tools and the weather?")
    calls = json.loads(spans.one().attributes["gen_ai.completion.0.tool_calls"])
    assert calls == [
        {
            "type": "tool_call",
            "id": response.outputs[0].tool_call_id,
            "name": "get_weather",
            "arguments": json.loads(TOOL_ARGUMENTS),
        }
    ]


def test_a_restart_and_a_function_result_input(new_client, spans):
    inputs = [{"type": "function.result", "tool_call_id": "call_weather_1", "result": "sunny", "object": "entry"}]
    call(new_client, "restart", conversation_id="conv_42", from_entry_id="msg_0", inputs=inputs)
    a = spans.one().attributes
    assert a["gen_ai.prompt.0.role"] == "tool" and a["gen_ai.prompt.0.tool_call_id"] == "call_weather_1"
    assert a["gen_ai.completion.0.content"] == "It is sunny in Paris."


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_streamed_conversation_has_its_events_text_and_server_tools(new_client, spans, is_async):
    events = call(new_client, "start_stream", is_async, inputs="#web stream me", agent_id=AGENT)
    span = spans.one()
    a = span.attributes
    assert span.name == f"invoke_agent {AGENT}" and a["gen_ai.request.stream"] is True
    assert a["respan.stream.chunk_count"] == len(events) and a["respan.stream.completed"] is True
    text = "".join(e.data.content for e in events if e.event == "message.output.delta")
    assert a["gen_ai.completion.0.content"] == text and text.startswith("Offline stand-in")
    done = next(e.data for e in events if e.event == "conversation.response.done")
    assert a["gen_ai.usage.output_tokens"] == done.usage.completion_tokens
    assert a["gen_ai.conversation.id"] == CONVERSATION_ID
    parts = json.loads(a["gen_ai.output.messages"])[0]["parts"]
    assert {"type": "server_tool_call", "name": "web_search", "arguments": {"query": "weather Paris"}} in parts


def test_a_streamed_function_call_joins_its_argument_fragments(new_client, spans):
    call(new_client, "append_stream", conversation_id="conv_42", inputs="#tools weather?")
    calls = json.loads(spans.one().attributes["gen_ai.completion.0.tool_calls"])
    assert calls[0]["name"] == "get_weather" and calls[0]["arguments"] == json.loads(TOOL_ARGUMENTS)


def test_an_error_event_fails_the_span_though_the_sdk_raises_nothing(new_client, spans):
    events = call(new_client, "start_stream", inputs="#stream-error x", model=REQUEST_MODEL)
    assert events[-1].event == "conversation.response.error"
    span = spans.one()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "conversation.response.error 3000"


def test_an_http_error_is_recorded_and_reraised_unchanged(new_client, uninstrumented, spans):
    with pytest.raises(Exception) as traced:
        call(new_client, "start", inputs="x #500", model=REQUEST_MODEL)
    with uninstrumented(), pytest.raises(Exception) as bare:
        call(new_client, "start", inputs="x #500", model=REQUEST_MODEL)
    assert type(traced.value) is type(bare.value) and str(traced.value) == str(bare.value)
    span = spans.one()
    assert span.status.status_code is StatusCode.ERROR and span.attributes["http.response.status_code"] == 500


def _tree(spans: Any) -> tuple[Any, list[Any]]:
    """The run's span, and every span under it."""
    finished = spans.finished()
    runs = [s for s in finished if s.kind is SpanKind.INTERNAL and s.name.startswith("invoke_agent")]
    assert len(runs) == 1, [s.name for s in finished]
    return runs[0], [s for s in finished if s is not runs[0]]


@pytest.mark.parametrize("stream", [False, True], ids=["run_async", "run_stream_async"])
def test_a_run_is_one_span_with_its_requests_and_tool_runs_as_children(new_client, spans, stream):
    result = run(new_client, "#tools what is the weather?", stream)
    result = result[-1] if stream else result
    assert result.output_as_text == "It is sunny in Paris."
    top, rest = _tree(spans)
    assert top.name == f"invoke_agent {REQUEST_MODEL}"
    assert top.attributes["gen_ai.conversation.id"] == result.conversation_id
    assert top.attributes["gen_ai.completion.0.content"] == "It is sunny in Paris."
    assert top.attributes["traceloop.span.kind"] == "agent"
    assert not any(k.startswith(("gen_ai.usage.", "llm.")) for k in top.attributes)  # usage: the requests' own
    # under a global provider the SDK adds plain ``conversation`` and ``validate_run`` spans in between
    every = {s.context.span_id: s for s in spans.exporter.get_finished_spans()}

    def under_top(span: Any) -> bool:
        while span.parent is not None and span.parent.span_id in every:
            span = every[span.parent.span_id]
            if span is top:
                return True
        return False

    requests = [s for s in rest if s.kind is SpanKind.CLIENT]
    assert len(requests) == 2 and all(under_top(s) for s in requests)
    tools = [s for s in rest if s.attributes.get("gen_ai.operation.name") == "execute_tool"]
    assert [s.name for s in tools] == [TOOL_SPAN]  # the SDK's own tool-run span is not there beside ours
    inner = [s for s in rest if s.name == "look up the weather"]
    assert under_top(tools[0]) and inner[0].parent.span_id == tools[0].context.span_id
    a = tools[0].attributes
    assert a["gen_ai.tool.name"] == "get_weather" and a["gen_ai.tool.call.id"] == "call_weather_1"
    assert json.loads(a["gen_ai.tool.call.arguments"]) == json.loads(TOOL_ARGUMENTS)
    assert a["gen_ai.tool.call.result"] == "sunny in Paris"
    assert {s.instrumentation_scope.name for s in rest} <= {OURS, "the app"}


def test_content_off_leaves_no_content_in_a_run(new_client, spans, instrument):
    instrument(capture_content=False)
    run(new_client, "#tools secret question")
    finished = spans.finished()
    assert len(finished) >= 4
    for span in finished:
        leaked = {k: v for k, v in span.attributes.items() if isinstance(v, str) and ("secret" in v or "Paris" in v)}
        assert leaked == {}, span.name
        assert not any(
            k.startswith(("gen_ai.prompt.", "gen_ai.completion.", "gen_ai.tool.call.a")) for k in span.attributes
        )


def test_a_failing_tool_fails_its_span_and_the_run_as_without_us(new_client, spans, uninstrumented):
    from mistralai.extra.run.context import RunContext

    def get_weather(city: str) -> str:
        """The weather.

        Args:
            city: the city
        """
        raise RuntimeError("the weather service is down")

    async def go() -> Any:
        async with RunContext(model=REQUEST_MODEL) as run_ctx:
            run_ctx.register_func(get_weather)
            return await new_client().beta.conversations.run_async(run_ctx=run_ctx, inputs="#tools weather?")

    with pytest.raises(Exception) as traced:
        asyncio.run(go())
    with uninstrumented(), pytest.raises(Exception) as bare:
        asyncio.run(go())
    assert type(traced.value) is type(bare.value) and str(traced.value) == str(bare.value)
    tool = [s for s in spans.finished() if s.name == TOOL_SPAN and s.instrumentation_scope.name == OURS]
    assert len(tool) == 1 and tool[0].status.status_code is StatusCode.ERROR
    assert tool[0].attributes["error.type"] == type(traced.value).__qualname__ == "RunException"
    top = [s for s in spans.finished() if s.kind is SpanKind.INTERNAL and s.name.startswith("invoke_agent")]
    assert top[0].status.status_code is StatusCode.ERROR


def test_the_sdk_behaves_as_without_us_and_uninstrument_restores_it(new_client, uninstrumented, spans):
    from mistralai.extra.run import context, tools

    kwargs = {"inputs": "hello there", "model": REQUEST_MODEL}
    traced = [
        call(new_client, "start", **kwargs),
        call(new_client, "start_stream", **kwargs),
        run(new_client, "#tools w"),
    ]
    owner = type(new_client().beta.conversations)
    methods = ("start", "start_stream_async", "append", "restart_stream", "run_async", "run_stream_async")
    shapes = [(inspect.signature(getattr(owner, m)), inspect.iscoroutinefunction(getattr(owner, m))) for m in methods]
    assert tools.trace is not trace  # ours while instrumented
    with uninstrumented():
        assert tools.trace is trace and not hasattr(context.create_function_result, "__wrapped__")
        bare = [
            call(new_client, "start", **kwargs),
            call(new_client, "start_stream", **kwargs),
            run(new_client, "#tools w"),
        ]
        assert shapes == [
            (inspect.signature(getattr(owner, m)), inspect.iscoroutinefunction(getattr(owner, m))) for m in methods
        ]
    assert type(traced[0]) is type(bare[0]) and traced[0].model_dump() == bare[0].model_dump()
    assert [type(e) for e in traced[1]] == [type(e) for e in bare[1]]
    assert [e.model_dump() for e in traced[1]] == [e.model_dump() for e in bare[1]]
    assert type(traced[2]) is type(bare[2]) and traced[2].output_as_text == bare[2].output_as_text


@pytest.mark.skipif(sys.version_info < (3, 10), reason="the SDK's tracing needs 3.10")
def test_the_sdks_own_tracing_never_doubles_a_conversation_or_a_tool_run(sdk, server):
    """With the SDK's own tracing on (a global provider on <= 2.4.9, MISTRAL_SDK_TELEMETRY=global later)."""
    seen = with_sdk_tracing(
        sdk,
        server,
        """
        import asyncio
        from mistralai.extra.run.context import RunContext

        def get_weather(city: str) -> str:
            '''The weather.

            Args:
                city: the city
            '''
            return "sunny"

        async def go():
            fresh = Mistral(api_key="k", server_url=client.sdk_configuration.server_url)  # one per event loop
            fresh.beta.conversations.start(inputs="hi", model="m")
            async with RunContext(model="m") as run_ctx:
                run_ctx.register_func(get_weather)
                await fresh.beta.conversations.run_async(run_ctx=run_ctx, inputs="#tools weather?")

        def operations():
            exporter.clear()
            asyncio.run(go())
            names = [s.attributes.get("gen_ai.operation.name") for s in exporter.get_finished_spans()]
            tools = [s.name for s in exporter.get_finished_spans() if "get_weather" in s.name]
            return {"agents": names.count("invoke_agent"), "tools": tools}

        bare = operations()
        instrumentor = MistralAIInstrumentor()
        instrumentor.instrument()
        print(json.dumps({"bare": bare, "traced": operations()}))
        """,
    )
    assert seen["bare"]["tools"], seen  # the control: the SDK makes a tool-run span of its own
    # ours: the start, the run, and the run's two requests; one tool-run span
    assert seen["traced"] == {"agents": 4, "tools": [TOOL_SPAN]}, seen


ANY = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.floats(allow_nan=True),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
KEYS = st.sampled_from(["inputs", "instructions", "completion_args", "tools", "agent_id", "conversation_id", "model"])
KINDS = st.sampled_from(
    ["message.output", "function.call", "tool.execution", "agent.handoff", "function.result", "message.input", None]
)
ENTRY = st.fixed_dictionaries(
    {"type": KINDS},
    optional={
        "content": ANY,
        "name": ANY,
        "arguments": ANY,
        "role": ANY,
        "tool_call_id": ANY,
        "model": ANY,
        "agent_id": ANY,
    },
)


@given(st.dictionaries(KEYS, ANY | st.lists(ENTRY, max_size=3), max_size=6), st.booleans())
def test_request_extraction_never_raises(kwargs, capture):
    out = conversations.request_attributes(kwargs, capture, False, 8)
    assert out["gen_ai.operation.name"] == "invoke_agent"


@given(
    st.fixed_dictionaries(
        {}, optional={"outputs": st.lists(ENTRY, max_size=4) | ANY, "usage": ANY, "conversation_id": ANY}
    ),
    st.booleans(),
)
def test_response_extraction_never_raises(response, capture):
    conversations.response_attributes(response, capture)
    conversations.run_response_attributes(response, capture)


EVENT_KINDS = st.sampled_from(
    [
        "message.output.delta",
        "function.call.delta",
        "tool.execution.started",
        "agent.handoff.started",
        "agent.handoff.done",
        "conversation.response.started",
        "conversation.response.done",
        "conversation.response.error",
        "other",
    ]
)
EVENT = st.fixed_dictionaries(
    {"type": EVENT_KINDS},
    optional={
        "content": ANY,
        "name": ANY,
        "arguments": ANY,
        "tool_call_id": ANY,
        "output_index": ANY,
        "usage": ANY,
        "conversation_id": ANY,
        "code": ANY,
        "next_agent_name": ANY,
        "previous_agent_name": ANY,
    },
)


@given(st.lists(EVENT | ANY, max_size=8), st.booleans())
def test_stream_accumulation_never_raises_and_counts_every_event(events, capture):
    stream = conversations.ConversationStream(capture, sizes=True)
    for i, event in enumerate(events):
        stream.add({"event": "x", "data": event} if i % 2 else event, i)
    assert len(stream.chunk_times) == len(stream.chunk_sizes or []) == len(events)
    stream.attributes()


@given(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=6))
def test_streamed_text_is_the_joined_deltas(pieces):
    stream = conversations.ConversationStream(True)
    for i, piece in enumerate(pieces):
        stream.add({"data": {"type": "message.output.delta", "content": piece, "model": MODEL}}, i)
    a = stream.attributes()
    assert a["gen_ai.completion.0.content"] == "".join(pieces) and a["gen_ai.response.model"] == MODEL


def test_the_terminal_viewer_shows_the_run_its_conversation_and_tool_runs(new_client, spans):
    from respan_auto.cli.traces import render_trace
    from respan_auto.export.local_store import span_record

    run(new_client, "#tools what is the weather?")
    tree = render_trace([span_record(s) for s in spans.exporter.get_finished_spans()])
    assert f"invoke_agent {REQUEST_MODEL}" in tree and f"conversation {CONVERSATION_ID}" in tree
    assert f"{TOOL_SPAN}" in tree and "tool get_weather" in tree
    assert 'arguments: {"city": "Paris"}' in tree and "result: sunny in Paris" in tree
    assert "completion: It is sunny in Paris." in tree


def test_a_run_stream_closed_early_ends_its_span_at_once(new_client, spans):
    from mistralai.extra.run.context import RunContext

    async def go() -> Any:
        async with RunContext(model=REQUEST_MODEL) as run_ctx:
            run_ctx.register_func(get_weather)
            stream = await new_client().beta.conversations.run_stream_async(run_ctx, "#tools the weather?")
            first = await stream.__anext__()
            await stream.aclose()
            return first

    first = asyncio.run(go())
    assert first is not None
    top, _ = _tree(spans)
    assert top.attributes["respan.stream.completed"] is False and top.end_time is not None


def test_tool_arguments_given_as_a_mapping_are_recorded_as_json(sdk, spans, instrument):
    import importlib

    from mistralai.extra.run.context import RunContext

    models = importlib.import_module(f"{sdk.root}.models")

    async def go() -> Any:
        from mistralai.extra.run import context

        async with RunContext(model=REQUEST_MODEL) as run_ctx:
            run_ctx.register_func(get_weather)
            call = models.FunctionCallEntry(tool_call_id="call_1", name="get_weather", arguments={"city": "Paris"})
            return await context.create_function_result(call, run_ctx._callable_tools["get_weather"])

    asyncio.run(go())
    (tool,) = [s for s in spans.finished() if s.name == TOOL_SPAN]
    assert json.loads(tool.attributes["gen_ai.tool.call.arguments"]) == {"city": "Paris"}
