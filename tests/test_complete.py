"""Non-streamed calls, sync and async, against the loopback stand-in."""

from __future__ import annotations

import asyncio
import json

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind, StatusCode

from respan_auto.testing.mistral_server import RESPONSE_MODEL
from tests.conftest import user

MODEL = "mistral-small-latest"


def complete(new_client, is_async: bool, **kwargs):
    client = new_client()
    if is_async:
        return asyncio.run(client.chat.complete_async(**kwargs))
    return client.chat.complete(**kwargs)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_one_client_span_with_semconv_and_respan_keys(new_client, spans, server, is_async):
    response = complete(new_client, is_async, model=MODEL, messages=user("hello there"))

    span = spans.one()
    a = span.attributes
    assert span.name == f"chat {MODEL}"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "mistral_ai"
    assert a["gen_ai.system"] == "mistral_ai"
    assert a["llm.request.type"] == "chat"
    assert a["gen_ai.request.model"] == MODEL
    assert a["gen_ai.response.model"] == RESPONSE_MODEL == response.model
    assert a["gen_ai.response.id"] == response.id
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    usage = response.usage
    assert a["gen_ai.usage.input_tokens"] == a["gen_ai.usage.prompt_tokens"] == usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == a["gen_ai.usage.completion_tokens"] == usage.completion_tokens
    assert a["llm.usage.total_tokens"] == usage.total_tokens
    assert a["server.address"] == "127.0.0.1"
    assert a["server.port"] == server.server_address[1]
    assert a["gen_ai.prompt.0.role"] == "user"
    assert a["gen_ai.prompt.0.content"] == "hello there"
    assert a["gen_ai.completion.0.role"] == "assistant"
    assert a["gen_ai.completion.0.content"] == response.choices[0].message.content
    assert json.loads(a["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "hello there"}]}
    ]
    assert json.loads(a["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": response.choices[0].message.content}],
            "finish_reason": "stop",
        }
    ]


def test_request_parameters_appear_only_when_passed(client, spans):
    client.chat.complete(model=MODEL, messages=user("no params"))
    bare = spans.one().attributes
    assert not [k for k in bare if k.startswith("gen_ai.request.") and k != "gen_ai.request.model"]

    spans.clear()
    client.chat.complete(
        model=MODEL,
        messages=user("all params"),
        temperature=0.0,
        max_tokens=64,
        top_p=0.5,
        random_seed=7,
        stop=["END", "STOP"],
        frequency_penalty=0.25,
        presence_penalty=0.125,
        n=2,
    )
    a = spans.one().attributes
    assert a["gen_ai.request.temperature"] == 0.0
    assert a["gen_ai.request.max_tokens"] == 64
    assert a["gen_ai.request.top_p"] == 0.5
    assert a["gen_ai.request.seed"] == 7
    assert a["gen_ai.request.stop_sequences"] == ("END", "STOP")
    assert a["gen_ai.request.frequency_penalty"] == 0.25
    assert a["gen_ai.request.presence_penalty"] == 0.125
    assert a["gen_ai.request.choice.count"] == 2
    assert a["gen_ai.response.finish_reasons"] == ("stop", "stop")
    assert a["gen_ai.completion.1.role"] == "assistant"

    spans.clear()
    client.chat.complete(model=MODEL, messages=user("one stop"), stop="END")
    assert spans.one().attributes["gen_ai.request.stop_sequences"] == ("END",)


def test_sdk_message_objects_list_content_and_tools(client, spans, sdk):
    m = sdk.models
    tool = m.Tool(
        function=m.Function(
            name="get_weather",
            description="Weather for a city",
            parameters={"type": "object", "properties": {"city": {"type": "string"}}},
        )
    )
    messages = [
        m.SystemMessage(content="Be brief."),
        m.UserMessage(
            content=[
                m.TextChunk(text="What is in this picture? #tools"),
                m.ImageURLChunk(image_url="https://example.invalid/cat.png"),
            ]
        ),
        m.AssistantMessage(
            content="",
            tool_calls=[
                m.ToolCall(id="call_1", function=m.FunctionCall(name="get_weather", arguments='{"city": "Lyon"}'))
            ],
        ),
        m.ToolMessage(content="18 degrees", tool_call_id="call_1", name="get_weather"),
        {"role": "user", "content": [{"type": "text", "text": "And in Paris? #tools"}]},
    ]
    response = client.chat.complete(model=MODEL, messages=messages, tools=[tool])
    a = spans.one().attributes

    assert a["gen_ai.prompt.0.role"] == "system"
    assert a["gen_ai.prompt.0.content"] == "Be brief."
    assert json.loads(a["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be brief."}]
    assert a["gen_ai.prompt.1.role"] == "user"
    assert json.loads(a["gen_ai.prompt.1.content"]) == [
        {"type": "text", "content": "What is in this picture? #tools"},
        {"type": "uri", "modality": "image", "uri": "https://example.invalid/cat.png"},
    ]
    assert json.loads(a["gen_ai.prompt.2.tool_calls"]) == [
        {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Lyon"}}
    ]
    assert a["gen_ai.prompt.3.role"] == "tool"
    assert a["gen_ai.prompt.3.tool_call_id"] == "call_1"
    assert a["gen_ai.prompt.4.content"] == "And in Paris? #tools"
    semconv_in = json.loads(a["gen_ai.input.messages"])
    assert [msg["role"] for msg in semconv_in] == ["system", "user", "assistant", "tool", "user"]
    assert semconv_in[3]["parts"] == [{"type": "tool_call_response", "response": "18 degrees", "id": "call_1"}]
    assert semconv_in[3]["name"] == "get_weather"

    definitions = json.loads(a["gen_ai.tool.definitions"])
    assert definitions[0]["name"] == "get_weather"
    assert definitions[0]["type"] == "function"
    assert definitions[0]["parameters"]["properties"]["city"] == {"type": "string"}
    assert json.loads(a["llm.request.functions"])[0]["description"] == "Weather for a city"

    call = response.choices[0].message.tool_calls[0]
    recorded = json.loads(a["gen_ai.completion.0.tool_calls"])
    assert recorded == [
        {"type": "tool_call", "id": call.id, "name": "get_weather", "arguments": json.loads(call.function.arguments)}
    ]
    assert a["gen_ai.response.finish_reasons"] == ("tool_calls",)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("status", [500, 401])
def test_http_error_is_recorded_and_reraised_unchanged(new_client, uninstrumented, spans, is_async, status):
    with uninstrumented(), pytest.raises(Exception) as plain:
        complete(new_client, is_async, model=MODEL, messages=user(f"#{status}"))
    with pytest.raises(Exception) as traced:
        complete(new_client, is_async, model=MODEL, messages=user(f"#{status}"))

    assert type(traced.value) is type(plain.value)
    assert str(traced.value) == str(plain.value)
    assert traced.value.status_code == status
    span = spans.one()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == type(traced.value).__qualname__
    assert span.attributes["http.response.status_code"] == status
    events = [e for e in span.events if e.name == "exception"]
    assert len(events) == 1
    assert events[0].attributes["exception.message"] == str(traced.value)


def test_suppression_key_is_honoured(client, spans):
    with suppress_instrumentation():
        client.chat.complete(model=MODEL, messages=user("quiet"))
    assert spans.finished() == []
    client.chat.complete(model=MODEL, messages=user("loud"))
    assert len(spans.finished()) == 1


def test_content_capture_off_records_no_content(client, spans, instrument):
    instrument(capture_content=False)
    secret = "the-prompt-text-4711"
    client.chat.complete(model=MODEL, messages=user(f"{secret} #tools"), tools=[_weather_tool()])
    stream = client.chat.stream(model=MODEL, messages=user(f"{secret} streamed"))
    for _ in stream:
        pass
    finished = spans.finished()
    assert len(finished) == 2
    for span in finished:
        blob = json.dumps({k: str(v) for k, v in span.attributes.items()})
        blob += json.dumps([{k: str(v) for k, v in e.attributes.items()} for e in span.events])
        assert secret not in blob
        assert "Offline stand-in" not in blob
        assert "Paris" not in blob
        assert not [k for k in span.attributes if k.startswith(("gen_ai.prompt.", "gen_ai.completion."))]
        for key in (
            "gen_ai.input.messages",
            "gen_ai.output.messages",
            "gen_ai.tool.definitions",
            "llm.request.functions",
        ):
            assert key not in span.attributes
    # what is not content is still there
    assert finished[0].attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert finished[1].attributes["respan.stream.chunk_count"] > 1


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RESPAN_TRACE_CONTENT", "false"),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "false"),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "NO_CONTENT"),
    ],
)
def test_content_switch_is_read_when_instrument_runs(client, spans, instrument, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    instrument()
    client.chat.complete(model=MODEL, messages=user("hidden"))
    assert "gen_ai.prompt.0.content" not in spans.one().attributes

    monkeypatch.delenv(variable)
    instrument()
    spans.clear()
    client.chat.complete(model=MODEL, messages=user("shown"))
    assert spans.one().attributes["gen_ai.prompt.0.content"] == "shown"


def test_parse_gives_one_span(client, spans, sdk):
    pydantic = pytest.importorskip("pydantic")

    class Answer(pydantic.BaseModel):
        text: str

    chat = client.chat
    if not hasattr(chat, "parse"):
        pytest.skip("this mistralai has no parse")
    try:
        chat.parse(response_format=Answer, model=MODEL, messages=user("parse me"))
    except Exception:  # noqa: BLE001 - the stand-in's text is not JSON; only the span count matters
        pass
    assert len(spans.finished()) == 1
    assert spans.finished()[0].name == f"chat {MODEL}"


def _weather_tool():
    return {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}},
    }
