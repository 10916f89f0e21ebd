"""Every key we emit is either in the installed semantic conventions or in our documented own list."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics
from opentelemetry.semconv.attributes import error_attributes, http_attributes, server_attributes

from respan_auto import semconv as sc
from tests.conftest import user

MODEL = "mistral-small-latest"


def conventional() -> set[str]:
    modules = (gen_ai_attributes, gen_ai_metrics, error_attributes, http_attributes, server_attributes)
    return {v for m in modules for k, v in vars(m).items() if k.isupper() and isinstance(v, str)}


# keys that the installed conventions may predate (our floor's release has none of these)
NEWER_THAN_THE_FLOOR = {
    sc.GEN_AI_REQUEST_STREAM,
    sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
    sc.GEN_AI_TOOL_DEFINITIONS,
    sc.METRIC_TIME_TO_FIRST_CHUNK,
    sc.METRIC_TIME_PER_OUTPUT_CHUNK,
}


def unexplained(keys: set[str]) -> set[str]:
    known = conventional() | NEWER_THAN_THE_FLOOR
    return {k for k in keys if k not in known and k not in sc.OWN_KEYS and not k.startswith(sc.OWN_PREFIXES)}


def test_semconv_module_uses_the_package_spelling():
    known = conventional()
    assert sc.GEN_AI_REQUEST_CHOICE_COUNT == "gen_ai.request.choice.count"
    for name in ("GEN_AI_OPERATION_NAME", "GEN_AI_PROVIDER_NAME", "GEN_AI_REQUEST_MODEL", "GEN_AI_INPUT_MESSAGES"):
        assert getattr(sc, name) == getattr(gen_ai_attributes, name)
        assert getattr(sc, name) in known
    for key in NEWER_THAN_THE_FLOOR:
        name = next(n for n, v in vars(sc).items() if v == key and n.isupper())
        package_value = getattr(gen_ai_attributes, name, None) or getattr(
            gen_ai_metrics, name.replace("METRIC_", "GEN_AI_CLIENT_OPERATION_"), None
        )
        assert package_value in (None, key)  # where the package has it, ours is its spelling


@pytest.mark.parametrize("chunk_events", [False, True])
def test_every_emitted_key_is_conventional_or_documented(
    client, new_client, spans, instrument, chunk_events, monkeypatch
):
    instrument(chunk_events=chunk_events)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    client.chat.complete(
        model=MODEL,
        messages=[{"role": "system", "content": "be brief"}, *user("hi")],
        temperature=0.1,
        max_tokens=20,
        top_p=0.9,
        random_seed=1,
        n=1,
        stop=["\n"],
        presence_penalty=0.1,
        frequency_penalty=0.1,
        tools=tools,
    )
    client.chat.complete(model=MODEL, messages=user("weather? #tools"), tools=tools)
    for _ in client.chat.stream(model=MODEL, messages=user("story #usage-chunk")):
        pass
    with pytest.raises(Exception):  # noqa: B017 - the SDK's error class differs by generation
        client.chat.complete(model=MODEL, messages=user("x #500"))

    async def run():
        stream = await new_client().chat.stream_async(model=MODEL, messages=user("split #split-args"))
        async for _ in stream:
            pass

    asyncio.run(run())
    finished = spans.finished()
    assert len(finished) == 5
    keys = {k for s in finished for k in s.attributes}
    assert sc.GEN_AI_REQUEST_CHOICE_COUNT in keys and "gen_ai.request.choice_count" not in keys
    assert not unexplained(keys)
    event_names = {e.name for s in finished for e in s.events}
    assert event_names <= {"exception", sc.RESPAN_STREAM_CHUNK_EVENT}


def test_the_check_would_catch_a_misspelt_key():
    assert unexplained({"gen_ai.request.choice_count", "gen_ai.request.model"}) == {"gen_ai.request.choice_count"}
