"""Where our overhead goes: each stage of a traced call and of its export, in µs of CPU per call or per span.

Why it is built this way:

* The SDK is replaced by replays of its answers (as in ``overhead.py``'s lower-bound phase), so that only
  tracing and export cost anything; spans go through the default pipeline, built as ``overhead.py`` builds it,
  to the receiver in its own process.
* Figures are minimums over repeats, of the thread's own CPU: on a shared machine other work only ever adds,
  so the minimum is the stable figure (a profile, not a verdict; ``overhead.py`` gives those).
* The app thread's total is measured without a profiler, then split by a cProfile run in proportion (cProfile
  inflates small functions, so shares are approximate; the total is not).
* Export stages are re-run one by one on the spans the calls produced: cut and size (at span end, on the app
  thread), redaction and repair, the standard encoder, protobuf serialization, gzip at the exporter's level 9
  (and at 6 and 1, for comparison), the post; plus what the encoding of a stream span costs without its chunk
  events, and OpenInference's figures beside ours; the same stages for ``export.py``'s larger spans.

Usage: ``python benchmarks/profile_overhead.py [--repeats N] [--json]``.
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import io
import json
import os
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from _receiver import ReceiverProcess, other_cores
from export import Workload, produce
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from overhead import (
    CHUNKS,
    Arm,
    OpenInference,
    Ours,
    loopback_only,
    mistral_client,
    replayed_sdk,
    workloads,
)

from respan_auto.export.encoding import encode_request
from respan_auto.export.limits import Cleaner
from respan_auto.export.pipeline import make_redactor
from respan_auto.export.sender import Payload

CALLS = {"complete": 200, "stream": 40, "stream_short": 100}
EXPORT_SPANS = 500  # export.py's spans (about 7 KB each), for the export stages alone
OURS = ("respan_auto/", "opentelemetry/sdk/trace/", "opentelemetry/attributes/", "wrapt/")


class Collector(SpanProcessor):
    """Keeps the spans that end while ``on``: the very spans the pipeline exports."""

    def __init__(self) -> None:
        self.on = False
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        if self.on:
            self.spans.append(span)


def best_ns(run: Callable[[], Any], repeats: int, clock: Callable[[], int] = time.thread_time_ns) -> float:
    """The least CPU one run took, over ``repeats`` runs."""
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        run()
        best = min(best, clock() - start)
    return best


def calls(call: Callable[[], None], count: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(count):
            call()

    return run


def flushed(run: Callable[[], None], arm: Arm) -> Callable[[], None]:
    """``run``, then the flush that exports its spans."""

    def both() -> None:
        run()
        arm.flush()

    return both


def app_split(call: Callable[[], None], count: int, total_us: float, top: int = 14) -> list[tuple[str, float, float]]:
    """(function, self µs per call, inclusive µs per call) of our code, cProfile shares scaled to ``total_us``."""
    profile = cProfile.Profile()
    profile.enable()
    calls(call, count)()
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    profiled = sum(row[2] for row in stats.values())  # every function's own time: the whole profiled run
    scale = total_us / (profiled * 1e6 / count)
    rows = []
    for (path, line, func), (_, _, own, inclusive, _) in stats.items():
        if any(part in path for part in OURS) or path.endswith("overhead.py"):
            where = path.split("site-packages/")[-1].split("/main/")[-1]
            rows.append((f"{where}:{line} {func}", own * 1e6 / count * scale, inclusive * 1e6 / count * scale))
    rows.sort(key=lambda row: -row[1])
    return [(name, round(own, 1), round(inclusive, 1)) for name, own, inclusive in rows[:top]]


def gzipped(body: bytes, level: int = 9) -> bytes:
    """As the standard exporter compresses: ``GzipFile`` at its default level (9) unless told otherwise."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="w", compresslevel=level) as stream:
        stream.write(body)
    return buffer.getvalue()


def without_events(span: ReadableSpan) -> ReadableSpan:
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes,
        events=(),
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def export_stages(spans: list[ReadableSpan], repeats: int, ours: Ours | None) -> dict[str, float]:
    """µs per span of each export stage, run synchronously on ``spans``."""
    n = len(spans)

    def per_span(run: Callable[[], Any]) -> float:
        return round(best_ns(run, repeats) / n / 1e3, 2)

    request = encode_spans(spans)
    body = request.SerializePartialToString()
    stages: dict[str, float] = {}
    if ours is not None:
        destination = ours.pipeline.destinations[0]
        cleaner = Cleaner(make_redactor(ours.settings, {}))
        stages["cut and size at end (app thread)"] = per_span(lambda: [destination.processor.trimmer(s) for s in spans])
        stages["redact and repair"] = per_span(lambda: [cleaner(s) for s in spans])
    stages["encode_spans (standard encoder)"] = per_span(lambda: encode_spans(spans))
    stages["our byte-equal encoder (replaces both)"] = per_span(lambda: encode_request(spans))
    stages["SerializePartialToString"] = per_span(request.SerializePartialToString)
    stages["bytes per span, raw"] = round(len(body) / n)
    for level in (9, 6, 1):
        stages[f"gzip level {level}"] = per_span(lambda level=level: gzipped(body, level))  # type: ignore[misc]
        stages[f"bytes per span, gzip {level}"] = round(len(gzipped(body, level)) / n)
    if any(s.events for s in spans):
        bare = [without_events(s) for s in spans]
        bare_body = encode_spans(bare).SerializePartialToString()
        stages["encode_spans, chunk events left out"] = per_span(lambda: encode_spans(bare))
        stages["gzip level 9, chunk events left out"] = per_span(lambda: gzipped(bare_body))
        stages["bytes per span, raw, chunk events left out"] = round(len(bare_body) / n)
    if ours is not None and (transport := ours.pipeline.destinations[0].transport) is not None:
        payload = Payload(gzipped(body), n, dict(transport.session.learned))  # type: ignore[attr-defined]
        stages["post, per request (sender thread)"] = round(best_ns(lambda: transport.send(payload), repeats) / 1e3)
        stages["flush with nothing to send, per flush"] = round(
            best_ns(ours.flush, repeats, time.process_time_ns) / 1e3
        )
    return stages


def profile_arm(arm: Arm, collector: Collector, work: dict[str, Callable[[], None]], repeats: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, call in work.items():
        count = CALLS[name]
        bare_ns = best_ns(calls(call, count), repeats)
        arm.on()
        try:
            calls(call, 20)()
            arm.flush()
            traced_ns = best_ns(calls(call, count), repeats)
            total_us = (traced_ns - bare_ns) / count / 1e3
            split = app_split(call, count, total_us) if isinstance(arm, Ours) else []
            arm.flush()
            flush_us = best_ns(flushed(calls(call, count), arm), repeats, time.process_time_ns) / count / 1e3
            collector.on = True
            calls(call, count)()
            collector.on = False
            arm.flush()
        finally:
            arm.off()
        spans, collector.spans = collector.spans, []
        result[name] = {
            "app_thread_us_per_call": round(total_us, 1),
            "app_thread_us_per_chunk": round(total_us / CHUNKS[name], 2),
            "process_us_per_call_with_flush": round(flush_us - bare_ns / count / 1e3, 1),
            "spans_per_request": count,
            "span": {"attributes": len(spans[0].attributes or {}), "events": len(spans[0].events)},
            "app_thread_split": split,
            "export_us_per_span": export_stages(spans, repeats, arm if isinstance(arm, Ours) else None),
        }
    return result


def print_report(result: dict[str, Any]) -> None:
    lines = [f"Minimum CPU over {result['repeats']} repeats; SDK replaced by replays; µs unless said otherwise."]
    for arm, figures in result["arms"].items():
        for name, fig in figures.items():
            lines += [
                "",
                f"== {arm}, {name}: span of {fig['span']['attributes']} attributes, {fig['span']['events']} events; "
                f"{fig['spans_per_request']} spans per request",
                f"  app thread: {fig['app_thread_us_per_call']} per call ({fig['app_thread_us_per_chunk']} per chunk);"
                f" process, with the flush: {fig['process_us_per_call_with_flush']} per call",
            ]
            if fig["app_thread_split"]:
                lines.append("  app thread by function (self / inclusive per call, cProfile shares of the total):")
                lines += [f"    {own:>8} {inclusive:>8}  {where}" for where, own, inclusive in fig["app_thread_split"]]
            lines.append("  export, per span:")
            lines += [f"    {value:>8}  {stage}" for stage, value in fig["export_us_per_span"].items()]
    lines += ["", f"== export.py's spans ({EXPORT_SPANS}, one request), export per span:"]
    lines += [f"    {value:>8}  {stage}" for stage, value in result["export_workload"].items()]
    print("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11, help="runs per figure; the least is kept")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    loopback_only()
    receiver_core, own_cores = other_cores()
    with ReceiverProcess(receiver_core) as receiver:
        if own_cores:
            os.sched_setaffinity(0, own_cores)
        ours = Ours(receiver.url)
        arms: list[Arm] = [ours]
        collectors = {"ours": Collector()}
        ours.pipeline.provider.add_span_processor(collectors["ours"])
        try:
            oi = OpenInference(receiver.url)
            collectors["openinference"] = Collector()
            oi.provider.add_span_processor(collectors["openinference"])
            arms.append(oi)
        except ImportError:
            pass
        client = mistral_client()
        with replayed_sdk(client):
            work = workloads(client)
            result = {
                "repeats": args.repeats,
                "arms": {arm.name: profile_arm(arm, collectors[arm.name], work, args.repeats) for arm in arms},
            }
        collectors["ours"].on = True
        produce(ours.pipeline.provider.get_tracer("benchmark"), Workload(), range(EXPORT_SPANS))
        collectors["ours"].on = False
        ours.flush()
        result["export_workload"] = export_stages(collectors["ours"].spans, args.repeats, ours)
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
