"""Pure extraction for the stateless Responses API (``responses.create``, 3.x): a ``chat`` in another shape.

Its input is a string or a list of items (messages whose content is ``input_text`` parts, ``function_call`` and
``function_call_output`` items); its answer is a list of output items (``message`` with ``output_text`` parts,
``function_call``, ``reasoning``) and a usage in ``input_tokens``/``output_tokens`` with their details. Both are read
into the chat shapes the rest of the extraction writes. Streams send ``response.output_text.delta`` and
``response.function_call_arguments.delta`` events, and end with ``response.completed`` (or ``.failed``,
``.incomplete``) carrying the whole response.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from respan_auto import semconv as sc
from respan_auto.instrumentation.mistralai import attributes as attrs
from respan_auto.instrumentation.mistralai.attributes import Attributes, Choice, field_of, plain_text, type_of

_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})


def _content(content: Any) -> Any:
    """Content parts with ``input_text``/``output_text`` read as text; anything else as the chat extraction reads it."""
    if not isinstance(content, (list, tuple)):
        return content
    return [{"type": "text", "text": field_of(p, "text")} if type_of(p) in _TEXT_PARTS else p for p in content]


def _item_message(item: Any) -> dict[str, Any] | None:
    kind = type_of(item)
    if kind == "function_call_output":
        return {"role": "tool", "content": field_of(item, "output"), "tool_call_id": field_of(item, "call_id")}
    if kind == "function_call":
        call = {
            "id": field_of(item, "call_id"),
            "function": {"name": field_of(item, "name"), "arguments": field_of(item, "arguments")},
        }
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    role = field_of(item, "role")
    if role is None and kind not in (None, "message"):
        return None
    role = plain_text(role) if role is not None else "user"
    return {"role": "system" if role == "developer" else role, "content": _content(field_of(item, "content"))}


def input_messages(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    return attrs.instructed_messages(kwargs.get("instructions"), kwargs.get("input"), _item_message)


def request_attributes(kwargs: Mapping[str, Any], capture: bool, stream: bool, max_indexed: int) -> Attributes:
    """The parameters under their chat names (``max_output_tokens`` is ``max_tokens``), and the input as messages."""
    reasoning = attrs.to_plain(kwargs.get("reasoning"))
    text = attrs.to_plain(kwargs.get("text"))
    merged: dict[str, Any] = dict(kwargs)
    merged["max_tokens"] = kwargs.get("max_output_tokens")
    if isinstance(reasoning, dict):
        merged["reasoning_effort"] = reasoning.get("effort")
    if isinstance(text, dict):
        merged["response_format"] = text.get("format")
    out = attrs.common_request_attributes(merged, sc.OPERATION_CHAT, sc.OPERATION_CHAT, kwargs.get("stream") is True)
    conversation = attrs.to_plain(kwargs.get("conversation"))
    conversation = conversation.get("id") if isinstance(conversation, dict) else conversation
    if isinstance(conversation, str) and conversation:
        out[sc.GEN_AI_CONVERSATION_ID] = conversation
    if capture:
        out.update(attrs.guarded("prompt extraction", attrs.prompt_attributes, input_messages(kwargs), max_indexed))
        out.update(attrs.guarded("tool definitions", attrs.tool_attributes, kwargs.get("tools")))
    return out


def _usage(usage: Any) -> Attributes:
    """The Responses usage under the chat usage's names, then read as chat usage is."""
    if usage is None:
        return {}
    renamed = {
        "prompt_tokens": field_of(usage, "input_tokens"),
        "completion_tokens": field_of(usage, "output_tokens"),
        "total_tokens": field_of(usage, "total_tokens"),
        "prompt_tokens_details": {"cached_tokens": field_of(field_of(usage, "input_tokens_details"), "cached_tokens")},
        "completion_tokens_details": {
            "reasoning_tokens": field_of(field_of(usage, "output_tokens_details"), "reasoning_tokens")
        },
    }
    return attrs.usage_attributes(renamed)


def _read_output(choice: Choice, output: Any) -> None:
    for index, item in enumerate(output if isinstance(output, (list, tuple)) else ()):
        kind = type_of(item)
        if kind == "function_call":
            call = {
                "index": index,
                "id": field_of(item, "call_id"),
                "function": {"name": field_of(item, "name"), "arguments": field_of(item, "arguments")},
            }
            choice.add_tool_calls([call])
        elif kind == "reasoning":
            summary = field_of(item, "summary")
            texts = [field_of(s, "text") for s in summary] if isinstance(summary, (list, tuple)) else []
            choice.reasoning.extend(t for t in texts if isinstance(t, str))
        elif kind == "message":
            content = _content(field_of(item, "content"))
            if content is not None:
                choice.add_content(content)


def _finish_reason(response: Any) -> str | None:
    """Only what the API said: an incomplete answer's reason, or a failed one's status."""
    status = field_of(response, "status")
    status = plain_text(status) if status is not None else None
    if status == "incomplete":
        reason = field_of(field_of(response, "incomplete_details"), "reason")
        return plain_text(reason) if reason is not None else status
    return status if status == "failed" else None


def response_attributes(response: Any, capture: bool) -> Attributes:
    out = attrs.guarded("response identity", attrs.response_identity, response)
    out.update(attrs.guarded("response usage", _usage, field_of(response, "usage")))
    out.update(attrs.guarded("response output", _output_attributes, response, capture))
    return out


def _output_attributes(response: Any, capture: bool) -> Attributes:
    choice = Choice(finish_reason=_finish_reason(response))
    _read_output(choice, field_of(response, "output"))
    return attrs.completion_attributes([choice], capture)


class ResponsesStream(attrs.EventAccumulator):
    """Responses events: the deltas as they come, and the whole response the last event carries."""

    __slots__ = ("choice", "failure", "response")

    def __init__(self, capture_content: bool, sizes: bool = False) -> None:
        super().__init__(capture_content, sizes)
        self.choice = Choice()
        self.response: Any = None
        self.failure: str | None = None

    def read(self, data: Any) -> int:
        kind = type_of(data)
        if kind == "response.output_text.delta":
            delta = field_of(data, "delta")
            if isinstance(delta, str):
                self.choice.text.append(delta)
                return len(delta)
        elif kind == "response.function_call_arguments.delta":
            index = field_of(data, "output_index")
            call = {"index": index if isinstance(index, int) else 0, "function": {"arguments": field_of(data, "delta")}}
            self.choice.add_tool_calls([call])
        elif kind == "response.output_item.added":
            item = field_of(data, "item")
            index = field_of(data, "output_index")
            if type_of(item) == "function_call":
                call = {
                    "index": index if isinstance(index, int) else 0,
                    "id": field_of(item, "call_id"),
                    "function": {"name": field_of(item, "name")},
                }
                self.choice.add_tool_calls([call])
        elif kind in ("response.created", "response.completed", "response.incomplete", "response.failed"):
            self.response = field_of(data, "response")
            if kind == "response.failed":
                self.failure = kind
        return 0

    def attributes(self) -> Attributes:
        final = self.response
        if final is not None and field_of(final, "output"):
            return response_attributes(final, self.capture_content)
        out = attrs.guarded("stream identity", attrs.response_identity, final) if final is not None else {}
        out.update(attrs.guarded("stream output", attrs.completion_attributes, [self.choice], self.capture_content))
        return out
