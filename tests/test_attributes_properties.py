"""Property tests for the pure extraction and accumulation code: random shapes never raise."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from respan_auto.instrumentation.mistralai import attributes as attrs


class Unset:
    """Stands in for the SDK's sentinel: falsy, and matched by class name."""

    def __bool__(self) -> bool:
        return False


UNSET = Unset()


class Obj:
    """An attribute-style record, like the SDK's pydantic models."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


text = st.text(max_size=20)
missing = st.sampled_from([None, UNSET])
scalar = st.one_of(text, st.integers(), st.floats(allow_nan=False), st.booleans(), missing)
json_value = st.recursive(
    scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=8
)


def record(fields: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """A dict or an object with any subset of ``fields``."""
    optional = st.fixed_dictionaries({}, optional=fields)
    return st.one_of(optional, optional.map(lambda d: Obj(**d)))


content_chunk = st.one_of(
    record({"type": st.just("text"), "text": text | missing}),
    record(
        {"type": st.just("thinking"), "thinking": st.lists(record({"type": st.just("text"), "text": text}), max_size=2)}
    ),
    record({"type": st.just("image_url"), "image_url": text | record({"url": text})}),
    record({"type": st.sampled_from(["document_url", "input_audio", "weird"]), "data": json_value}),
    text,
    scalar,
)
content = st.one_of(text, missing, st.lists(content_chunk, max_size=4), json_value)
function_call = record({"name": text | missing, "arguments": text | json_value})
tool_call = record(
    {"id": text | missing, "index": st.integers(-2, 4) | missing | st.booleans(), "function": function_call | missing}
)
message = record(
    {
        "role": st.sampled_from(["system", "user", "assistant", "tool", "developer"]) | missing | st.integers(),
        "content": content,
        "tool_calls": st.lists(tool_call, max_size=3) | missing | text,
        "tool_call_id": text | missing,
        "name": text | missing,
    }
)
messages = st.one_of(st.lists(message, max_size=5), text, missing, st.integers())
usage = record(
    {k: st.integers(0, 10**6) | missing | text for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
)
choice_delta = record(
    {
        "index": st.integers(-1, 3) | missing,
        "delta": record(
            {"role": text | missing, "content": content, "tool_calls": st.lists(tool_call, max_size=2) | missing}
        )
        | missing,
        "finish_reason": st.sampled_from(["stop", "length", "tool_calls"]) | missing | st.integers(),
    }
)
chunk_data = record(
    {
        "id": text | missing,
        "model": text | missing,
        "usage": usage | missing,
        "choices": st.lists(choice_delta, max_size=3) | missing | text,
    }
)
stream_item = st.one_of(chunk_data.map(lambda d: Obj(data=d)), chunk_data, scalar)


def _valid_attribute_value(value: Any) -> bool:
    if isinstance(value, (str, bool, int, float)):
        return True
    return isinstance(value, (list, tuple)) and all(isinstance(v, (str, bool, int, float)) for v in value)


@settings(max_examples=300, deadline=None)
@given(
    messages=messages,
    tools=st.lists(json_value | record({"function": json_value}), max_size=2) | missing,
    params=st.dictionaries(
        st.sampled_from(
            [
                "temperature",
                "max_tokens",
                "top_p",
                "random_seed",
                "stop",
                "n",
                "frequency_penalty",
                "presence_penalty",
                "model",
            ]
        ),
        json_value,
    ),
    capture=st.booleans(),
)
def test_request_attributes_never_raise_and_are_valid(messages, tools, params, capture):
    result = attrs.request_attributes({**params, "messages": messages, "tools": tools}, capture)
    assert all(_valid_attribute_value(v) for v in result.values())
    if not capture:
        assert not [k for k in result if k.startswith("gen_ai.prompt") or k.endswith("messages")]
    for key in ("gen_ai.input.messages", "gen_ai.tool.definitions", "gen_ai.system_instructions"):
        if key in result:
            json.loads(result[key])


@settings(max_examples=300, deadline=None)
@given(
    response=record(
        {
            "id": text | missing,
            "model": text | missing,
            "usage": usage | missing,
            "choices": st.lists(
                record(
                    {
                        "index": st.integers(0, 3) | missing,
                        "message": message | missing,
                        "finish_reason": text | missing,
                    }
                ),
                max_size=3,
            )
            | missing,
        }
    ),
    capture=st.booleans(),
)
def test_response_attributes_never_raise_and_are_valid(response, capture):
    result = attrs.response_attributes(response, capture)
    assert all(_valid_attribute_value(v) for v in result.values())
    if "gen_ai.output.messages" in result:
        json.loads(result["gen_ai.output.messages"])


@settings(max_examples=300, deadline=None)
@given(items=st.lists(stream_item, max_size=12), capture=st.booleans())
def test_accumulator_never_raises_on_any_chunk_sequence(items, capture):
    accumulator = attrs.StreamAccumulator(capture, sizes=True)
    for i, item in enumerate(items):
        accumulator.add(item, i)
    result = accumulator.attributes()
    assert all(_valid_attribute_value(v) for v in result.values())
    assert accumulator.chunk_times == list(range(len(items)))
    assert len(accumulator.chunk_sizes) == len(items)
    assert all(isinstance(size, int) and size >= 0 for size in accumulator.chunk_sizes)


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.text(max_size=8), min_size=1, max_size=15),
    args=st.lists(st.text(max_size=6), max_size=6),
    trailing_usage=st.booleans(),
    tokens=st.tuples(st.integers(0, 1000), st.integers(0, 1000)),
)
def test_accumulated_output_is_the_concatenation_of_deltas(pieces, args, trailing_usage, tokens):
    """Well-formed streams: text, tool arguments and usage come out exactly as sent."""
    use = {"prompt_tokens": tokens[0], "completion_tokens": tokens[1], "total_tokens": sum(tokens)}
    chunks = []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        chunks.append(
            {
                "id": "x",
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": "stop" if last else None}],
                **({"usage": use} if last and not trailing_usage else {}),
            }
        )
    for j, fragment in enumerate(args):
        call = {"index": 0, "function": {"name": "f" if j == 0 else "", "arguments": fragment}}
        if j == 0:
            call["id"] = "call_1"
        chunks.append({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})
    if trailing_usage:
        chunks.append({"id": "x", "model": "m", "choices": [], "usage": use})

    accumulator = attrs.StreamAccumulator(True, sizes=True)
    for i, chunk in enumerate(chunks):
        accumulator.add(Obj(data=chunk), i)
    result = accumulator.attributes()
    assert result.get("gen_ai.completion.0.content", "") == "".join(pieces)
    assert accumulator.chunk_sizes[: len(pieces)] == [len(piece) for piece in pieces]
    assert sum(accumulator.chunk_sizes) == len("".join(pieces))
    assert result["gen_ai.usage.input_tokens"] == tokens[0]
    assert result["gen_ai.usage.output_tokens"] == tokens[1]
    assert result["llm.usage.total_tokens"] == sum(tokens)
    assert result["gen_ai.response.finish_reasons"] == ["stop"]
    if args:
        calls = json.loads(result["gen_ai.completion.0.tool_calls"])
        joined = "".join(args)
        try:
            expected = json.loads(joined)
        except ValueError:
            expected = joined
        assert calls == [{"type": "tool_call", "id": "call_1", "name": "f", "arguments": expected}]


sdk_chunk = st.builds(
    lambda fields, choices: Obj(data=Obj(choices=choices, **fields)),
    st.fixed_dictionaries(
        {"id": text | missing, "model": text | missing, "usage": st.sampled_from([None, UNSET, Obj(prompt_tokens=1)])}
    ),
    st.one_of(
        missing,
        st.lists(
            st.builds(
                lambda index, delta, reason: Obj(index=index, delta=delta, finish_reason=reason),
                st.integers(0, 2) | st.booleans() | missing,
                st.builds(
                    lambda content, tool_calls, role: Obj(content=content, tool_calls=tool_calls, role=role),
                    text | missing | st.lists(content_chunk, max_size=2),
                    missing | st.lists(tool_call, max_size=2),
                    missing | st.sampled_from(["assistant", ""]),
                )
                | missing,
                missing | st.sampled_from(["stop", "length"]),
            ),
            max_size=2,
        ),
    ),
)


@settings(max_examples=300, deadline=None)
@given(items=st.lists(sdk_chunk, max_size=12), capture=st.booleans())
def test_the_short_path_for_common_chunks_accumulates_exactly_as_the_general_one(items, capture):
    """SDK-shaped chunks (attribute access, Unset and None anywhere) give the same result by either path."""
    short, general = attrs.StreamAccumulator(capture, sizes=True), attrs.StreamAccumulator(capture, sizes=True)
    for i, item in enumerate(items):
        short.add(item, i)
        general.chunk_times.append(i)
        general.chunk_sizes.append(general._add_any(item))
    assert short.attributes() == general.attributes()
    assert short.chunk_sizes == general.chunk_sizes
    assert short.chunk_times == general.chunk_times


@settings(max_examples=200, deadline=None)
@given(value=json_value | content_chunk | message)
def test_to_plain_is_json_serialisable(value):
    json.dumps(attrs.to_plain(value))


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(0, 10**12),
    gaps=st.lists(st.integers(0, 10**10), max_size=50),
)
def test_stream_timing_summarises_exactly(start, gaps):
    times = []
    now = start
    for gap in gaps:
        now += gap
        times.append(now)
    result = attrs.stream_timing_attributes(start, times)
    assert result["respan.stream.chunk_count"] == len(times)
    if not times:
        assert set(result) == {"respan.stream.chunk_count"}
        return
    assert result["gen_ai.response.time_to_first_chunk"] == (times[0] - start) / 1e9
    between = gaps[1:]
    if between:
        assert abs(result["respan.stream.chunk_gap.mean"] - sum(between) / len(between) / 1e9) <= 1e-9
        assert result["respan.stream.chunk_gap.max"] == max(between) / 1e9
        assert result["respan.stream.chunk_gap.max"] >= result["respan.stream.chunk_gap.mean"] - 1e-9
    else:
        assert "respan.stream.chunk_gap.mean" not in result


@settings(max_examples=200, deadline=None)
@given(
    count=st.integers(0, 300),
    system=st.booleans(),
    limit=st.integers(1, 40),
)
def test_indexed_prompt_keys_are_bounded_and_keep_the_latest_turns(count, system, limit):
    messages = [
        {"role": "system" if system and i == 0 else ("user" if i % 2 else "assistant"), "content": f"m{i}"}
        for i in range(count)
    ]
    result = attrs.prompt_attributes(messages, limit)
    indexed = sorted({int(k.split(".")[2]) for k in result if k.startswith("gen_ai.prompt.")})
    assert indexed == list(range(min(count, limit)))  # numbered from 0, contiguous
    assert len(json.loads(result.get("gen_ai.input.messages", "[]"))) == count  # the full list stays
    if count > limit:
        assert result["respan.prompt.omitted_messages"] == count - limit
        assert result[f"gen_ai.prompt.{limit - 1}.content"] == f"m{count - 1}"  # the latest turn is there
        if system and limit > 1:
            assert result["gen_ai.prompt.0.role"] == "system"
    else:
        assert "respan.prompt.omitted_messages" not in result
        assert [result[f"gen_ai.prompt.{i}.content"] for i in indexed] == [m["content"] for m in messages]
