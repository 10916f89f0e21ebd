"""The stand-in's answers to the Conversations API: ``POST /v1/conversations`` (start),
``/v1/conversations/{id}`` (append) and ``/v1/conversations/{id}/restart``, as JSON or as SSE events.

The markers are read from the latest input entry: ``#tools`` asks the app to run ``get_weather`` (until a
``function.result`` comes back), ``#web`` has the server run ``web_search`` first, and ``#stream-error`` ends a
stream with ``conversation.response.error``.
"""

from __future__ import annotations

import json
from typing import Any

CONVERSATION_ID = "conv_standin_0001"
MODEL = "mistral-medium-2505"
TOOL_ARGUMENTS = '{"city": "Paris"}'
_CREATED = "2026-12-01T12:00:00Z"


def latest_input(body: dict[str, Any]) -> str:
    """The text that decides the answer: the inputs string, or the latest entry's content or result."""
    inputs = body.get("inputs")
    if isinstance(inputs, str):
        return inputs
    for entry in reversed(inputs if isinstance(inputs, list) else []):
        if isinstance(entry, dict):
            if entry.get("type") == "function.result":
                return "#function-result " + str(entry.get("result", ""))
            content = entry.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def _reply(text: str) -> str:
    if text.startswith("#function-result"):
        return "It is sunny in Paris."
    return f"Offline stand-in conversation reply to: {' '.join(text.split()[:12])}"


def _usage(text: str, reply: str) -> dict[str, int]:
    prompt, completion = len(text.split()), len(reply.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _entries(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The output entries of one turn, and the reply text (empty when the turn asks for a tool)."""
    text = latest_input(body)
    speaker = {"model": MODEL, "created_at": _CREATED, "completed_at": _CREATED}
    if body.get("agent_id"):
        speaker["agent_id"] = body["agent_id"]
    entries: list[dict[str, Any]] = []
    if "#web" in text:
        entries.append(
            {
                "object": "entry",
                "type": "tool.execution",
                "id": "tool_exec_1",
                "name": "web_search",
                "arguments": '{"query": "weather Paris"}',
                **speaker,
            }
        )
    if "#tools" in text:
        entries.append(
            {
                "object": "entry",
                "type": "function.call",
                "id": "fc_1",
                "tool_call_id": "call_weather_1",
                "name": "get_weather",
                "arguments": TOOL_ARGUMENTS,
                **speaker,
            }
        )
        return entries, ""
    reply = _reply(text)
    entries.append(
        {"object": "entry", "type": "message.output", "id": "msg_1", "role": "assistant", "content": reply, **speaker}
    )
    return entries, reply


def conversation_body(body: dict[str, Any], conversation_id: str | None) -> dict[str, Any]:
    entries, reply = _entries(body)
    return {
        "object": "conversation.response",
        "conversation_id": conversation_id or CONVERSATION_ID,
        "outputs": entries,
        "usage": _usage(latest_input(body), reply),
    }


def conversation_events(body: dict[str, Any], conversation_id: str | None) -> list[tuple[str, dict[str, Any]]]:
    """The (event type, data) pairs of a streamed turn, the reply split word by word."""
    text = latest_input(body)
    entries, reply = _entries(body)
    events: list[tuple[str, dict[str, Any]]] = [
        ("conversation.response.started", {"conversation_id": conversation_id or CONVERSATION_ID})
    ]
    for index, entry in enumerate(entries):
        common = {"id": entry["id"], "output_index": index, "model": MODEL, "created_at": _CREATED}
        if entry["type"] == "tool.execution":
            events.append(
                ("tool.execution.started", {**common, "name": entry["name"], "arguments": entry["arguments"]})
            )
            events.append(("tool.execution.done", {**common, "name": entry["name"]}))
        elif entry["type"] == "function.call":
            half = len(TOOL_ARGUMENTS) // 2
            for piece in (TOOL_ARGUMENTS[:half], TOOL_ARGUMENTS[half:]):
                events.append(
                    (
                        "function.call.delta",
                        {**common, "name": "get_weather", "tool_call_id": "call_weather_1", "arguments": piece},
                    )
                )
        else:
            words = reply.split(" ")
            for position, word in enumerate(words):
                piece = word + (" " if position < len(words) - 1 else "")
                events.append(
                    ("message.output.delta", {**common, "content_index": 0, "role": "assistant", "content": piece})
                )
    if "#stream-error" in text:
        events.append(("conversation.response.error", {"message": "stand-in failure", "code": 3000}))
        return events
    events.append(("conversation.response.done", {"usage": _usage(text, reply)}))
    return events


def conversation_frames(body: dict[str, Any], conversation_id: str | None) -> list[bytes]:
    return [
        f"event: {kind}\ndata: {json.dumps({'type': kind, **data, 'created_at': _CREATED})}\n\n".encode()
        for kind, data in conversation_events(body, conversation_id)
    ]
