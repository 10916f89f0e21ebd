"""``respan-instrument traces``: the recent traces of the local store, as trees in the terminal."""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from respan_auto.config import Settings
from respan_auto.export.local_store import read_records


def _preview(value: Any, width: int = 70) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _details(span: dict[str, Any]) -> list[str]:
    a = span.get("attributes") or {}
    out = []
    requested, answered = a.get("gen_ai.request.model"), a.get("gen_ai.response.model")
    facts = []
    if requested and answered and requested != answered:
        facts.append(f"model {requested} (answered by {answered})")
    elif requested or answered:
        facts.append(f"model {requested or answered}")
    if "gen_ai.usage.input_tokens" in a or "gen_ai.usage.output_tokens" in a:
        facts.append(
            f"tokens {a.get('gen_ai.usage.input_tokens', '?')} in / {a.get('gen_ai.usage.output_tokens', '?')} out"
        )
    if "respan.stream.chunk_count" in a:
        facts.append(f"{a['respan.stream.chunk_count']} chunks")
    kind = a.get("traceloop.span.kind")
    if kind:
        facts.insert(0, str(kind))
    for key, label in (
        ("respan.customer_params.customer_identifier", "customer"),
        ("respan.threads.thread_identifier", "thread"),
    ):
        if key in a:
            facts.append(f"{label} {a[key]}")
    if facts:
        out.append(" · ".join(facts))
    prompts = sorted(k for k in a if k.startswith("gen_ai.prompt.") and k.endswith(".content"))
    if prompts:
        out.append(f"prompt: {_preview(a[prompts[-1]])}")
    if "gen_ai.completion.0.content" in a:
        out.append(f"completion: {_preview(a['gen_ai.completion.0.content'])}")
    elif "gen_ai.completion.0.tool_calls" in a:
        out.append(f"tool calls: {_preview(a['gen_ai.completion.0.tool_calls'])}")
    if span.get("status") == "ERROR":
        out.append(f"error: {a.get('error.type', 'yes')}")
    return out


def _walk(children: dict[str | None, list[dict[str, Any]]], parent: str | None, prefix: str, lines: list[str]) -> None:
    kids = children.get(parent, [])
    for i, span in enumerate(kids):
        last = i == len(kids) - 1
        duration = ((span.get("end") or 0) - (span.get("start") or 0)) / 1e6
        lines.append(f"{prefix}{'└─' if last else '├─'} {span['name']}  {duration:.1f} ms")
        detail_prefix = prefix + ("   " if last else "│  ")
        lines.extend(f"{detail_prefix}   {d}" for d in _details(span))
        _walk(children, span["span_id"], detail_prefix, lines)


def render(records: Iterable[dict[str, Any]], limit: int) -> str:
    traces: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        traces[record["trace_id"]].append(record)
    ordered = sorted(traces.values(), key=lambda spans: min(s.get("start") or 0 for s in spans))[-limit:]
    lines: list[str] = []
    for spans in ordered:
        ids = {s["span_id"] for s in spans}
        children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
        for span in sorted(spans, key=lambda s: s.get("start") or 0):
            parent = span.get("parent_id")
            children[parent if parent in ids else None].append(span)
        start = min(s.get("start") or 0 for s in spans)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start / 1e9))
        service = next((s.get("service") for s in spans if s.get("service")), "")
        lines.append(f"trace {spans[0]['trace_id'][:16]} · {when}" + (f" · {service}" if service else ""))

        _walk(children, None, "", lines)
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="respan-instrument traces", description="Show recent local traces.")
    parser.add_argument("--limit", type=int, default=5, help="how many traces (default 5)")
    parser.add_argument("--store", help="the store file (default: RESPAN_LOCAL_STORE or the per-user store)")
    options = parser.parse_args(argv)
    path = options.store or Settings.load().local_store
    if not os.path.exists(path):
        print(f"No local traces yet ({path} does not exist). Run a program under respan-instrument first.")
        return 0
    output = render(read_records(path), max(1, options.limit))
    print(output or f"No traces in {path}.")
    return 0
