"""The stateless Responses API (``responses.create``, mistralai 3.x), plain and streamed, sync and async, on the real
SDK against the loopback stand-in."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.trace import SpanKind, StatusCode

from respan_auto.instrumentation.mistralai import responses
from respan_auto.testing.mistral_server import MistralServer
from respan_auto.testing.responses_answers import RESPONSES_MODEL, TOOL_ARGUMENTS

MODEL = "mistral-medium-latest"
TOOL = {"type": "function", "name": "get_weather", "description": "the weather", "parameters": {"type": "object"}}


@pytest.fixture(scope="module")
def server() -> Iterator[MistralServer]:
    with MistralServer() as srv:
        yield srv


def create(new_client: Any, sdk: Any, is_async: bool = False, **kwargs: Any) -> Any:
    owner = getattr(new_client(), "responses", None)
    if owner is None:
        pytest.skip(f"mistralai {sdk.generation}.x has no Responses API")
    if not is_async:
        result = owner.create(**kwargs)
        return list(result) if kwargs.get("stream") else result

    async def go() -> Any:
        result = await owner.create_async(**kwargs)
        return [event async for event in result] if kwargs.get("stream") else result

    return asyncio.run(go())


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_response_is_one_chat_span(new_client, sdk, spans, is_async):
    response = create(
        new_client,
        sdk,
        is_async,
        model=MODEL,
        input="hello there",
        instructions="be brief",
        max_output_tokens=30,
        temperature=0.2,
        reasoning={"effort": "high"},
        text={"format": {"type": "json_object"}},
    )
    span = spans.one()
    a = span.attributes
    assert span.name == f"chat {MODEL}" and span.kind is SpanKind.CLIENT and a["llm.request.type"] == "chat"
    assert a["gen_ai.request.max_tokens"] == 30 and a["gen_ai.request.temperature"] == 0.2
    assert a["respan.request.reasoning_effort"] == "high" and a["gen_ai.output.type"] == "json"
    assert a["gen_ai.response.id"] == response.id and a["gen_ai.response.model"] == response.model == RESPONSES_MODEL
    assert a["gen_ai.usage.input_tokens"] == response.usage.input_tokens
    assert a["gen_ai.usage.output_tokens"] == response.usage.output_tokens
    assert a["gen_ai.usage.cache_read.input_tokens"] == response.usage.input_tokens_details.cached_tokens
    assert a["gen_ai.prompt.0.content"] == "be brief" and a["gen_ai.prompt.1.content"] == "hello there"
    assert a["gen_ai.completion.0.content"] == response.output[0].content[0].text


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_streamed_response_with_a_function_call(new_client, sdk, spans, is_async):
    given_input = [{"role": "user", "content": [{"type": "input_text", "text": "#tools the weather?"}]}]
    events = create(new_client, sdk, is_async, model=MODEL, input=given_input, tools=[TOOL], stream=True)
    span = spans.one()
    a = span.attributes
    assert a["gen_ai.request.stream"] is True and a["respan.stream.chunk_count"] == len(events)
    assert a["gen_ai.prompt.0.content"] == "#tools the weather?"
    assert json.loads(a["gen_ai.tool.definitions"]) == [TOOL]
    calls = json.loads(a["gen_ai.completion.0.tool_calls"])
    assert calls == [
        {"type": "tool_call", "id": "call_weather_1", "name": "get_weather", "arguments": json.loads(TOOL_ARGUMENTS)}
    ]
    assert a["gen_ai.usage.output_tokens"] == events[-1].data.response.usage.output_tokens


def test_a_function_call_output_is_a_tool_message(new_client, sdk, spans):
    given_input = [
        {"type": "function_call", "call_id": "call_weather_1", "name": "get_weather", "arguments": TOOL_ARGUMENTS},
        {"type": "function_call_output", "call_id": "call_weather_1", "output": "sunny"},
    ]
    create(new_client, sdk, model=MODEL, input=given_input)
    a = spans.one().attributes
    assert a["gen_ai.prompt.0.role"] == "assistant" and "get_weather" in a["gen_ai.prompt.0.tool_calls"]
    assert a["gen_ai.prompt.1.role"] == "tool" and a["gen_ai.prompt.1.tool_call_id"] == "call_weather_1"
    assert a["gen_ai.completion.0.content"] == "It is sunny in Paris."


def test_content_off_and_errors(new_client, sdk, spans, instrument, uninstrumented):
    instrument(capture_content=False)
    create(new_client, sdk, model=MODEL, input="a secret question", stream=True)
    a = spans.one().attributes
    assert not any("secret" in str(v) for v in a.values()) and a["gen_ai.usage.input_tokens"] == 3
    spans.clear()
    with pytest.raises(Exception) as traced:
        create(new_client, sdk, model=MODEL, input="x #500")
    with uninstrumented(), pytest.raises(Exception) as bare:
        create(new_client, sdk, model=MODEL, input="x #500")
    assert type(traced.value) is type(bare.value) and str(traced.value) == str(bare.value)
    span = spans.one()
    assert span.status.status_code is StatusCode.ERROR and span.attributes["http.response.status_code"] == 500


def test_the_sdk_behaves_as_without_us(new_client, sdk, spans, uninstrumented):
    kwargs = {"model": MODEL, "input": "same"}
    traced = [create(new_client, sdk, **kwargs), create(new_client, sdk, stream=True, **kwargs)]
    owner = type(new_client().responses)
    shapes = [
        (inspect.signature(getattr(owner, m)), inspect.iscoroutinefunction(getattr(owner, m)))
        for m in ("create", "create_async")
    ]
    with uninstrumented():
        bare = [create(new_client, sdk, **kwargs), create(new_client, sdk, stream=True, **kwargs)]
        assert shapes == [
            (inspect.signature(getattr(owner, m)), inspect.iscoroutinefunction(getattr(owner, m)))
            for m in ("create", "create_async")
        ]
    assert type(traced[0]) is type(bare[0]) and traced[0].model_dump() == bare[0].model_dump()
    assert [e.model_dump() for e in traced[1]] == [e.model_dump() for e in bare[1]]


ANY = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
ITEM = st.fixed_dictionaries(
    {"type": st.sampled_from(["message", "function_call", "function_call_output", "reasoning", None])},
    optional={
        "role": ANY,
        "content": ANY,
        "call_id": ANY,
        "name": ANY,
        "arguments": ANY,
        "output": ANY,
        "summary": ANY,
    },
)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "input",
                "instructions",
                "tools",
                "reasoning",
                "text",
                "conversation",
                "max_output_tokens",
                "model",
                "stream",
            ]
        ),
        ANY | st.lists(ITEM, max_size=3),
    ),
    st.booleans(),
)
def test_request_extraction_never_raises(kwargs, capture):
    assert responses.request_attributes(kwargs, capture, False, 8)["gen_ai.operation.name"] == "chat"


@given(
    st.dictionaries(
        st.sampled_from(["id", "model", "output", "usage", "status", "incomplete_details"]),
        ANY | st.lists(ITEM, max_size=3),
    ),
    st.booleans(),
)
def test_response_extraction_never_raises(response, capture):
    responses.response_attributes(response, capture)


@given(st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=6))
def test_a_stream_cut_before_its_end_keeps_the_text_so_far(pieces):
    stream = responses.ResponsesStream(True, sizes=True)
    for i, piece in enumerate(pieces):
        stream.add({"event": "e", "data": {"type": "response.output_text.delta", "delta": piece}}, i)
    assert stream.attributes()["gen_ai.completion.0.content"] == "".join(pieces)
    assert stream.chunk_sizes == [len(p) for p in pieces]
