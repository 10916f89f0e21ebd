"""The stand-in's answers to ``POST /v1/responses`` (the stateless Responses API): JSON, or SSE events ending with
``response.completed``. ``#tools`` in the latest input asks for ``get_weather``; a ``function_call_output`` gets
the weather."""

from __future__ import annotations

import json
from typing import Any

RESPONSES_MODEL = "mistral-medium-2505"
TOOL_ARGUMENTS = '{"city": "Paris"}'


def latest_input(body: dict[str, Any]) -> str:
    given = body.get("input")
    if isinstance(given, str):
        return given
    for item in reversed(given if isinstance(given, list) else []):
        if isinstance(item, dict):
            if item.get("type") == "function_call_output":
                return "#function-output"
            content = item.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def _output(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    text = latest_input(body)
    if "#tools" in text:
        call = {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_weather_1",
            "name": "get_weather",
            "arguments": TOOL_ARGUMENTS,
            "status": "completed",
        }
        return [call], ""
    reply = "It is sunny in Paris." if text == "#function-output" else f"Offline stand-in response to: {text}"
    message = {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": reply, "annotations": []}],
    }
    return [message], reply


def response_body(body: dict[str, Any], output: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    items, reply = _output(body)
    prompt = len(latest_input(body).split())
    completion = len(reply.split())
    return {
        "id": "resp_standin_0001",
        "object": "response",
        "created_at": 1764201600,
        "model": RESPONSES_MODEL,
        "status": "completed",
        "output": items if output is None else output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        },
    }


def response_frames(body: dict[str, Any]) -> list[bytes]:
    items, reply = _output(body)
    events: list[tuple[str, dict[str, Any]]] = [("response.created", {"response": response_body(body, output=[])})]
    for index, item in enumerate(items):
        if item["type"] == "function_call":
            events.append(("response.output_item.added", {"output_index": index, "item": {**item, "arguments": ""}}))
            half = len(TOOL_ARGUMENTS) // 2
            events += [
                ("response.function_call_arguments.delta", {"output_index": index, "item_id": item["id"], "delta": d})
                for d in (TOOL_ARGUMENTS[:half], TOOL_ARGUMENTS[half:])
            ]
        else:
            words = reply.split(" ")
            events += [
                (
                    "response.output_text.delta",
                    {
                        "output_index": index,
                        "item_id": item["id"],
                        "content_index": 0,
                        "delta": w + (" " if i < len(words) - 1 else ""),
                        "logprobs": [],
                    },
                )
                for i, w in enumerate(words)
            ]
    events.append(("response.completed", {"response": response_body(body)}))
    return [
        f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': n, **data})}\n\n".encode()
        for n, (kind, data) in enumerate(events)
    ]
