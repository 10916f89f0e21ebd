"""``respan-instrument traces``: the recent traces of the local store, as trees in the terminal or as JSON lines.

Filters (``--trace``, ``--app``, ``--since``) and the limit are handed to the store as one ``Selection``, so that a
store with indexes can answer them itself. Output is written as it is made and flushed before returning: a closed pipe
raises inside ``main``, where the command's entry point turns it into a quiet exit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import defaultdict
from datetime import datetime
from typing import Any

from respan_auto import cost
from respan_auto import semconv as sc
from respan_auto.cli.store_option import STORE_HELP, OneLineParser, store_to_read, whole_number
from respan_auto.export.local_store import Selection, select_traces

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TRACE_ID = re.compile(r"[0-9a-fA-F]{1,32}")
_INDEXED = re.compile(r"gen_ai\.prompt\.(\d+)\.content")


def _since(value: str) -> int:
    """``10m``, ``2h``, ``1d`` ago, or an ISO timestamp (local time unless it has an offset), in ns since the epoch."""
    text = value.strip()
    match = _DURATION.fullmatch(text)
    if match:
        return time.time_ns() - int(float(match[1]) * _SECONDS[match[2]] * 1e9)
    try:
        when = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an age such as 30s, 10m, 2h, 1d, 1w or an ISO timestamp such as 2026-11-29T10:00, got {value!r}"
        ) from None
    return int((when if when.tzinfo else when.astimezone()).timestamp() * 1e9)


def _trace_id(value: str) -> str:
    if not _TRACE_ID.fullmatch(value):
        raise argparse.ArgumentTypeError(f"expected a trace id or its start (hex digits, as shown), got {value!r}")
    return value.lower()


def _limit(value: str) -> int:
    return whole_number(value, 1, sys.maxsize, "a whole number of traces, 1 or more")


def _parser() -> OneLineParser:
    parser = OneLineParser(
        prog="respan-instrument traces",
        description="Show recent traces from the local store: the newest last.",
        epilog="--json writes one JSON object per line, one per trace: "
        '{"trace_id", "start", "end", "spans": [span records as stored]}, times in ns since the epoch.',
        allow_abbrev=False,
    )
    parser.add_argument("--limit", type=_limit, default=5, metavar="N", help="how many traces (default 5)")
    parser.add_argument("--trace", type=_trace_id, metavar="ID", help="only the trace whose id starts with ID")
    parser.add_argument("--app", metavar="NAME", help="only traces with a span from this app (its service.name)")
    parser.add_argument(
        "--since", metavar="WHEN", help="only traces started since then: 10m, 2h, 1d ago, or an ISO timestamp"
    )
    parser.add_argument("--json", action="store_true", help="JSON lines, one trace per line, instead of trees")
    parser.add_argument("--store", help=STORE_HELP)
    return parser


def _count(number: Any, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _preview(value: Any, width: int = 70) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _loads(value: Any) -> Any:
    if not isinstance(value, str):
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None  # cut at the attribute length limit


def _parts(message: Any) -> list[dict[str, Any]]:
    parts = message.get("parts") if isinstance(message, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _text(parts: list[dict[str, Any]]) -> str:
    texts = [str(p.get("content", "")) for p in parts if p.get("type") == "text"]
    texts += [str(p.get("response", "")) for p in parts if p.get("type") == "tool_call_response"]
    return "".join(texts)


def _prompt(a: dict[str, Any]) -> str | None:
    """The last message's text: from the full message list, else from the highest indexed key."""
    messages = _loads(a.get(sc.GEN_AI_INPUT_MESSAGES))
    if isinstance(messages, list):
        texts = [_text(_parts(m)) for m in messages]
        return next((t for t in reversed(texts) if t), None)
    indexed = sorted((int(m[1]), k) for k in a if (m := _INDEXED.fullmatch(k)))
    return str(a[indexed[-1][1]]) if indexed else None


def _call(part: dict[str, Any]) -> str:
    arguments = part.get("arguments")
    shown = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return f"{part.get('name') or '?'}({shown})"


def _answer(a: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    """The first choice's text and tool calls: from Respan's indexed keys, else from the output messages."""
    prefix = f"{sc.GEN_AI_COMPLETION_PREFIX}.0"
    text, calls = a.get(f"{prefix}.content"), _loads(a.get(f"{prefix}.tool_calls"))
    if text is None and calls is None:
        messages = _loads(a.get(sc.GEN_AI_OUTPUT_MESSAGES))
        if not isinstance(messages, list) or not messages:
            return None, []
        parts = _parts(messages[0])
        text = _text(parts)
        calls = [p for p in parts if p.get("type") == "tool_call"]
    calls = [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []
    return (None if text is None else str(text)), calls


def _facts(span: dict[str, Any], a: dict[str, Any]) -> list[str]:
    facts = []
    kind = a.get("traceloop.span.kind")
    if kind:
        facts.append(str(kind))
    requested, answered = a.get(sc.GEN_AI_REQUEST_MODEL), a.get(sc.GEN_AI_RESPONSE_MODEL)
    if requested and answered and requested != answered:
        facts.append(f"model {requested} (answered by {answered})")
    elif requested or answered:
        facts.append(f"model {requested or answered}")
    if sc.GEN_AI_USAGE_INPUT_TOKENS in a or sc.GEN_AI_USAGE_OUTPUT_TOKENS in a:
        tokens_in, tokens_out = a.get(sc.GEN_AI_USAGE_INPUT_TOKENS, "?"), a.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS, "?")
        facts.append(f"tokens {tokens_in} in / {tokens_out} out")
        facts.append(f"cost {cost.format_usd(cost.span_cost(span))}")
    vectors = a.get(sc.RESPAN_EMBEDDINGS_COUNT)
    if isinstance(vectors, int):
        dimension = a.get(sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT)
        facts.append(_count(vectors, "vector") + (f" of {dimension} dimensions" if dimension else ""))
    flagged = a.get(sc.RESPAN_MODERATION_CATEGORIES)
    if sc.RESPAN_MODERATION_FLAGGED in a:
        facts.append(
            f"flagged {', '.join(map(str, flagged or ()))}" if a[sc.RESPAN_MODERATION_FLAGGED] else "not flagged"
        )
    if sc.RESPAN_OCR_PAGES in a:
        size = a.get(sc.RESPAN_OCR_DOCUMENT_SIZE)
        facts.append(_count(a[sc.RESPAN_OCR_PAGES], "page") + (f" from {size} bytes" if size is not None else ""))
    if sc.RESPAN_AUDIO_SIZE in a or sc.RESPAN_AUDIO_DURATION in a:
        heard = [f"{a[sc.RESPAN_AUDIO_SIZE]} bytes of audio"] if sc.RESPAN_AUDIO_SIZE in a else []
        heard += [f"{a[sc.RESPAN_AUDIO_DURATION]} s"] if sc.RESPAN_AUDIO_DURATION in a else []
        heard += [f"language {a[sc.RESPAN_AUDIO_LANGUAGE]}"] if sc.RESPAN_AUDIO_LANGUAGE in a else []
        facts.append(", ".join(heard))
    for key, label in (
        (sc.GEN_AI_AGENT_ID, "agent"),
        (sc.GEN_AI_CONVERSATION_ID, "conversation"),
        (sc.GEN_AI_TOOL_NAME, "tool"),
    ):
        if a.get(key):
            facts.append(f"{label} {a[key]}")
    if sc.RESPAN_STREAM_CHUNK_COUNT in a:
        facts.append(_count(a[sc.RESPAN_STREAM_CHUNK_COUNT], "chunk"))
    first = a.get(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)
    if isinstance(first, (int, float)):
        facts.append(f"first chunk after {first * 1e3:.1f} ms")
    mean, largest = a.get(sc.RESPAN_STREAM_GAP_MEAN), a.get(sc.RESPAN_STREAM_GAP_MAX)
    if isinstance(mean, (int, float)) and isinstance(largest, (int, float)):
        facts.append(f"gaps {mean * 1e3:.1f} ms mean, {largest * 1e3:.1f} ms max")
    if a.get(sc.RESPAN_STREAM_COMPLETED) is False:
        facts.append("stream interrupted")
    for key, label in (
        ("respan.customer_params.customer_identifier", "customer"),
        ("respan.threads.thread_identifier", "thread"),
    ):
        if key in a:
            facts.append(f"{label} {a[key]}")
    return facts


def _details(span: dict[str, Any]) -> list[str]:
    a = span.get("attributes")
    a = a if isinstance(a, dict) else {}
    out = []
    facts = _facts(span, a)
    if facts:
        out.append(" · ".join(facts))
    prompt = _prompt(a)
    if prompt is not None:
        label = "input" if a.get(sc.GEN_AI_OPERATION_NAME) == sc.OPERATION_EMBEDDINGS else "prompt"
        out.append(f"{label}: {_preview(prompt)}")
    if sc.RESPAN_FIM_SUFFIX in a:
        out.append(f"suffix: {_preview(str(a[sc.RESPAN_FIM_SUFFIX]))}")
    text, calls = _answer(a)
    if text or (text is not None and not calls):
        out.append(f"completion: {_preview(text) if text else '(empty)'}")
    if calls:
        out.append(f"tool calls: {_preview(', '.join(_call(c) for c in calls))}")
    for key, label in ((sc.GEN_AI_TOOL_CALL_ARGUMENTS, "arguments"), (sc.GEN_AI_TOOL_CALL_RESULT, "result")):
        if key in a:
            out.append(f"{label}: {_preview(str(a[key]))}")
    if span.get("status") == "ERROR":
        status = a.get(sc.HTTP_RESPONSE_STATUS_CODE)
        out.append(f"error: {a.get(sc.ERROR_TYPE, 'unknown')}" + (f" · HTTP {status}" if status is not None else ""))
    return out


def _duration_ms(span: dict[str, Any]) -> float:
    start, end = span.get("start"), span.get("end")
    return (end - start) / 1e6 if isinstance(start, int) and isinstance(end, int) else 0.0


def _walk(children: dict[str | None, list[dict[str, Any]]], parent: str | None, prefix: str, lines: list[str]) -> None:
    kids = children.get(parent, [])
    for i, span in enumerate(kids):
        last = i == len(kids) - 1
        lines.append(f"{prefix}{'└─' if last else '├─'} {span.get('name')}  {_duration_ms(span):.1f} ms")
        detail_prefix = prefix + ("   " if last else "│  ")
        lines.extend(f"{detail_prefix}   {d}" for d in _details(span))
        if span.get("span_id") is not None:
            _walk(children, span["span_id"], detail_prefix, lines)


def _llm_calls(spans: list[dict[str, Any]]) -> int:
    return sum(1 for s in spans if isinstance(s.get("attributes"), dict) and cost.is_llm_call(s["attributes"]))


def _trace_cost(spans: list[dict[str, Any]]) -> str:
    """The trace's summed cost, if it made LLM calls; calls without a known price are counted, not guessed."""
    calls = _llm_calls(spans)
    if not calls:
        return ""
    total, unknown = cost.total_cost(spans)
    if unknown == calls:
        return " · cost unknown"
    return f" · cost {cost.format_usd(total)}" + (f" ({unknown} of {calls} calls unpriced)" if unknown else "")


def render_trace(spans: list[dict[str, Any]]) -> str:
    """One trace as a tree: spans whose parent is not in the store are roots."""
    ids = {s.get("span_id") for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        parent = span.get("parent_id")
        children[parent if parent in ids else None].append(span)
    start = spans[0].get("start")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((start if isinstance(start, int) else 0) / 1e9))
    service = next((s.get("service") for s in spans if s.get("service")), "")
    header = f"trace {spans[0]['trace_id'][:16]} · {when}" + (f" · {service}" if service else "")
    lines = [header + _trace_cost(spans)]
    _walk(children, None, "", lines)
    return "\n".join(lines) + "\n"


def trace_document(spans: list[dict[str, Any]]) -> str:
    starts = [s["start"] for s in spans if isinstance(s.get("start"), int)]
    ends = [s["end"] for s in spans if isinstance(s.get("end"), int)]
    document = {
        "trace_id": spans[0]["trace_id"],
        "start": min(starts, default=None),
        "end": max(ends, default=None),
        "spans": spans,
    }
    return json.dumps(document, default=str) + "\n"


def _filters(options: argparse.Namespace) -> str:
    given = (("--trace", options.trace), ("--app", options.app), ("--since", options.since))
    return " ".join(f"{flag} {value}" for flag, value in given if value is not None)


def main(argv: list[str]) -> int:
    parser = _parser()
    options = parser.parse_args(argv)
    try:
        since_ns = None if options.since is None else _since(options.since)  # the value is kept as written
    except argparse.ArgumentTypeError as error:
        parser.error(f"argument --since: {error}")
    path = store_to_read(options.store, parser.prog)
    if path is None:
        return 1
    if not os.path.exists(path):
        message = f"No local traces yet ({path} does not exist). Run a program under respan-instrument first."
        print(message, file=sys.stderr if options.json else sys.stdout)
        return 0
    selection = Selection(limit=options.limit, trace_id=options.trace, app=options.app, since_ns=since_ns)
    traces = select_traces(path, selection)
    out = sys.stdout
    for i, spans in enumerate(traces):
        if options.json:
            out.write(trace_document(spans))
        else:
            out.write(("\n" if i else "") + render_trace(spans))
    if not cost.available() and any(_llm_calls(spans) for spans in traces):
        print(cost.MISSING_LINE, file=sys.stderr)
    if not traces:
        filters = _filters(options)
        message = f"No traces in {path}" + (f" match {filters}." if filters else ".")
        print(message, file=sys.stderr if options.json else sys.stdout)
    out.flush()
    return 0
