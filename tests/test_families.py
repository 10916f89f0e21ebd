"""The families beside chat (FIM, embeddings, agents), sync and async, plain and streamed, on the real SDK against
the loopback stand-in."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Iterator
from typing import Any

import pytest
import wrapt
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.trace import SpanKind, StatusCode

from respan_auto.instrumentation.mistralai import families
from respan_auto.testing.mistral_server import EMBEDDING_DIMENSION, RESPONSE_MODEL, MistralServer

FIM_MODEL = "codestral-latest"
EMBED_MODEL = "mistral-embed"
PROMPT = "def fibonacci(n):\n    "
SUFFIX = "\n    return result"


@pytest.fixture(scope="module")
def server() -> Iterator[MistralServer]:
    """A stand-in of this module's own: the session's records only chat requests, which other modules read."""
    with MistralServer() as srv:
        yield srv


def run(new_client: Any, is_async: bool, method: str, **kwargs: Any) -> Any:
    """``client.<family>.<method>(**kwargs)``, or its ``_async`` twin run to completion."""
    family, name = method.split(".")
    client = new_client()  # kept: some SDK releases close their HTTP client once the SDK object is collected
    owner = getattr(client, family)
    if is_async:
        return asyncio.run(getattr(owner, name + "_async")(**kwargs))
    return getattr(owner, name)(**kwargs)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_fim_call_is_one_text_completion_span(new_client, spans, server, is_async):
    response = run(
        new_client,
        is_async,
        "fim.complete",
        model=FIM_MODEL,
        prompt=PROMPT,
        suffix=SUFFIX,
        temperature=0.1,
        stop=["\n\n"],
    )
    span = spans.one()
    a = span.attributes
    assert span.name == f"text_completion {FIM_MODEL}" and span.kind is SpanKind.CLIENT
    assert a["gen_ai.operation.name"] == "text_completion" and a["llm.request.type"] == "completion"
    assert a["gen_ai.provider.name"] == "mistral_ai" and a["gen_ai.request.model"] == FIM_MODEL
    assert a["gen_ai.request.temperature"] == 0.1 and a["gen_ai.request.stop_sequences"] == ("\n\n",)
    assert a["gen_ai.response.model"] == RESPONSE_MODEL == response.model and a["gen_ai.response.id"] == response.id
    assert a["gen_ai.usage.input_tokens"] == response.usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == response.usage.completion_tokens
    assert a["gen_ai.prompt.0.role"] == "user" and a["gen_ai.prompt.0.content"] == PROMPT
    assert a["respan.fim.suffix"] == SUFFIX
    assert a["gen_ai.completion.0.content"] == response.choices[0].message.content
    assert json.loads(a["gen_ai.input.messages"]) == [{"role": "user", "parts": [{"type": "text", "content": PROMPT}]}]
    assert a["server.port"] == server.server_address[1]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_streamed_fim_call_has_its_chunks_and_text(new_client, spans, is_async):
    async def consume_async() -> list[Any]:
        stream = await new_client().fim.stream_async(model=FIM_MODEL, prompt=PROMPT + "#chunks=4")
        return [event async for event in stream]

    if is_async:
        events = asyncio.run(consume_async())
    else:
        with new_client().fim.stream(model=FIM_MODEL, prompt=PROMPT + "#chunks=4") as stream:
            events = list(stream)
    text = "".join(e.data.choices[0].delta.content or "" for e in events if e.data.choices)
    span = spans.one()
    a = span.attributes
    assert span.name == f"text_completion {FIM_MODEL}" and a["gen_ai.request.stream"] is True
    assert a["respan.stream.chunk_count"] == len(events) and a["respan.stream.completed"] is True
    assert a["gen_ai.completion.0.content"] == text != ""
    assert a["gen_ai.response.time_to_first_chunk"] > 0


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_an_embeddings_call_records_usage_count_and_dimension_never_the_vectors(new_client, spans, is_async):
    texts = ["the first text", "a second one"]
    response = run(new_client, is_async, "embeddings.create", model=EMBED_MODEL, inputs=texts)
    span = spans.one()
    a = span.attributes
    assert span.name == f"embeddings {EMBED_MODEL}" and span.kind is SpanKind.CLIENT
    assert a["gen_ai.operation.name"] == "embeddings" and a["llm.request.type"] == "embedding"
    assert a["gen_ai.response.model"] == response.model and a["gen_ai.response.id"] == response.id
    assert a["gen_ai.usage.input_tokens"] == response.usage.prompt_tokens == 6
    assert a["respan.embeddings.count"] == len(response.data) == 2
    assert a["gen_ai.embeddings.dimension.count"] == EMBEDDING_DIMENSION
    assert [a["gen_ai.prompt.0.content"], a["gen_ai.prompt.1.content"]] == texts
    assert "gen_ai.completion.0.content" not in a and "gen_ai.output.messages" not in a
    vector_text = str(response.data[0].embedding[1])
    assert not any(vector_text in str(value) for value in a.values())


AGENT = "ag:3996db2b:20251127:support:0a1b2c3d"


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_an_agent_call_is_one_invoke_agent_span_named_after_the_agent(new_client, spans, is_async):
    messages = [{"role": "user", "content": "where is my order?"}]
    response = run(new_client, is_async, "agents.complete", agent_id=AGENT, messages=messages, max_tokens=50)
    span = spans.one()
    a = span.attributes
    assert span.name == f"invoke_agent {AGENT}" and span.kind is SpanKind.CLIENT
    assert a["gen_ai.operation.name"] == "invoke_agent" and a["gen_ai.agent.id"] == AGENT
    assert a["llm.request.type"] == "chat" and "gen_ai.request.model" not in a
    assert a["gen_ai.request.max_tokens"] == 50
    assert a["gen_ai.response.model"] == response.model == RESPONSE_MODEL
    assert a["gen_ai.usage.output_tokens"] == response.usage.completion_tokens
    assert a["gen_ai.prompt.0.content"] == "where is my order?"
    assert a["gen_ai.completion.0.content"] == response.choices[0].message.content


def test_a_streamed_agent_call_with_a_tool_call(client, spans):
    messages = [{"role": "user", "content": "weather? #tools"}]
    with client.agents.stream(agent_id=AGENT, messages=messages) as stream:
        events = list(stream)
    span = spans.one()
    a = span.attributes
    assert span.name == f"invoke_agent {AGENT}" and a["respan.stream.chunk_count"] == len(events)
    assert json.loads(a["gen_ai.completion.0.tool_calls"])[0]["name"] == "get_weather"


@pytest.fixture
def azure(sdk, server, instrument):
    """A fresh ``MistralAzure`` client per call (its async client is bound to the loop it first ran on)."""
    if sdk.generation == 1:
        from mistralai_azure import MistralAzure

        return lambda: MistralAzure(azure_api_key="k", azure_endpoint=server.url)
    from mistralai.azure.client import MistralAzure

    return lambda: MistralAzure(api_key="k", server_url=server.url)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_the_azure_client_is_traced_like_the_main_one(azure, spans, server, is_async):
    kwargs = {"model": "mistral-small-azure", "messages": [{"role": "user", "content": "hello from Azure"}]}
    response = run(azure, is_async, "chat.complete", **kwargs)
    client = azure()
    with client.chat.stream(**kwargs) as stream:
        events = list(stream)
    plain, streamed = spans.finished()
    for span in (plain, streamed):
        assert span.name == "chat mistral-small-azure" and span.kind is SpanKind.CLIENT
        assert span.attributes["server.address"] == "127.0.0.1"
        assert span.attributes["server.port"] == server.server_address[1]
        assert span.attributes["gen_ai.prompt.0.content"] == "hello from Azure"
    assert plain.attributes["gen_ai.completion.0.content"] == response.choices[0].message.content
    assert streamed.attributes["respan.stream.chunk_count"] == len(events)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_the_google_cloud_client_is_traced_like_the_main_one(sdk, server, instrument, spans, is_async):
    """2.x and 3.x (1.x's ``MistralGoogleCloud`` takes no server URL: it cannot be pointed at a loopback address)."""
    if sdk.generation == 1:
        pytest.skip("mistralai 1.x's Google Cloud client always calls googleapis.com")
    from mistralai.gcp.client import MistralGCP

    def gcp() -> Any:
        return MistralGCP(project_id="p", region="r", access_token="t", server_url=server.url)

    chat = run(gcp, is_async, "chat.complete", model="mistral-small-2503", messages=[{"role": "user", "content": "hi"}])
    fim = run(gcp, is_async, "fim.complete", model="codestral-2501", prompt=PROMPT)
    chat_span, fim_span = spans.finished()
    assert chat_span.name == "chat mistral-small-2503" and fim_span.name == "text_completion codestral-2501"
    assert chat_span.attributes["gen_ai.completion.0.content"] == chat.choices[0].message.content
    assert fim_span.attributes["gen_ai.prompt.0.content"] == PROMPT
    assert fim_span.attributes["gen_ai.usage.output_tokens"] == fim.usage.completion_tokens
    assert {s.attributes["server.address"] for s in (chat_span, fim_span)} == {"127.0.0.1"}


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_moderation_records_the_flagged_categories_and_scores(new_client, spans, is_async):
    texts = ["a kind word", "a threat #flag"]
    response = run(new_client, is_async, "classifiers.moderate", model="mistral-moderation-latest", inputs=texts)
    span = spans.one()
    a = span.attributes
    assert span.name == "moderation mistral-moderation-latest" and a["gen_ai.operation.name"] == "moderation"
    assert a["gen_ai.response.model"] == response.model and a["gen_ai.response.id"] == response.id
    assert a["respan.moderation.flagged"] is True
    assert a["respan.moderation.flagged_categories"] == ("violence_and_threats",)
    scores = json.loads(a["respan.moderation.category_scores"])
    assert [s["violence_and_threats"] for s in scores] == [
        r.category_scores["violence_and_threats"] for r in response.results
    ]
    assert [a["gen_ai.prompt.0.content"], a["gen_ai.prompt.1.content"]] == texts


def test_chat_moderation_and_classification_read_conversations(client, spans, sdk):
    conversation = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "how can I help?"}]
    client.classifiers.moderate_chat(model="mistral-moderation-latest", inputs=conversation)
    key = "inputs" if sdk.generation == 1 else "input"
    response = client.classifiers.classify_chat(model="ft:classifier:intent", **{key: [{"messages": conversation}]})
    moderated, classified = spans.finished()
    assert moderated.attributes["respan.moderation.flagged"] is False
    assert moderated.attributes["respan.moderation.flagged_categories"] == ()
    assert [moderated.attributes[f"gen_ai.prompt.{i}.role"] for i in range(2)] == ["user", "assistant"]
    assert classified.name == "classification ft:classifier:intent"
    results = json.loads(classified.attributes["respan.classification.results"])
    assert results[0]["intent"]["scores"] == response.results[0]["intent"].scores


def test_classify_records_the_scores_per_input(client, spans):
    response = client.classifiers.classify(model="ft:classifier:intent", inputs=["refund please", "buy more"])
    a = spans.one().attributes
    assert a["gen_ai.operation.name"] == "classification"
    results = json.loads(a["respan.classification.results"])
    assert len(results) == len(response.results) == 2 and results[1]["intent"]["scores"]["support"] == 0.75


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_ocr_records_pages_and_size_never_the_document_or_its_text(new_client, spans, is_async):
    document = {"type": "document_url", "document_url": "https://example.com/invoice.pdf"}
    response = run(new_client, is_async, "ocr.process", model="mistral-ocr-latest", document=document)
    span = spans.one()
    a = span.attributes
    assert span.name == "ocr mistral-ocr-latest" and a["gen_ai.operation.name"] == "ocr"
    assert a["respan.ocr.document.type"] == "document_url"
    assert a["respan.ocr.document.url"] == "https://example.com/invoice.pdf"
    assert a["respan.ocr.pages"] == len(response.pages) == 2
    assert a["respan.ocr.pages_processed"] == response.usage_info.pages_processed
    assert a["respan.ocr.document.size_bytes"] == 48213
    assert not any("# Page" in str(value) for value in a.values())


def test_an_inline_document_is_never_copied(client, spans):
    data_url = "data:application/pdf;base64," + "JVBERi0xLjQK" * 50
    client.ocr.process(model="mistral-ocr-latest", document={"type": "document_url", "document_url": data_url})
    a = spans.one().attributes
    assert a["respan.ocr.document.type"] == "document_url" and "respan.ocr.document.url" not in a
    assert not any("JVBERi0" in str(value) for value in a.values())


def test_the_terminal_viewer_shows_each_family_sensibly(client, spans):
    from respan_auto.cli.traces import render_trace
    from respan_auto.export.local_store import span_record

    client.fim.complete(model=FIM_MODEL, prompt=PROMPT, suffix=SUFFIX)
    client.embeddings.create(model=EMBED_MODEL, inputs=["one", "two"])
    client.classifiers.moderate(model="mistral-moderation-latest", inputs=["a threat #flag"])
    client.ocr.process(model="mistral-ocr-latest", document={"type": "document_url", "document_url": "https://x/a.pdf"})
    fim, embeddings, moderation, ocr = (render_trace([span_record(s)]) for s in spans.finished())
    assert "prompt: def fibonacci(n):" in fim and "suffix: return result" in fim
    assert "· 2 vectors of 8 dimensions" in embeddings and "input: two" in embeddings
    assert "flagged violence_and_threats" in moderation and "prompt: a threat #flag" in moderation
    assert "2 pages from 48213 bytes" in ocr


def test_embeddings_parameters_and_one_string(client, spans):
    client.embeddings.create(model=EMBED_MODEL, inputs="just one", output_dimension=4)
    a = spans.one().attributes
    assert a["gen_ai.embeddings.dimension.count"] == 4 and a["respan.embeddings.count"] == 1
    assert a["gen_ai.prompt.0.content"] == "just one" and "gen_ai.prompt.1.content" not in a


FAILING = {
    "classifiers.moderate": {"model": "mistral-moderation-latest", "inputs": ["x #500"]},
    "fim.complete": {"model": FIM_MODEL, "prompt": "x #500"},
    "embeddings.create": {"model": EMBED_MODEL, "inputs": ["x #500"]},
    "agents.complete": {"agent_id": AGENT, "messages": [{"role": "user", "content": "x #500"}]},
}


@pytest.mark.parametrize("method", list(FAILING))
def test_an_error_is_recorded_and_reraised_unchanged(new_client, uninstrumented, spans, method):
    kwargs = FAILING[method]
    with pytest.raises(Exception) as traced:
        run(new_client, False, method, **kwargs)
    with uninstrumented(), pytest.raises(Exception) as bare:
        run(new_client, False, method, **kwargs)
    assert type(traced.value) is type(bare.value) and str(traced.value) == str(bare.value)
    span = spans.one()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["http.response.status_code"] == 500
    assert span.attributes["error.type"] == type(traced.value).__qualname__


SECRET_CALLS = {
    "classifiers.classify": {"model": "ft:classifier:intent", "inputs": [PROMPT]},
    "classifiers.moderate_chat": {"model": "m", "inputs": [{"role": "user", "content": PROMPT + SUFFIX}]},
    "ocr.process": {"model": "m", "document": {"type": "document_url", "document_url": "https://x/fibonacci.pdf"}},
    "fim.complete": {"model": FIM_MODEL, "prompt": PROMPT, "suffix": SUFFIX},
    "embeddings.create": {"model": EMBED_MODEL, "inputs": [PROMPT]},
    "agents.complete": {"agent_id": AGENT, "messages": [{"role": "user", "content": PROMPT + SUFFIX}]},
}


@pytest.mark.parametrize("method", list(SECRET_CALLS))
def test_content_off_records_no_prompt_suffix_or_completion(new_client, spans, instrument, method):
    instrument(capture_content=False)
    run(new_client, False, method, **SECRET_CALLS[method])
    a = spans.one().attributes
    assert a["gen_ai.operation.name"] and a["gen_ai.response.model"]
    leaked = [k for k, v in a.items() if isinstance(v, str) and ("fibonacci" in v or "return result" in v)]
    assert leaked == []
    assert not any(k.startswith(("gen_ai.prompt.", "gen_ai.completion.", "respan.fim.")) for k in a)


def test_the_sdk_behaves_as_without_us(new_client, uninstrumented, spans):
    client = new_client()
    traced = run(new_client, False, "embeddings.create", model=EMBED_MODEL, inputs=["same"])
    signatures = [
        inspect.signature(m)
        for m in (client.fim.complete, client.fim.stream_async, client.embeddings.create, client.agents.stream)
    ]
    patched = [vars(type(client.fim))["complete"], vars(type(client.embeddings))["create_async"]]
    assert all(isinstance(method, wrapt.FunctionWrapper) for method in patched)
    with uninstrumented():
        restored = [vars(type(client.fim))["complete"], vars(type(client.embeddings))["create_async"]]
        assert not any(isinstance(method, wrapt.FunctionWrapper) for method in restored)
        bare = run(new_client, False, "embeddings.create", model=EMBED_MODEL, inputs=["same"])
        bare_client = new_client()
        methods = (
            bare_client.fim.complete,
            bare_client.fim.stream_async,
            bare_client.embeddings.create,
            bare_client.agents.stream,
        )
        assert [inspect.signature(m) for m in methods] == signatures
    assert type(traced) is type(bare) and traced.model_dump() == bare.model_dump()
    assert inspect.iscoroutinefunction(client.embeddings.create_async)


_values = st.one_of(
    st.none(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8), st.lists(st.text(max_size=4))
)
_shapes = st.recursive(
    _values,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "data",
                    "usage",
                    "embedding",
                    "id",
                    "model",
                    "prompt_tokens",
                    "results",
                    "categories",
                    "category_scores",
                    "pages",
                    "usage_info",
                    "pages_processed",
                    "doc_size_bytes",
                    "role",
                    "content",
                    "messages",
                    "type",
                    "document_url",
                    "image_url",
                    "url",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
)
_REQUEST_READERS = [family.request for family in families.FAMILIES]
_RESPONSE_READERS = [family.response for family in families.FAMILIES]


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "model",
                "inputs",
                "input",
                "prompt",
                "suffix",
                "encoding_format",
                "output_dimension",
                "stop",
                "agent_id",
                "messages",
                "document",
                "tools",
            ]
        ),
        _shapes,
    )
)
def test_request_extraction_never_raises(kwargs):
    for capture in (False, True):
        for extract in _REQUEST_READERS:
            attributes = extract(kwargs, capture, False, 16)
            assert attributes["gen_ai.provider.name"] == "mistral_ai"
            if not capture:
                content = ("gen_ai.prompt.", "gen_ai.input.messages", "respan.fim.", "respan.ocr.document.url")
                assert not any(k.startswith(content) for k in attributes)


@given(_shapes)
def test_response_extraction_never_raises(response):
    for extract in _RESPONSE_READERS:
        assert isinstance(extract(response, True), dict)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_parse_and_parse_stream_are_one_chat_span_each_with_json_output(new_client, spans, is_async):
    import pydantic

    class Weather(pydantic.BaseModel):
        city: str
        celsius: int

    messages = [{"role": "user", "content": "the weather in Paris, as JSON"}]
    chat = new_client().chat

    async def both_async() -> tuple[Any, list[Any]]:
        parsed = await chat.parse_async(response_format=Weather, model="mistral-small-latest", messages=messages)
        stream = await chat.parse_stream_async(response_format=Weather, model="mistral-small-latest", messages=messages)
        return parsed, [event async for event in stream]

    if is_async:
        parsed, events = asyncio.run(both_async())
    else:
        parsed = chat.parse(response_format=Weather, model="mistral-small-latest", messages=messages)
        events = list(chat.parse_stream(response_format=Weather, model="mistral-small-latest", messages=messages))
    assert parsed.choices[0].message.parsed == Weather(city="stand-in", celsius=1)
    plain, streamed = spans.finished()  # one span each: parse's inner complete / stream is not a second call
    for span in (plain, streamed):
        a = span.attributes
        assert span.name == "chat mistral-small-latest" and a["gen_ai.output.type"] == "json"
        assert json.loads(a["gen_ai.completion.0.content"]) == {"city": "stand-in", "celsius": 1}
    assert streamed.attributes["respan.stream.chunk_count"] == len(events)


def test_inside_a_frameworks_span_for_the_same_call_usage_is_counted_once(client, spans):
    """A framework (pydantic-ai with its instrumentation on) opens a ``chat`` span around the SDK call and reports
    the usage itself: ours keeps it under ``respan.usage.*`` (tests/test_join.py runs the real pydantic-ai)."""
    from opentelemetry import trace

    framework = trace.get_tracer("a framework")
    with framework.start_as_current_span("chat m", attributes={"gen_ai.operation.name": "chat"}):
        response = client.chat.complete(model="m", messages=[{"role": "user", "content": "hi"}])
    with framework.start_as_current_span("agent run", attributes={"gen_ai.operation.name": "invoke_agent"}):
        client.chat.complete(model="m", messages=[{"role": "user", "content": "hi"}])
    inside, beside = [s for s in spans.finished() if s.instrumentation_scope.name.startswith("respan_auto")]
    a = inside.attributes
    assert a["respan.usage.counted_above"] is True
    assert a["respan.usage.input_tokens"] == response.usage.prompt_tokens
    assert a["respan.usage.total_tokens"] == response.usage.total_tokens
    assert not any(k.startswith(("gen_ai.usage.", "llm.usage.")) for k in a)
    assert "respan.usage.counted_above" not in beside.attributes  # an agent's span is not the model call's
    assert beside.attributes["gen_ai.usage.input_tokens"] == response.usage.prompt_tokens


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("method", list(SECRET_CALLS))
def test_each_family_returns_the_same_values_and_types_as_without_us(
    new_client, uninstrumented, spans, method, is_async
):
    traced = run(new_client, is_async, method, **SECRET_CALLS[method])
    with uninstrumented():
        bare = run(new_client, is_async, method, **SECRET_CALLS[method])
    assert type(traced) is type(bare) and traced.model_dump() == bare.model_dump()
    assert len(spans.finished()) == 1  # the traced call's only
