"""Pure extraction: Mistral requests, responses and stream chunks to span attributes.

Nothing here touches OpenTelemetry or the network, so every function can be fed arbitrary
shapes by tests. Inputs may be SDK model objects or plain dicts, and any field may be
missing, ``None`` or the SDK's ``Unset`` sentinel (which is falsy).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from typing import Any
from urllib.parse import urlsplit

from respan_auto import semconv as sc
from respan_auto._guard import report_once

Attributes = dict[str, Any]

_DEFAULT_PORTS = {"https": 443, "http": 80}

# request keyword -> attribute and converter, for the scalar parameters recorded only when the caller passed them
# (the converter is given whatever was passed; what it cannot convert is left out)
_REQUEST_SCALARS: tuple[tuple[str, str, Callable[[Any], float | int]], ...] = (
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE, float),
    ("max_tokens", sc.GEN_AI_REQUEST_MAX_TOKENS, int),
    ("top_p", sc.GEN_AI_REQUEST_TOP_P, float),
    ("random_seed", sc.GEN_AI_REQUEST_SEED, int),
    ("frequency_penalty", sc.GEN_AI_REQUEST_FREQUENCY_PENALTY, float),
    ("presence_penalty", sc.GEN_AI_REQUEST_PRESENCE_PENALTY, float),
    ("n", sc.GEN_AI_REQUEST_CHOICE_COUNT, int),
)


_PLAIN, _MAPPING, _UNSET = 0, 1, 2
_kinds: dict[type, int] = {}
_FAST = frozenset({str, int, float, bool, list, tuple})


def _kind(cls: type, obj: Any) -> int:
    """Whether a type is a mapping or the SDK's ``Unset``, cached per type: this runs per chunk."""
    kind = _kinds.get(cls)
    if kind is None:
        kind = _UNSET if cls.__name__ == "Unset" else _MAPPING if isinstance(obj, Mapping) else _PLAIN
        if len(_kinds) < 4096:
            _kinds[cls] = kind
    return kind


def is_missing(value: Any) -> bool:
    """True for ``None`` and the SDK's ``Unset`` sentinel (matched by name: we never import the SDK)."""
    return value is None or _kind(type(value), value) == _UNSET


def field_of(obj: Any, name: str) -> Any:
    """Read ``name`` from a dict or an object; missing values come back as ``None``."""
    cls = type(obj)
    if cls is dict or (cls not in _FAST and _kind(cls, obj) == _MAPPING):
        value = obj.get(name)
    else:
        value = getattr(obj, name, None)
    if value is None or type(value) in _FAST:
        return value
    return None if _kind(type(value), value) == _UNSET else value


class _DictView:
    """Attribute access over a dict, so that one hot path reads dicts and SDK models alike."""

    __slots__ = ("_data",)

    def __init__(self, data: dict) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        return self._data.get(name)

    def __bool__(self) -> bool:
        return True


def to_plain(obj: Any, _depth: int = 0) -> Any:
    """Turn SDK models, dicts and lists into JSON-ready values, dropping unset fields."""
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    if _depth > 20:
        return f"<{type(obj).__name__}>"
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v, _depth + 1) for k, v in obj.items() if not is_missing(v)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v, _depth + 1) for v in obj if not is_missing(v)]
    fields = getattr(type(obj), "model_fields", None)
    if isinstance(fields, Mapping):
        out = {}
        for name in fields:
            value = getattr(obj, name, None)
            if not is_missing(value):
                out[name] = to_plain(value, _depth + 1)
        return out
    if hasattr(obj, "value") and type(obj).__name__ != "Unset":  # enums
        return to_plain(obj.value, _depth + 1)
    return f"<{type(obj).__name__}>"


def guarded(where: str, extract: Callable[..., Attributes], *args: Any) -> Attributes:
    """Run one extraction step; a failure costs only that step's attributes, never the call."""
    try:
        return extract(*args)
    except Exception as exc:  # noqa: BLE001
        report_once(where, exc)
        return {}


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=lambda o: f"<{type(o).__name__}>")


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def plain_text(value: Any) -> str:
    """An SDK value (an enum, say) as the text it stands for."""
    return _as_text(to_plain(value))


def instructed_messages(
    instructions: Any, given: Any, item_message: Callable[[Any], dict[str, Any] | None]
) -> list[dict[str, Any]]:
    """A request of instructions and input items (conversations, the Responses API) as chat messages: the
    instructions as the system message, a string as the user's, each item as ``item_message`` reads it."""
    messages: list[dict[str, Any]] = []
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    if isinstance(given, str):
        messages.append({"role": "user", "content": given})
    elif isinstance(given, (list, tuple)):
        messages.extend(m for m in map(item_message, given) if m is not None)
    return messages


def type_of(item: Any) -> str | None:
    """An entry's, event's or part's ``type`` field as text (the families whose items say what they are)."""
    kind = field_of(item, "type")
    return None if kind is None else plain_text(kind)


# ---------------------------------------------------------------- content and messages


def content_parts(content: Any) -> list[dict[str, Any]]:
    """Content (a string or a list of SDK content chunks) as semconv message parts."""
    if is_missing(content):
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if not isinstance(content, (list, tuple)):
        return [{"type": "text", "content": _as_text(to_plain(content))}]
    parts = []
    for chunk in content:
        if isinstance(chunk, str):
            parts.append({"type": "text", "content": chunk})
            continue
        kind = field_of(chunk, "type")
        kind = _as_text(to_plain(kind)) if kind is not None else None
        if kind == "text":
            parts.append({"type": "text", "content": _as_text(field_of(chunk, "text") or "")})
        elif kind == "thinking":
            parts.append({"type": "reasoning", "content": _thinking_text(field_of(chunk, "thinking"))})
        elif kind in ("image_url", "document_url"):
            ref = field_of(chunk, kind)
            uri = field_of(ref, "url") if ref is not None and not isinstance(ref, str) else ref
            modality = "image" if kind == "image_url" else "document"
            parts.append({"type": "uri", "modality": modality, "uri": _as_text(to_plain(uri))})
        else:
            plain = to_plain(chunk)
            part = dict(plain) if isinstance(plain, dict) else {"value": plain}
            part["type"] = kind or "unknown"
            parts.append(part)
    return parts


def _thinking_text(thinking: Any) -> str:
    if isinstance(thinking, str):
        return thinking
    if not isinstance(thinking, (list, tuple)):
        return ""
    return "".join(p["content"] for p in content_parts(thinking) if p.get("type") == "text")


def _text_of(parts: Iterable[Mapping[str, Any]]) -> str:
    return "".join(p["content"] for p in parts if p.get("type") == "text")


def _flat_content(content: Any, parts: list[dict[str, Any]]) -> str | None:
    """The ``gen_ai.prompt.N.content`` value: the text itself, or the parts as JSON when not all text."""
    if is_missing(content):
        return None
    if isinstance(content, str):
        return content
    if all(p.get("type") == "text" for p in parts):
        return _text_of(parts)
    return dumps(parts)


def parse_arguments(arguments: Any) -> Any:
    """Tool-call arguments as a JSON value when they parse, else as given."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return to_plain(arguments)


def tool_call_parts(tool_calls: Any) -> list[dict[str, Any]]:
    if not isinstance(tool_calls, (list, tuple)):
        return []
    parts = []
    for call in tool_calls:
        function = field_of(call, "function")
        part: dict[str, Any] = {"type": "tool_call"}
        call_id = field_of(call, "id")
        if call_id is not None and call_id != "null":
            part["id"] = _as_text(call_id)
        if function is not None:
            name = field_of(function, "name")
            if name is not None:
                part["name"] = _as_text(name)
            part["arguments"] = parse_arguments(field_of(function, "arguments"))
        parts.append(part)
    return parts


def _role_of(message: Any) -> str:
    role = field_of(message, "role")
    return _as_text(to_plain(role)) if role is not None else "user"


def input_messages(messages: Any) -> list[dict[str, Any]]:
    """Request messages in the semconv ``gen_ai.input.messages`` shape."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Iterable):
        return []
    result = []
    for message in messages:
        role = _role_of(message)
        content = field_of(message, "content")
        if role == "tool":
            response = _text_of(content_parts(content)) if not isinstance(content, str) else content
            part = {"type": "tool_call_response", "response": response}
            call_id = field_of(message, "tool_call_id")
            if call_id is not None:
                part["id"] = _as_text(call_id)
            parts = [part]
        else:
            parts = content_parts(content) + tool_call_parts(field_of(message, "tool_calls"))
        entry: dict[str, Any] = {"role": role, "parts": parts}
        name = field_of(message, "name")
        if name is not None:
            entry["name"] = _as_text(name)
        result.append(entry)
    return result


# Messages that get indexed ``gen_ai.prompt.N.*`` keys (up to four each), so that a long conversation never
# crowds the request's own keys out of the span's attribute limit; all of them stay in gen_ai.input.messages.
MAX_INDEXED_MESSAGES = 16


def _indexed(messages: list[Any], roles: list[str], limit: int) -> list[int]:
    """Which messages get indexed keys: all of them, or a leading system message and the latest ones."""
    if len(messages) <= limit:
        return list(range(len(messages)))
    head = [0] if roles and roles[0] == "system" and limit > 1 else []
    return head + list(range(len(messages) - (limit - len(head)), len(messages)))


def prompt_attributes(messages: Any, max_indexed: int = MAX_INDEXED_MESSAGES) -> Attributes:
    """Content attributes of the request: semconv JSON plus Respan's indexed prompt keys.

    Past ``max_indexed`` messages, the indexed keys hold the leading system message and the latest turns,
    numbered from 0 as Respan reads them, and ``respan.prompt.omitted_messages`` says how many were left out.
    """
    attrs: Attributes = {}
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Iterable):
        return attrs
    messages = list(messages)
    semconv_messages = input_messages(messages)
    kept = _indexed(messages, [entry["role"] for entry in semconv_messages], max_indexed)
    for i, position in enumerate(kept):
        message, entry = messages[position], semconv_messages[position]
        prefix = f"{sc.GEN_AI_PROMPT_PREFIX}.{i}"
        attrs[f"{prefix}.role"] = entry["role"]
        content = field_of(message, "content")
        flat = _flat_content(content, content_parts(content))
        if flat is not None:
            attrs[f"{prefix}.content"] = flat
        calls = [p for p in entry["parts"] if p["type"] == "tool_call"]
        if calls:
            attrs[f"{prefix}.tool_calls"] = dumps(calls)
        call_id = field_of(message, "tool_call_id")
        if call_id is not None:
            attrs[f"{prefix}.tool_call_id"] = _as_text(call_id)
    if len(kept) < len(messages):
        attrs[sc.RESPAN_PROMPT_OMITTED] = len(messages) - len(kept)
    attrs[sc.GEN_AI_INPUT_MESSAGES] = dumps(semconv_messages)
    system_parts = [part for entry in semconv_messages if entry["role"] == "system" for part in entry["parts"]]
    if system_parts:
        attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = dumps(system_parts)
    return attrs


def tool_definitions(tools: Any) -> list[dict[str, Any]]:
    """Tool definitions flattened to ``{"type", "name", "description", "parameters"}``."""
    if not isinstance(tools, (list, tuple)):
        return []
    result = []
    for tool in tools:
        plain = to_plain(tool)
        if not isinstance(plain, dict):
            continue
        function = plain.get("function")
        definition = {"type": plain.get("type", "function")}
        if isinstance(function, dict):
            definition.update(function)
        else:  # the Responses API's flat {"type": "function", "name": ..., "parameters": ...}
            definition.update({k: v for k, v in plain.items() if k != "type"})
        result.append(definition)
    return result


# ---------------------------------------------------------------- request


@lru_cache(maxsize=64)
def server_attributes(url: str) -> tuple[tuple[str, Any], ...]:
    """``server.address`` and ``server.port`` of a base URL (cached: it rarely changes)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return ()
    out: list[tuple[str, Any]] = []
    if host:
        out.append((sc.SERVER_ADDRESS, host))
    if port:
        out.append((sc.SERVER_PORT, port))
    return tuple(out)


def common_request_attributes(
    kwargs: Mapping[str, Any], operation: str, request_type: str, stream: bool = False
) -> Attributes:
    """What every family's request shares: operation, provider, model and the sampling parameters passed."""
    attrs: Attributes = {
        sc.GEN_AI_OPERATION_NAME: operation,
        sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_MISTRAL,
        sc.GEN_AI_SYSTEM: sc.PROVIDER_MISTRAL,
        sc.LLM_REQUEST_TYPE: request_type,
    }
    model = kwargs.get("model")
    if isinstance(model, str) and model:
        attrs[sc.GEN_AI_REQUEST_MODEL] = model
    if stream:
        attrs[sc.GEN_AI_REQUEST_STREAM] = True
    for key, attribute, kind in _REQUEST_SCALARS:
        value = kwargs.get(key)
        if is_missing(value) or isinstance(value, bool):
            continue
        try:
            attrs[attribute] = kind(value)
        except (TypeError, ValueError, OverflowError):  # int(float("inf")) and the like
            continue
    output_type = _output_type(kwargs.get("response_format"))
    if output_type is not None:
        attrs[sc.GEN_AI_OUTPUT_TYPE] = output_type
    effort = kwargs.get("reasoning_effort")
    if not is_missing(effort):
        attrs[sc.RESPAN_REQUEST_REASONING_EFFORT] = plain_text(effort)
    stop = kwargs.get("stop")
    if isinstance(stop, str):
        attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = [stop]
    elif isinstance(stop, (list, tuple)) and stop:
        attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = [_as_text(s) for s in stop]
    return attrs


# response_format's type -> gen_ai.output.type
_OUTPUT_TYPES = {"text": "text", "json_object": "json", "json_schema": "json"}


def _output_type(response_format: Any) -> str | None:
    kind = field_of(response_format, "type") if not is_missing(response_format) else None
    return _OUTPUT_TYPES.get(plain_text(kind)) if kind is not None else None


def _prediction(prediction: Any) -> Attributes:
    """The expected completion a predicted-outputs call passes (content, like the prompt)."""
    text = field_of(prediction, "content") if not isinstance(prediction, str) else prediction
    return {sc.RESPAN_REQUEST_PREDICTION: text} if isinstance(text, str) and text else {}


def request_attributes(
    kwargs: Mapping[str, Any], capture_content: bool, stream: bool = False, max_indexed: int = MAX_INDEXED_MESSAGES
) -> Attributes:
    """A chat request's attributes, known before the call. Parameters appear only when the caller passed them."""
    attrs = common_request_attributes(kwargs, sc.OPERATION_CHAT, sc.OPERATION_CHAT, stream)
    if capture_content:
        attrs.update(guarded("prompt extraction", prompt_attributes, kwargs.get("messages"), max_indexed))
        attrs.update(guarded("tool definitions", tool_attributes, kwargs.get("tools")))
        attrs.update(guarded("prediction", _prediction, kwargs.get("prediction")))
    return attrs


def tool_attributes(tools: Any) -> Attributes:
    definitions = tool_definitions(tools)
    if not definitions:
        return {}
    return {
        sc.GEN_AI_TOOL_DEFINITIONS: dumps(definitions),
        sc.LLM_REQUEST_FUNCTIONS: dumps([{k: v for k, v in d.items() if k != "type"} for d in definitions]),
    }


# ---------------------------------------------------------------- response


@dataclass
class Choice:
    """One completion choice, normalised from a response or accumulated from a stream."""

    index: int = 0
    role: str = "assistant"
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    other_parts: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None

    def add_content(self, content: Any) -> str:
        """Append a content value (string or chunk list); return its text (its length sizes a chunk)."""
        if isinstance(content, str):
            self.text.append(content)
            return content
        text = []
        for part in content_parts(content):
            kind = part["type"]
            if kind == "text":
                text.append(part["content"])
                self.text.append(part["content"])
            elif kind == "reasoning":
                self.reasoning.append(part["content"])
            else:
                self.other_parts.append(part)
        return "".join(text)

    def add_tool_calls(self, tool_calls: Any) -> None:
        """Merge tool-call deltas by index; argument fragments are concatenated in order."""
        if not isinstance(tool_calls, (list, tuple)):
            return
        for position, call in enumerate(tool_calls):
            index = field_of(call, "index")
            if not isinstance(index, int) or isinstance(index, bool):
                index = position
            slot = self.tool_calls.setdefault(index, {"id": None, "name": None, "arguments": []})
            call_id = field_of(call, "id")
            if call_id is not None and call_id != "null" and slot["id"] is None:
                slot["id"] = _as_text(call_id)
            function = field_of(call, "function")
            if function is None:
                continue
            name = field_of(function, "name")
            if name and slot["name"] is None:
                slot["name"] = _as_text(name)
            arguments = field_of(function, "arguments")
            if isinstance(arguments, str):
                slot["arguments"].append(arguments)
            elif arguments is not None:
                slot["arguments"].append(dumps(to_plain(arguments)))

    def parts(self) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        if self.reasoning:
            parts.append({"type": "reasoning", "content": "".join(self.reasoning)})
        if self.text:
            parts.append({"type": "text", "content": "".join(self.text)})
        parts.extend(self.other_parts)
        for index in sorted(self.tool_calls):
            slot = self.tool_calls[index]
            part: dict[str, Any] = {"type": "tool_call"}
            if slot["id"] is not None:
                part["id"] = slot["id"]
            if slot["name"] is not None:
                part["name"] = slot["name"]
            part["arguments"] = parse_arguments("".join(slot["arguments"]))
            parts.append(part)
        return parts


def completion_attributes(choices: Iterable[Choice], capture_content: bool) -> Attributes:
    """Finish reasons always; the completion text and tool calls only with content capture."""
    ordered = sorted(choices, key=lambda c: c.index)
    attrs: Attributes = {}
    reasons = [c.finish_reason for c in ordered if c.finish_reason]
    if reasons:
        attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = reasons
    if not capture_content or not ordered:
        return attrs
    output = []
    for position, choice in enumerate(ordered):
        parts = choice.parts()
        prefix = f"{sc.GEN_AI_COMPLETION_PREFIX}.{position}"
        attrs[f"{prefix}.role"] = choice.role
        if choice.text or not choice.tool_calls:
            attrs[f"{prefix}.content"] = "".join(choice.text)
        calls = [p for p in parts if p["type"] == "tool_call"]
        if calls:
            attrs[f"{prefix}.tool_calls"] = dumps(calls)
        if choice.finish_reason:
            attrs[f"{prefix}.finish_reason"] = choice.finish_reason
        message: dict[str, Any] = {"role": choice.role, "parts": parts}
        if choice.finish_reason:
            message["finish_reason"] = choice.finish_reason
        output.append(message)
    attrs[sc.GEN_AI_OUTPUT_MESSAGES] = dumps(output)
    return attrs


def usage_attributes(usage: Any) -> Attributes:
    attrs: Attributes = {}
    if usage is None:
        return attrs
    for key, names in (
        ("prompt_tokens", (sc.GEN_AI_USAGE_INPUT_TOKENS, sc.GEN_AI_USAGE_PROMPT_TOKENS)),
        ("completion_tokens", (sc.GEN_AI_USAGE_OUTPUT_TOKENS, sc.GEN_AI_USAGE_COMPLETION_TOKENS)),
        ("total_tokens", (sc.LLM_USAGE_TOTAL_TOKENS,)),
    ):
        value = field_of(usage, key)
        if isinstance(value, int) and not isinstance(value, bool):
            for name in names:
                attrs[name] = value
    for details, key, name in (
        ("prompt_tokens_details", "cached_tokens", sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
        ("completion_tokens_details", "reasoning_tokens", sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS),
    ):
        value = field_of(field_of(usage, details), key)
        if isinstance(value, int) and not isinstance(value, bool):
            attrs[name] = value
    return attrs


def _identity_attributes(response_id: Any, model: Any) -> Attributes:
    attrs: Attributes = {}
    if response_id:
        attrs[sc.GEN_AI_RESPONSE_ID] = _as_text(response_id)
    if model:
        attrs[sc.GEN_AI_RESPONSE_MODEL] = _as_text(model)
    return attrs


def response_choices(response: Any) -> list[Choice]:
    choices = field_of(response, "choices")
    if not isinstance(choices, (list, tuple)):
        return []
    result = []
    for position, raw in enumerate(choices):
        index = field_of(raw, "index")
        choice = Choice(index=index if isinstance(index, int) else position)
        message = field_of(raw, "message")
        if message is not None:
            role = field_of(message, "role")
            if role is not None:
                choice.role = _as_text(to_plain(role))
            content = field_of(message, "content")
            if content is not None:
                choice.add_content(content)
            choice.add_tool_calls(field_of(message, "tool_calls"))
        reason = field_of(raw, "finish_reason")
        if reason is not None:
            choice.finish_reason = _as_text(to_plain(reason))
        result.append(choice)
    return result


def response_identity(response: Any) -> Attributes:
    return _identity_attributes(field_of(response, "id"), field_of(response, "model"))


def response_attributes(response: Any, capture_content: bool) -> Attributes:
    """Attributes of a complete (non-streamed) chat response."""
    attrs = guarded("response identity", response_identity, response)
    attrs.update(guarded("response usage", lambda: usage_attributes(field_of(response, "usage"))))
    attrs.update(guarded("response output", lambda: completion_attributes(response_choices(response), capture_content)))
    return attrs


# ---------------------------------------------------------------- streams


def stream_timing_attributes(start_ns: int, times: list[int]) -> Attributes:
    """A stream's timing, summarised: chunk count, time to first chunk, mean and largest gap between chunks."""
    attrs: Attributes = {sc.RESPAN_STREAM_CHUNK_COUNT: len(times)}
    if not times:
        return attrs
    attrs[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = (times[0] - start_ns) / 1e9
    if len(times) > 1:
        attrs[sc.RESPAN_STREAM_GAP_MEAN] = (times[-1] - times[0]) / (len(times) - 1) / 1e9
        attrs[sc.RESPAN_STREAM_GAP_MAX] = max(b - a for a, b in pairwise(times)) / 1e9
    return attrs


class StreamAccumulator:
    """Builds the whole response from stream chunks, one ``add`` per chunk.

    ``add`` is on the per-chunk hot path: it keeps the arrival time and raw fragments and leaves joining
    and JSON work to ``attributes``, which runs once when the span ends. With ``sizes``, it also keeps
    each chunk's text length, for the opt-in chunk events (never the text itself).
    """

    __slots__ = ("capture_content", "choices", "chunk_sizes", "chunk_times", "model", "response_id", "usage")
    failure: str | None = None  # a chat stream reports failures by raising, never in its chunks

    def __init__(self, capture_content: bool, sizes: bool = False) -> None:
        self.capture_content = capture_content
        self.response_id: Any = None
        self.model: Any = None
        self.usage: Any = None
        self.choices: dict[int, Choice] = {}
        self.chunk_times: list[int] = []
        self.chunk_sizes: list[int] | None = [] if sizes else None

    def add(self, event: Any, now_ns: int) -> None:
        """Record one stream item (a ``CompletionEvent`` or a bare chunk). Never raises.

        The common chunk (an SDK event with one choice whose delta is plain text, nothing else new) takes a
        short path of direct attribute reads; anything else (the first and last chunks, tool calls, dicts,
        odd shapes) takes the general one, which reads every field defensively.
        """
        self.chunk_times.append(now_ns)
        try:
            data = event.data
            choices = data.choices
            if type(choices) is list and len(choices) == 1 and self.response_id is not None and data.usage is None:
                raw = choices[0]
                delta = raw.delta
                content = delta.content
                index = raw.index
                choice = self.choices.get(index) if type(index) is int else None
                # exact type tests, not truth tests: the SDK's Unset has a Python-level __bool__
                if (
                    choice is not None
                    and type(content) is str
                    and raw.finish_reason is None
                    and type(delta.tool_calls) is not list
                    and type(delta.role) is not str
                ):
                    if content:
                        choice.text.append(content)
                    if self.chunk_sizes is not None:
                        self.chunk_sizes.append(len(content))
                    return
        except Exception:  # noqa: BLE001 - not the common shape: the general path reads it defensively
            pass
        size = self._add_any(event)
        if self.chunk_sizes is not None:
            self.chunk_sizes.append(size)

    def _add_any(self, event: Any) -> int:
        """Any stream item: SDK models or dicts, any field missing. Returns the characters of text it carried."""
        size = 0
        try:
            if type(event) is dict:
                event = _DictView(event)
            data = getattr(event, "data", None) or event
            if type(data) is dict:
                data = _DictView(data)
            if self.response_id is None:
                self.response_id = field_of(data, "id")
                self.model = field_of(data, "model")
            usage = getattr(data, "usage", None)
            if usage:
                self.usage = usage
            choices = getattr(data, "choices", None)
            if choices and type(choices) is not str:
                size = self._add_choices(choices)
        except Exception as exc:  # noqa: BLE001 - a malformed chunk must not break the user's loop
            report_once("stream chunk accumulation", exc)
        return size

    def _add_choices(self, choices: Any) -> int:
        """Merge one chunk's choices; return how many characters of text it carried."""
        size = 0
        for position, raw in enumerate(choices):
            if type(raw) is dict:
                raw = _DictView(raw)
            index = getattr(raw, "index", None)
            if type(index) is not int:
                index = position
            choice = self.choices.get(index)
            if choice is None:
                choice = self.choices[index] = Choice(index=index)
            delta = getattr(raw, "delta", None)
            if type(delta) is dict:
                delta = _DictView(delta)
            if delta:
                # exact type tests, not truth tests: the SDK's Unset has a Python-level __bool__
                content = getattr(delta, "content", None)
                if type(content) is str:
                    if content:
                        choice.text.append(content)
                        size += len(content)
                elif type(content) is list and content:
                    size += len(choice.add_content(content))
                tool_calls = getattr(delta, "tool_calls", None)
                if type(tool_calls) is list and tool_calls:
                    choice.add_tool_calls(tool_calls)
                role = getattr(delta, "role", None)
                if type(role) is str and role:
                    choice.role = role
            reason = getattr(raw, "finish_reason", None)
            if reason:
                choice.finish_reason = reason if type(reason) is str else _as_text(to_plain(reason))
        return size

    def attributes(self) -> Attributes:
        attrs = guarded("stream identity", _identity_attributes, self.response_id, self.model)
        attrs.update(guarded("stream usage", usage_attributes, self.usage))
        attrs.update(guarded("stream output", completion_attributes, self.choices.values(), self.capture_content))
        return attrs


class EventAccumulator:
    """The stream accumulator of a family whose streams send typed events (conversations, transcriptions, runs).

    It keeps each event's arrival time (and, for the opt-in chunk events, its text's size) as ``StreamAccumulator``
    does; ``read`` takes one event's data and returns how many characters of text it carried.
    """

    __slots__ = ("capture_content", "chunk_sizes", "chunk_times")
    failure: str | None = None  # set when the server reports a failure inside the stream

    def __init__(self, capture_content: bool, sizes: bool = False) -> None:
        self.capture_content = capture_content
        self.chunk_times: list[int] = []
        self.chunk_sizes: list[int] | None = [] if sizes else None

    def add(self, event: Any, now_ns: int) -> None:
        self.chunk_times.append(now_ns)
        size = 0
        try:
            size = self.read(field_of(event, "data") or event)
        except Exception as exc:  # noqa: BLE001 - a malformed event must not break the user's loop
            report_once(f"{type(self).__name__} accumulation", exc)
        if self.chunk_sizes is not None:
            self.chunk_sizes.append(size)

    def read(self, data: Any) -> int:
        raise NotImplementedError

    def attributes(self) -> Attributes:
        raise NotImplementedError
