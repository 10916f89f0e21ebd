"""Pure extraction for the Conversations API (``beta.conversations``): entries in, entries and events out.

A conversation's request and answer are lists of *entries*, not chat messages: ``message.input`` and
``message.output`` (a role and content), ``function.call`` (the model asks the app to run a tool),
``function.result`` (the app's answer), ``tool.execution`` (a tool the server ran: web search, code) and
``agent.handoff``. They are read here into the chat shapes the rest of the extraction writes, so a conversation's
span has the same prompt and completion keys as a chat call's. Streams send the same entries as events
(``message.output.delta``, ``function.call.delta``, ...), between ``conversation.response.started`` and ``.done``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from respan_auto import semconv as sc
from respan_auto.instrumentation.mistralai import attributes as attrs
from respan_auto.instrumentation.mistralai.attributes import Attributes, Choice, field_of, plain_text, type_of

# completion_args keys read like a chat call's keyword arguments
_COMPLETION_ARGS = (
    "temperature",
    "max_tokens",
    "top_p",
    "random_seed",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "response_format",
)


def _entry_message(entry: Any) -> dict[str, Any] | None:
    """One input entry as the chat message it stands for, or None for entries that are not messages."""
    kind = type_of(entry)
    if kind == "function.result":
        return {"role": "tool", "content": field_of(entry, "result"), "tool_call_id": field_of(entry, "tool_call_id")}
    if kind == "function.call":
        call = {"id": field_of(entry, "tool_call_id"), "function": _function(entry)}
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    role = field_of(entry, "role")
    if role is None and kind not in (None, "message.input", "message.output"):
        return None
    return {"role": plain_text(role) if role is not None else "user", "content": field_of(entry, "content")}


def _function(entry: Any) -> dict[str, Any]:
    return {"name": field_of(entry, "name"), "arguments": field_of(entry, "arguments")}


def input_messages(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's instructions and input entries, as chat messages."""
    return attrs.instructed_messages(kwargs.get("instructions"), kwargs.get("inputs"), _entry_message)


def request_attributes(kwargs: Mapping[str, Any], capture: bool, stream: bool, max_indexed: int) -> Attributes:
    """``start``/``append``/``restart`` (and their stream forms): an ``invoke_agent`` on an agent or a model."""
    parameters = attrs.to_plain(kwargs.get("completion_args"))
    merged = {k: parameters[k] for k in _COMPLETION_ARGS if k in parameters} if isinstance(parameters, dict) else {}
    merged.update(kwargs)
    out = attrs.common_request_attributes(merged, sc.OPERATION_INVOKE_AGENT, sc.OPERATION_CHAT, stream)
    for key, attribute in (("agent_id", sc.GEN_AI_AGENT_ID), ("conversation_id", sc.GEN_AI_CONVERSATION_ID)):
        value = kwargs.get(key)
        if isinstance(value, str) and value:
            out[attribute] = value
    if capture:
        out.update(attrs.guarded("prompt extraction", attrs.prompt_attributes, input_messages(kwargs), max_indexed))
        out.update(attrs.guarded("tool definitions", attrs.tool_attributes, kwargs.get("tools")))
    return out


class _Outputs:
    """What a conversation answered, entry by entry or event by event: one assistant turn, and who answered."""

    __slots__ = ("agent_id", "choice", "conversation_id", "model", "usage")

    def __init__(self) -> None:
        self.choice = Choice()
        self.conversation_id: Any = None
        self.model: Any = None
        self.agent_id: Any = None
        self.usage: Any = None

    def speaker(self, item: Any) -> None:
        if self.model is None:
            self.model = field_of(item, "model")
        agent = field_of(item, "agent_id")
        if agent:
            self.agent_id = agent

    def message(self, item: Any) -> str:
        self.speaker(item)
        content = field_of(item, "content")
        return self.choice.add_content(content) if content is not None else ""

    def function_call(self, index: int, item: Any) -> None:
        self.speaker(item)
        self.choice.add_tool_calls(
            [{"index": index, "id": field_of(item, "tool_call_id"), "function": _function(item)}]
        )

    def server_tool(self, item: Any) -> None:
        self.speaker(item)
        name = field_of(item, "name")
        part = {"type": "server_tool_call", "name": plain_text(name) if name is not None else None}
        part["arguments"] = attrs.parse_arguments(field_of(item, "arguments"))
        self.choice.other_parts.append(part)

    def handoff(self, item: Any) -> None:
        part = {
            "type": "agent_handoff",
            "from": field_of(item, "previous_agent_name"),
            "to": field_of(item, "next_agent_name"),
        }
        self.choice.other_parts.append({k: v for k, v in part.items() if v is not None})

    def attributes(self, capture: bool) -> Attributes:
        out: Attributes = {}
        for value, key in ((self.conversation_id, sc.GEN_AI_CONVERSATION_ID), (self.agent_id, sc.GEN_AI_AGENT_ID)):
            if isinstance(value, str) and value:
                out[key] = value
        if self.model:
            out[sc.GEN_AI_RESPONSE_MODEL] = plain_text(self.model)
        out.update(attrs.guarded("response usage", attrs.usage_attributes, self.usage))
        out.update(attrs.guarded("response output", attrs.completion_attributes, [self.choice], capture))
        return out


def _read_entries(outputs: _Outputs, entries: Any) -> None:
    for index, entry in enumerate(entries if isinstance(entries, (list, tuple)) else ()):
        kind = type_of(entry)
        if kind == "function.call":
            outputs.function_call(index, entry)
        elif kind == "tool.execution":
            outputs.server_tool(entry)
        elif kind == "agent.handoff":
            outputs.handoff(entry)
        else:
            outputs.message(entry)


def response_attributes(response: Any, capture: bool) -> Attributes:
    """A ``ConversationResponse``: the conversation's id, who answered, usage, and the entries as one turn."""
    outputs = _Outputs()
    outputs.conversation_id = field_of(response, "conversation_id")
    outputs.usage = field_of(response, "usage")
    _read_entries(outputs, field_of(response, "outputs"))
    return outputs.attributes(capture)


class ConversationStream(attrs.EventAccumulator):
    """Conversation events. ``failure`` is set when the server ends the stream with ``conversation.response.error``:
    the call failed, though the SDK raises nothing."""

    __slots__ = ("failure", "outputs")

    def __init__(self, capture_content: bool, sizes: bool = False) -> None:
        super().__init__(capture_content, sizes)
        self.outputs = _Outputs()
        self.failure: str | None = None

    def read(self, data: Any) -> int:
        kind = type_of(data)
        outputs = self.outputs
        if kind == "message.output.delta":
            return len(outputs.message(data))
        index = field_of(data, "output_index")
        if kind == "function.call.delta":
            outputs.function_call(index if isinstance(index, int) else 0, data)
        elif kind == "tool.execution.started":
            outputs.server_tool(data)
        elif kind == "agent.handoff.started":
            outputs.handoff(data)
        elif kind == "agent.handoff.done":
            next_agent = field_of(data, "next_agent_name")
            parts = [p for p in outputs.choice.other_parts if p.get("type") == "agent_handoff"]
            if parts and next_agent is not None:
                parts[-1]["to"] = next_agent
        elif kind == "conversation.response.started":
            outputs.conversation_id = field_of(data, "conversation_id")
        elif kind == "conversation.response.done":
            outputs.usage = field_of(data, "usage")
        elif kind == "conversation.response.error":
            code = field_of(data, "code")
            self.failure = f"conversation.response.error {code}" if code is not None else "conversation.response.error"
        return 0

    def attributes(self) -> Attributes:
        return self.outputs.attributes(self.capture_content)


def run_request_attributes(kwargs: Mapping[str, Any], capture: bool, stream: bool, max_indexed: int) -> Attributes:
    """A run helper's whole run (``run_async``, ``run_stream_async``): the agent or model of its ``RunContext``.

    The run's requests and tool runs are its children and carry the usage, so the run's span has neither usage nor
    ``llm.request.type``: Respan types it as an agent, and no token is counted twice.
    """
    run = kwargs.get("run_ctx")
    out: Attributes = {
        sc.GEN_AI_OPERATION_NAME: sc.OPERATION_INVOKE_AGENT,
        sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_MISTRAL,
        sc.TRACELOOP_SPAN_KIND: "agent",
    }
    for field, key in (
        ("model", sc.GEN_AI_REQUEST_MODEL),
        ("agent_id", sc.GEN_AI_AGENT_ID),
        ("conversation_id", sc.GEN_AI_CONVERSATION_ID),
    ):
        value = getattr(run, field, None)
        if isinstance(value, str) and value:
            out[key] = value
    if stream:
        out[sc.GEN_AI_REQUEST_STREAM] = True
    if capture:
        out.update(attrs.guarded("prompt extraction", attrs.prompt_attributes, input_messages(kwargs), max_indexed))
    return out


def run_response_attributes(result: Any, capture: bool) -> Attributes:
    """A ``RunResult``: the conversation, and what the model finally said; usage stays on the requests' spans."""
    outputs = _Outputs()
    outputs.conversation_id = field_of(result, "conversation_id")
    entries = field_of(result, "output_entries")
    final = [e for e in entries if type_of(e) == "message.output"][-1:] if isinstance(entries, list) else []
    _read_entries(outputs, final)
    return outputs.attributes(capture)


class RunStream(attrs.EventAccumulator):
    """The events of ``run_stream_async``: the last item is the ``RunResult``, read as ``run_response_attributes``."""

    __slots__ = ("result",)

    def __init__(self, capture_content: bool, sizes: bool = False) -> None:
        super().__init__(capture_content, sizes)
        self.result: Any = None

    def read(self, data: Any) -> int:
        if field_of(data, "output_entries") is not None:
            self.result = data
        return 0

    def attributes(self) -> Attributes:
        return run_response_attributes(self.result, self.capture_content) if self.result is not None else {}
