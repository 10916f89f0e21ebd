"""What the web view shows, worked out from stored span records: pure functions, so they are tested without a browser.

Span attributes are whatever an app (or an older version) recorded, cut at the attribute length limit or of any type,
so every reader here checks the type of what it takes and falls back to showing less: extraction never raises.
Values handed to the page are plain JSON (strings, numbers, booleans, lists, dicts); the page renders them as text.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from respan_auto import cost
from respan_auto import semconv as sc
from respan_auto.export import local_store

REQUEST_PREFIX = "gen_ai.request."
RESPAN_PREFIXES = ("respan.customer_params.", "respan.threads.", "respan.metadata.")
EXCEPTION_EVENT = "exception"
ENTITY_INPUT = "traceloop.entity.input"  # what a decorated function was called with, and what it returned
ENTITY_OUTPUT = "traceloop.entity.output"
_PERCENTILES = (50, 90, 99)
# Bucket widths for the charts over time, in seconds: the first that gives at most _MAX_BUCKETS buckets is used.
_BUCKET_SECONDS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400)
_MAX_BUCKETS = 48


def _loads(value: Any) -> Any:
    if not isinstance(value, str):
        return None
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return None  # cut at the attribute length limit, or not JSON at all


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(value: Any) -> int | None:
    """A time in ns since the epoch, as stored (a signed 64-bit integer), else None."""
    number = _int(value)
    return number if number is not None and 0 <= number < 2**63 else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: Any) -> str:
    """A value as the page shows it: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        return repr(value)


def _attributes(record: Mapping[str, Any]) -> Mapping[str, Any]:
    attributes = record.get("attributes")
    return attributes if isinstance(attributes, Mapping) else {}


def _arguments(value: Any) -> str:
    """Tool-call arguments, pretty-printed when they are JSON."""
    parsed = _loads(value) if isinstance(value, str) else value
    if parsed is None and isinstance(value, str):
        return value
    try:
        return json.dumps(parsed, ensure_ascii=False, indent=2, default=str)
    except (ValueError, TypeError, RecursionError):
        return _text(value)


def _part(part: Any) -> dict[str, Any] | None:
    """One message part in the page's shape: text, tool_call (name, arguments, id) or tool_result (id, text)."""
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if not isinstance(part, Mapping):
        return None
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": _text(part.get("content", ""))}
    if kind == "tool_call":
        return {
            "type": "tool_call",
            "name": _text(part.get("name") or "?"),
            "id": None if part.get("id") is None else _text(part["id"]),
            "arguments": _arguments(part.get("arguments")),
        }
    if kind == "tool_call_response":
        return {
            "type": "tool_result",
            "id": None if part.get("id") is None else _text(part["id"]),
            "text": _text(part.get("response", "")),
        }
    label = _text(kind) if kind is not None else "part"
    return {"type": "other", "label": label, "text": _text(dict(part))}


def _message(message: Any) -> dict[str, Any] | None:
    if not isinstance(message, Mapping):
        return None
    raw = message.get("parts")
    parts = [p for p in (_part(x) for x in raw) if p] if isinstance(raw, list) else []
    if not parts and "content" in message:  # a message in the SDK's own shape
        parts = [{"type": "text", "text": _text(message["content"])}]
    view: dict[str, Any] = {"role": _text(message.get("role") or "user"), "parts": parts}
    if message.get("finish_reason") is not None:
        view["finish_reason"] = _text(message["finish_reason"])
    return view


def _messages(value: Any) -> list[dict[str, Any]] | None:
    """Messages from a semconv JSON list; None when there is none to read (missing or cut short)."""
    parsed = _loads(value)
    if not isinstance(parsed, list):
        return None
    return [m for m in (_message(x) for x in parsed) if m]


def _indexed(attributes: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """Messages from Respan's indexed keys (``gen_ai.prompt.N.*``), in index order."""
    found: dict[int, dict[str, Any]] = {}
    head = prefix + "."
    for key in attributes:
        if not isinstance(key, str) or not key.startswith(head):
            continue
        number, _, field = key[len(head) :].partition(".")
        if number.isascii() and number.isdigit() and field:
            found.setdefault(int(number), {})[field] = attributes[key]
    messages = []
    for index in sorted(found):
        fields = found[index]
        parts: list[dict[str, Any]] = []
        if fields.get("role") == "tool":
            call_id = _optional_text(fields.get("tool_call_id"))
            parts.append({"type": "tool_result", "id": call_id, "text": _text(fields.get("content", ""))})
        elif "content" in fields:
            parts.append({"type": "text", "text": _text(fields["content"])})
        calls = _loads(fields.get("tool_calls"))
        if isinstance(calls, list):
            parts += [p for p in (_part(c) for c in calls) if p and p["type"] == "tool_call"]
        message: dict[str, Any] = {"role": _text(fields.get("role") or "user"), "parts": parts}
        if fields.get("finish_reason") is not None:
            message["finish_reason"] = _text(fields["finish_reason"])
        messages.append(message)
    return messages


def _pretty(value: Any) -> str | None:
    """A decorated function's recorded arguments or result, indented when it is JSON."""
    if value is None:
        return None
    parsed = _loads(value)
    if parsed is None or isinstance(parsed, str):  # not JSON (or cut short), or a plain string: as it is
        return _text(value)
    return json.dumps(parsed, indent=2, ensure_ascii=False)


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def input_messages(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's messages: the full semconv list, else the indexed keys; system instructions kept in front."""
    messages = _messages(attributes.get(sc.GEN_AI_INPUT_MESSAGES))
    if messages is None:
        messages = _indexed(attributes, sc.GEN_AI_PROMPT_PREFIX)
    if not any(m["role"] == "system" for m in messages):
        system = _loads(attributes.get(sc.GEN_AI_SYSTEM_INSTRUCTIONS))
        parts = [p for p in (_part(x) for x in system) if p] if isinstance(system, list) else []
        if parts:
            messages.insert(0, {"role": "system", "parts": parts})
    return messages


def output_messages(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = _messages(attributes.get(sc.GEN_AI_OUTPUT_MESSAGES))
    return messages if messages is not None else _indexed(attributes, sc.GEN_AI_COMPLETION_PREFIX)


def tool_definitions(attributes: Mapping[str, Any]) -> list[dict[str, str]]:
    tools = _loads(attributes.get(sc.GEN_AI_TOOL_DEFINITIONS))
    if not isinstance(tools, list):
        tools = _loads(attributes.get(sc.LLM_REQUEST_FUNCTIONS))
    if not isinstance(tools, list):
        return []
    shown = []
    for tool in tools:
        if not isinstance(tool, Mapping):
            continue
        function = tool.get("function")
        source = function if isinstance(function, Mapping) else tool
        shown.append(
            {
                "name": _text(source.get("name") or "?"),
                "description": _text(source.get("description") or ""),
                "parameters": _arguments(source.get("parameters")) if "parameters" in source else "",
            }
        )
    return shown


def request_parameters(attributes: Mapping[str, Any]) -> list[list[str]]:
    """``gen_ai.request.*`` except the model (shown on its own), as [name, value] rows."""
    return [
        [key[len(REQUEST_PREFIX) :], _text(value)]
        for key, value in sorted(attributes.items(), key=lambda item: str(item[0]))
        if isinstance(key, str) and key.startswith(REQUEST_PREFIX) and key != sc.GEN_AI_REQUEST_MODEL
    ]


def usage(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """Tokens and the cost, priced now; None for a span that made no LLM call."""
    attributes = _attributes(record)
    if not cost.is_llm_call(attributes):
        return None
    tokens_in = _int(attributes.get(sc.GEN_AI_USAGE_INPUT_TOKENS))
    tokens_out = _int(attributes.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS))
    cached = _int(attributes.get(cost.CACHE_READ_TOKENS))
    price = cost.span_cost(record)
    return {
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "cached_tokens": cached,
        "total_tokens": (tokens_in or 0) + (tokens_out or 0),
        "cost": price,
        "cost_text": cost.format_usd(price),
    }


def _events(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    events = record.get("events")
    return [e for e in events if isinstance(e, Mapping)] if isinstance(events, list) else []


def _event_attributes(event: Mapping[str, Any]) -> Mapping[str, Any]:
    attributes = event.get("attributes")
    return attributes if isinstance(attributes, Mapping) else {}


def stream(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """Stream timing in ms, with one point per chunk when the opt-in chunk events were recorded."""
    attributes = _attributes(record)
    keys = (
        sc.RESPAN_STREAM_CHUNK_COUNT,
        sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
        sc.RESPAN_STREAM_GAP_MEAN,
        sc.RESPAN_STREAM_GAP_MAX,
        sc.RESPAN_STREAM_COMPLETED,
    )
    if not any(key in attributes for key in keys):
        return None

    def ms(key: str) -> float | None:
        seconds = _number(attributes.get(key))
        return None if seconds is None else seconds * 1e3

    start = _int(record.get("start"))
    chunks = []
    for event in _events(record):
        when = _int(event.get("time"))
        if event.get("name") != sc.RESPAN_STREAM_CHUNK_EVENT or when is None or start is None:
            continue
        event_attributes = _event_attributes(event)
        chunks.append(
            {
                "offset_ms": (when - start) / 1e6,
                "index": _int(event_attributes.get("index")),
                "size": _int(event_attributes.get("size")),
            }
        )
    completed = attributes.get(sc.RESPAN_STREAM_COMPLETED)
    return {
        "time_to_first_chunk_ms": ms(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK),
        "chunk_count": _int(attributes.get(sc.RESPAN_STREAM_CHUNK_COUNT)),
        "gap_mean_ms": ms(sc.RESPAN_STREAM_GAP_MEAN),
        "gap_max_ms": ms(sc.RESPAN_STREAM_GAP_MAX),
        "completed": completed if isinstance(completed, bool) else None,
        "chunks": sorted(chunks, key=lambda c: c["offset_ms"]),
    }


def error(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """What went wrong: the error type, the HTTP status and the exception's message, for a span with an error."""
    attributes = _attributes(record)
    status = record.get("status")
    failed = status == "ERROR" or sc.ERROR_TYPE in attributes
    if not failed:
        return None
    message = raised = None
    for event in _events(record):
        if event.get("name") == EXCEPTION_EVENT:
            message = _optional_text(_event_attributes(event).get("exception.message"))
            raised = _optional_text(_event_attributes(event).get("exception.type"))
    http_status = attributes.get(sc.HTTP_RESPONSE_STATUS_CODE)
    return {
        "type": _optional_text(attributes.get(sc.ERROR_TYPE)) or raised,
        "http_status": None if http_status is None else _text(http_status),
        "status": _optional_text(status),
        "message": message,
    }


def respan_attributes(attributes: Mapping[str, Any]) -> list[list[str]]:
    return [
        [key, _text(value)]
        for key, value in sorted(attributes.items(), key=lambda item: str(item[0]))
        if isinstance(key, str) and key.startswith(RESPAN_PREFIXES)
    ]


def _duration(record: Mapping[str, Any]) -> int | None:
    start, end = _int(record.get("start")), _int(record.get("end"))
    return end - start if start is not None and end is not None else None


def span_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the detail pane shows for one span."""
    attributes = _attributes(record)
    other_events = [
        {
            "name": _text(e.get("name")),
            "time": _int(e.get("time")),
            "attributes": [[_text(k), _text(v)] for k, v in _event_attributes(e).items()],
        }
        for e in _events(record)
        if e.get("name") != sc.RESPAN_STREAM_CHUNK_EVENT
    ]
    return {
        "span_id": _optional_text(record.get("span_id")),
        "parent_id": _optional_text(record.get("parent_id")),
        "name": _text(record.get("name") or "(unnamed)"),
        "kind": _optional_text(record.get("kind")),
        "status": _optional_text(record.get("status")),
        "service": _optional_text(record.get("service")),
        "start": _int(record.get("start")),
        "duration_ns": _duration(record),
        "request_model": _optional_text(attributes.get(sc.GEN_AI_REQUEST_MODEL)),
        "response_model": _optional_text(attributes.get(sc.GEN_AI_RESPONSE_MODEL)),
        "input": input_messages(attributes),
        "output": output_messages(attributes),
        "tools": tool_definitions(attributes),
        "entity_input": _pretty(attributes.get(ENTITY_INPUT)),
        "entity_output": _pretty(attributes.get(ENTITY_OUTPUT)),
        "params": request_parameters(attributes),
        "usage": usage(record),
        "stream": stream(record),
        "error": error(record),
        "respan": respan_attributes(attributes),
        "events": other_events,
        "attributes": [[_text(k), _text(v)] for k, v in sorted(attributes.items(), key=lambda item: str(item[0]))],
    }


def _tree_order(records: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], int]]:
    """Spans depth first, children in start order; a span whose parent is not in the trace is a root."""
    ids = {r.get("span_id") for r in records}
    children: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        parent = record.get("parent_id")
        children[parent if parent in ids and parent != record.get("span_id") else None].append(record)
    ordered: list[tuple[Mapping[str, Any], int]] = []
    seen: set[int] = set()
    stack = [(r, 0) for r in reversed(sorted(children[None], key=_start))]
    while stack:
        record, depth = stack.pop()
        if id(record) in seen:
            continue
        seen.add(id(record))
        ordered.append((record, depth))
        kids = children.get(record.get("span_id"), []) if record.get("span_id") is not None else []
        stack.extend((kid, depth + 1) for kid in reversed(sorted(kids, key=_start)))
    ordered += [(r, 0) for r in records if id(r) not in seen]  # a parent cycle: shown flat rather than lost
    return ordered


def _start(record: Mapping[str, Any]) -> int:
    return _int(record.get("start")) or 0


def _cost_summary(prices: Iterable[float | None]) -> dict[str, Any]:
    """A total over calls: the known prices summed, the unknown ones counted, never guessed."""
    total, known, unknown = 0.0, 0, 0
    for price in prices:
        if price is None:
            unknown += 1
        else:
            total, known = total + price, known + 1
    if not known and not unknown:
        return {"cost": None, "cost_text": "", "unpriced_calls": 0}
    if not known:
        return {"cost": None, "cost_text": "unknown", "unpriced_calls": unknown}
    return {"cost": total, "cost_text": cost.format_usd(total), "unpriced_calls": unknown}


def trace_view(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One trace for the detail page: its spans in tree order, each with its depth and detail."""
    ordered = _tree_order(records)
    starts = [s for s in (_int(r.get("start")) for r in records) if s is not None]
    ends = [e for e in (_int(r.get("end")) for r in records) if e is not None]
    start, end = min(starts, default=None), max(ends, default=None)
    spans = []
    for record, depth in ordered:
        view = span_view(record)
        view["depth"] = depth
        spans.append(view)
    root = ordered[0][0] if ordered else {}
    return {
        "trace_id": _optional_text(root.get("trace_id")),
        "start": start,
        "end": end,
        "duration_ns": end - start if start is not None and end is not None else None,
        "app": next((s["service"] for s in spans if s["service"]), None),
        "root_name": spans[0]["name"] if spans else None,
        "error": any(s["error"] for s in spans),
        **_cost_summary(cost.span_cost(r) for r in records if cost.is_llm_call(_attributes(r))),
        "spans": spans,
    }


def _model_cost(entry: Mapping[str, Any]) -> float | None:
    return cost.call_cost(
        entry.get("model"),
        entry.get("input_tokens"),
        entry.get("output_tokens"),
        entry.get("cached_tokens"),
        _int(entry.get("start")),
    )


def trace_row(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A row of the trace list: the store's summary, priced per model now."""
    models = summary.get("models")
    entries = [m for m in models if isinstance(m, Mapping)] if isinstance(models, list) else []
    prices: list[float | None] = []
    for entry in entries:
        price = _model_cost(entry)  # an entry's summed tokens are priced at once; unpriced, each call counts
        prices += [price] if price is not None else [None] * max(1, _int(entry.get("calls")) or 1)
    row = {key: summary.get(key) for key in _ROW_KEYS}
    row["models"] = sorted({_text(m.get("model")) for m in entries if m.get("model")})
    row.update(_cost_summary(prices))
    return row


_ROW_KEYS = (*local_store.TRACE_KEYS, "duration_ns")


def percentiles(values: list[float]) -> dict[str, float | None]:
    """Nearest-rank percentiles: each is a value that was actually seen."""
    ordered = sorted(values)
    result: dict[str, float | None] = {}
    for p in _PERCENTILES:
        result[f"p{p}"] = ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else None
    return result


def _bucket_width(first: int, last: int) -> int:
    span_s = max(1, (last - first) // 10**9 + 1)
    for width in _BUCKET_SECONDS:
        if span_s / width <= _MAX_BUCKETS:
            return width * 10**9
    return math.ceil(span_s / _MAX_BUCKETS) * 10**9


def overview(calls: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Latency percentiles, tokens and cost over time and per model, from the store's LLM-call rows."""
    rows = [c for c in calls if _time(c.get("start")) is not None]
    durations = [d / 1e6 for d in (_int(c.get("duration_ns")) for c in rows) if d is not None]
    first_chunks = [t * 1e3 for t in (_number(c.get("time_to_first_chunk")) for c in rows) if t is not None]
    priced = [(c, _model_cost(c)) for c in rows]
    series: list[dict[str, Any]] = []
    width = 0
    if rows:
        first = min(_start(c) for c in rows)
        last = max(_start(c) for c in rows)
        width = _bucket_width(first, last)
        origin = first - first % width
        buckets = [
            {"start": origin + i * width, "calls": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0, "cost": 0.0}
            for i in range((last - origin) // width + 1)
        ]
        for call, price in priced:
            bucket = buckets[(_start(call) - origin) // width]
            bucket["calls"] += 1
            bucket["errors"] += 1 if call.get("error") else 0
            bucket["input_tokens"] += _int(call.get("input_tokens")) or 0
            bucket["output_tokens"] += _int(call.get("output_tokens")) or 0
            bucket["cost"] += price or 0.0
        series = buckets
    # per model asked for: a failed call, which has no answering model, joins the calls that were answered
    by_model: dict[str, list[tuple[Mapping[str, Any], float | None]]] = defaultdict(list)
    for call, price in priced:
        by_model[_text(call.get("request_model") or call.get("model") or "(unknown)")].append((call, price))
    models = []
    for model, entries in sorted(by_model.items(), key=lambda item: -len(item[1])):
        latencies = [d / 1e6 for d in (_int(c.get("duration_ns")) for c, _ in entries) if d is not None]
        models.append(
            {
                "model": model,
                "answered_by": sorted({_text(c["model"]) for c, _ in entries if c.get("model") not in (None, model)}),
                "calls": len(entries),
                "errors": sum(1 for c, _ in entries if c.get("error")),
                "input_tokens": sum(_int(c.get("input_tokens")) or 0 for c, _ in entries),
                "output_tokens": sum(_int(c.get("output_tokens")) or 0 for c, _ in entries),
                **_cost_summary(p for _, p in entries),
                "latency_ms": percentiles(latencies),
            }
        )
    return {
        "calls": len(rows),
        "errors": sum(1 for c in rows if c.get("error")),
        "input_tokens": sum(_int(c.get("input_tokens")) or 0 for c in rows),
        "output_tokens": sum(_int(c.get("output_tokens")) or 0 for c in rows),
        **_cost_summary(p for _, p in priced),
        "latency_ms": percentiles(durations),
        "time_to_first_chunk_ms": percentiles(first_chunks),
        "bucket_ns": width,
        "series": series,
        "models": models,
    }
