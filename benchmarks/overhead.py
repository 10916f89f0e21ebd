"""What the Mistral instrumentation costs a caller: the real SDK, bare vs instrumented, with real span export.

Why it is built this way:

* The SDK talks to an in-process ``MockTransport`` that replays the stand-in's canned answers
  (``respan_auto.testing.mistral_server``), built once per distinct request body: the bare figure is the
  SDK's own CPU cost, with no network and no stand-in work in it. Next to a real API call (hundreds of
  milliseconds) any overhead shrinks further; this is the worst case.
* Spans go through respan_auto's own pipeline, as ``respan-instrument`` wires it: its context-attributes
  processor, its ``BatchProcessor`` (default settings) and its ``OtlpHttpExporter`` (OTLP protobuf, gzip,
  over urllib), to the loopback ``OtlpReceiver`` of ``respan_auto.testing``. Every block ends with a
  ``force_flush`` outside the timed loop, and blocks stay under the processor's batch size (512 spans) and
  its 1 s timer, so export work never lands in a measured block; its cost is reported per span, from the replay
  phase below (big enough batches). The receiver runs in this process and decodes each request before it
  answers, so that figure includes its decoding; the decoding alone is timed afterwards and reported too.
* Bare and instrumented blocks alternate in ABBA order, many short rounds, and the overhead is the median
  of the per-round pairs with a 95 % interval, so that drift and a busy neighbour cancel out.
* The SDK costs milliseconds per call (it builds pydantic models per request and per stream event), so a
  1 % effect end to end sits close to the noise of a shared machine. A second phase replaces
  ``Chat.complete``/``stream`` with replays of real SDK answers, leaving only the instrumentation to time,
  to a fraction of a microsecond. That is a lower bound: run hot in a tight loop our code is faster than
  between real SDK calls, whose work evicts it from the CPU caches.
* Verdicts: "not met" when even the lower bound misses a target; otherwise what the end-to-end interval
  says: "met", "not met", or "inconclusive" when it straddles the target (run longer, or on a quiet box).

Usage: ``python benchmarks/overhead.py [--quick] [--json]``. The exit code is 0 whether or not the targets
are met: this is a report, not a gate.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from respan_auto import config
from respan_auto.context import ContextAttributesProcessor
from respan_auto.export.batch import BatchProcessor
from respan_auto.export.otlp import OtlpHttpExporter
from respan_auto.instrumentation.mistralai import MistralAIInstrumentor
from respan_auto.testing.mistral_server import completion_body, sse_events
from respan_auto.testing.otlp_receiver import OtlpReceiver, decode
from respan_auto.version import __version__

MODEL = "mistral-small-latest"
STREAM_CHUNKS = 100
COMPLETE_MESSAGES = [{"role": "user", "content": "Say hello to the benchmark in one short sentence."}]
STREAM_MESSAGES = [{"role": "user", "content": f"Tell a long story. #chunks={STREAM_CHUNKS}"}]
TARGET_COMPLETE_PCT = 3.0
TARGET_CHUNK_US = 2.0
MIN_ROUNDS = 6


@dataclass(frozen=True)
class Phase:
    """How long to measure and how long one block of calls should last."""

    seconds: float
    block_seconds: float


FULL = {"end_to_end": Phase(40.0, 0.05), "alone": Phase(8.0, 0.02)}
QUICK = {"end_to_end": Phase(6.0, 0.05), "alone": Phase(1.5, 0.02)}

Workloads = dict[str, Callable[[], None]]


# ---------------------------------------------------------------- the SDK, on an in-process transport


def _canned_answers(http: Any) -> Callable[[Any], Any]:
    """A ``MockTransport`` handler speaking the stand-in's JSON and SSE; answers are cached per request body."""
    cache: dict[bytes, bytes | list[bytes]] = {}

    def handle(request: Any) -> Any:
        raw = request.content
        answer = cache.get(raw)
        if answer is None:
            body = json.loads(raw)
            answer = list(sse_events(body)) if body.get("stream") else json.dumps(completion_body(body)).encode()
            cache[raw] = answer
        if isinstance(answer, list):  # one SSE frame per body chunk, as a chunked response arrives
            return http.Response(200, headers={"content-type": "text/event-stream"}, content=iter(answer))
        return http.Response(200, headers={"content-type": "application/json"}, content=answer)

    return handle


def mistral_client() -> Any:
    """A ``Mistral`` client of the installed generation whose HTTP client never opens a socket."""
    generation = int(version("mistralai").split(".")[0])
    root = "mistralai" if generation == 1 else "mistralai.client"
    http = importlib.import_module("httpx" if generation <= 2 else "httpx2")
    http_client = http.Client(transport=http.MockTransport(_canned_answers(http)), trust_env=False)
    return importlib.import_module(root).Mistral(api_key="k", server_url="http://127.0.0.1:1", client=http_client)


def workloads(client: Any) -> Workloads:
    """The measured calls, as an application makes them."""

    def complete() -> None:
        client.chat.complete(model=MODEL, messages=COMPLETE_MESSAGES)

    def stream() -> None:
        with client.chat.stream(model=MODEL, messages=STREAM_MESSAGES) as events:
            for _ in events:
                pass

    return {"complete": complete, "stream": stream}


class _Replay:
    """The SDK's ``EventStream`` as the instrumentation sees it (iterator, context manager, ``close``)."""

    def __init__(self, events: list[Any]) -> None:
        self._events = iter(events)

    def __iter__(self) -> _Replay:
        return self

    def __next__(self) -> Any:
        return next(self._events)

    def __enter__(self) -> _Replay:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None

    def close(self) -> None:
        return None


@contextmanager
def replayed_sdk(client: Any) -> Iterator[None]:
    """Swap ``Chat.complete``/``stream`` for replays of real SDK answers, so that only our wrappers cost time.

    Call while uninstrumented: ``instrument()`` then wraps the replays exactly as it wraps the SDK methods.
    """
    response = client.chat.complete(model=MODEL, messages=COMPLETE_MESSAGES)
    with client.chat.stream(model=MODEL, messages=STREAM_MESSAGES) as stream:
        events = list(stream)
    chat_class = type(client.chat)
    originals = {name: vars(chat_class)[name] for name in ("complete", "stream")}
    chat_class.complete = lambda self, **kwargs: response
    chat_class.stream = lambda self, **kwargs: _Replay(events)
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(chat_class, name, original)


# ---------------------------------------------------------------- where the spans go


def loopback_only() -> None:
    """Keep urllib's proxy settings from the environment off the exporter's requests to 127.0.0.1."""
    bypass = [p for p in (os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or "").split(",") if p.strip()]
    os.environ["no_proxy"] = ",".join([*bypass, "127.0.0.1"])


def make_provider(rx: OtlpReceiver) -> tuple[TracerProvider, BatchProcessor, str]:
    """A tracer provider wired as respan_auto's pipeline wires one, exporting to the receiver."""
    url = rx.base_url + "/v2/traces"
    processor = BatchProcessor(OtlpHttpExporter(url, {"Authorization": "Bearer benchmark"}))
    provider = TracerProvider()
    provider.add_span_processor(ContextAttributesProcessor())
    provider.add_span_processor(processor)
    return provider, processor, f"OtlpHttpExporter (OTLP protobuf, gzip, urllib) to {url}"


def receiver_decode_us_per_span(rx: OtlpReceiver) -> float | None:
    """What the receiver's decoding of the requests costs per span, timed again once the run is over."""
    bodies = [export.raw for export in rx.exports]
    start = time.perf_counter_ns()
    count = sum(len(decode(body)) for body in bodies)
    return round((time.perf_counter_ns() - start) / count / 1e3, 2) if count else None


# ---------------------------------------------------------------- measuring


def per_call_ns(call: Callable[[], None], count: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(count):
        call()
    return (time.perf_counter_ns() - start) / count


@dataclass
class Samples:
    """Per-block figures of one workload in ns per call; ``bare[i]`` and ``traced[i]`` are one round's pair."""

    bare: list[float] = field(default_factory=list)
    traced: list[float] = field(default_factory=list)
    export: list[float] = field(default_factory=list)


class Bench:
    """Runs blocks of calls, bare or instrumented, on one tracer provider.

    ``max_calls`` caps a block (with its untimed call) below the processor's batch size, at which the export
    thread would start sending in the middle of the block.
    """

    def __init__(self, provider: TracerProvider, max_calls: int) -> None:
        self.provider = provider
        self.max_calls = max_calls
        self.instrumentor = MistralAIInstrumentor()
        self.traced_calls = 0

    @contextmanager
    def mode(self, traced: bool) -> Iterator[None]:
        if traced:
            self.instrumentor.instrument(tracer_provider=self.provider)
        try:
            yield
        finally:
            if traced:
                self.instrumentor.uninstrument()

    def timed(self, call: Callable[[], None], count: int, traced: bool) -> tuple[float, float]:
        """(ns per call, ns per call spent flushing the spans out), after one untimed call.

        The untimed call keeps the cost of switching modes (``instrument()`` reads package metadata and
        evicts caches) out of the figures.
        """
        call()
        elapsed = per_call_ns(call, count)
        start = time.perf_counter_ns()
        self.provider.force_flush()
        if traced:
            self.traced_calls += count + 1
        return elapsed, (time.perf_counter_ns() - start) / count

    def calibrate(self, work: Workloads, block_seconds: float) -> dict[str, int]:
        """Calls per block, sized on the instrumented (slower) path, which this also warms up."""
        counts = {}
        with self.mode(traced=True):
            for name, call in work.items():
                count = 1
                while (block_ns := self.timed(call, count, traced=True)[0] * count) < block_seconds * 1e9 / 4:
                    if count == self.max_calls:
                        break
                    count = min(count * 4, self.max_calls)
                counts[name] = max(1, min(self.max_calls, round(count * block_seconds * 1e9 / block_ns)))
        with self.mode(traced=False):
            for name, call in work.items():
                self.timed(call, counts[name], traced=False)
        return counts

    def run(self, work: Workloads, phase: Phase) -> tuple[dict[str, Samples], dict[str, int]]:
        """ABBA rounds until the phase's time is up; returns the samples and the calls per block."""
        counts = self.calibrate(work, phase.block_seconds)
        samples = {name: Samples() for name in work}
        deadline = time.perf_counter() + phase.seconds
        rounds = 0
        while rounds < MIN_ROUNDS or time.perf_counter() < deadline:
            for traced in (False, True, True, False):  # two rounds, in ABBA order
                with self.mode(traced):
                    for name, call in work.items():
                        elapsed, export = self.timed(call, counts[name], traced)
                        (samples[name].traced if traced else samples[name].bare).append(elapsed)
                        if traced:
                            samples[name].export.append(export)
            rounds += 2
        return samples, counts


# ---------------------------------------------------------------- statistics and verdicts


Estimate = tuple[float, float, float]  # median, low and high ends of its 95 % interval


def median_ci(values: Sequence[float]) -> Estimate:
    """Median and its distribution-free 95 % interval (order statistics), robust to bursts of noise."""
    ordered = sorted(values)
    k = max(0, int(len(ordered) / 2 - 0.98 * math.sqrt(len(ordered))))
    return statistics.median(ordered), ordered[k], ordered[-1 - k]


def _figure(estimate: Estimate, scale: float, digits: int = 2) -> dict[str, Any]:
    value, low, high = (round(x * scale, digits) for x in estimate)
    return {"value": value, "ci95": [low, high]}


def _added(samples: Samples) -> Estimate:
    """The median per-round difference, instrumented minus bare, in ns."""
    return median_ci([traced - bare for bare, traced in zip(samples.bare, samples.traced, strict=True)])


def _per_chunk(result: dict[str, Any], added: Estimate, chunks: int) -> dict[str, Any]:
    if chunks > 1:
        result["added_us_per_chunk"] = _figure(added, 1e-3 / chunks, digits=3)
    return result


def end_to_end_figures(samples: Samples, chunks: int = 1) -> dict[str, Any]:
    """Medians of each side, and the median per-round difference and ratio with their intervals."""
    added = _added(samples)
    ratios = [traced / bare - 1 for bare, traced in zip(samples.bare, samples.traced, strict=True)]
    result = {
        "bare_us": round(statistics.median(samples.bare) / 1e3, 2),
        "instrumented_us": round(statistics.median(samples.traced) / 1e3, 2),
        "added_us": _figure(added, 1e-3),
        "overhead_pct": _figure(median_ci(ratios), 100),
        "rounds": len(ratios),
    }
    return _per_chunk(result, added, chunks)


def alone_figures(samples: Samples, bare_sdk_ns: float, chunks: int = 1) -> dict[str, Any]:
    """What the instrumentation adds by itself, also as a share of the bare SDK call, and what exporting costs.

    Export is timed here rather than end to end, where blocks are too short to amortise a request.
    """
    added = _added(samples)
    result = {
        "added_us": _figure(added, 1e-3),
        "pct_of_bare_sdk_call": _figure(added, 100 / bare_sdk_ns),
        "export_us_per_span": round(statistics.median(samples.export) / 1e3, 2),
        "rounds": len(samples.traced),
    }
    return _per_chunk(result, added, chunks)


def verdict(figure: dict[str, Any], limit: float) -> str:
    low, high = figure["ci95"]
    return "met" if high <= limit else "not met" if low > limit else "inconclusive"


def target(limit: float, unit: str, end_to_end: dict[str, Any], alone: dict[str, Any]) -> dict[str, Any]:
    """The end-to-end verdict, unless the instrumentation alone (a lower bound) already misses the target."""
    ends, alones = verdict(end_to_end, limit), verdict(alone, limit)
    return {
        "limit": limit,
        "unit": unit,
        "end_to_end": {**end_to_end, "verdict": ends},
        "alone": {**alone, "verdict": alones},
        "verdict": "not met" if alones == "not met" else ends,
    }


def figures(
    end_to_end: dict[str, Samples], alone: dict[str, Samples], counts: dict[str, dict[str, int]]
) -> dict[str, Any]:
    chunks = {"complete": 1, "stream": STREAM_CHUNKS}
    e2e = {name: end_to_end_figures(end_to_end[name], chunks[name]) for name in chunks}
    solo = {name: alone_figures(alone[name], statistics.median(end_to_end[name].bare), chunks[name]) for name in chunks}
    return {
        "end_to_end": {**e2e, "calls_per_block": counts["end_to_end"]},
        "alone": {**solo, "calls_per_block": counts["alone"]},
        "targets": {
            "complete_overhead": target(
                TARGET_COMPLETE_PCT, "%", e2e["complete"]["overhead_pct"], solo["complete"]["pct_of_bare_sdk_call"]
            ),
            "stream_per_chunk": target(
                TARGET_CHUNK_US, "us", e2e["stream"]["added_us_per_chunk"], solo["stream"]["added_us_per_chunk"]
            ),
        },
    }


# ---------------------------------------------------------------- reporting


def _ci(figure: dict[str, Any], fmt: str) -> str:
    low, high = figure["ci95"]
    return f"{figure['value']:{fmt}} [{low:{fmt}}, {high:{fmt}}]"


def print_table(result: dict[str, Any]) -> None:
    e2e, solo, targets, spans = result["end_to_end"], result["alone"], result["targets"], result["spans"]
    labels = {"complete": "chat.complete", "stream": f"chat.stream ({STREAM_CHUNKS} chunks)"}
    e2e_row = "{:<26}{:>10}{:>17}{:>30}{:>26}"
    solo_row = "{:<26}{:>26}{:>24}{:>26}{:>18}"
    lines = [
        f"respan_auto {result['respan_auto']} on mistralai {result['mistralai']}, {result['python']}; "
        f"content capture {'on' if result['capture_content'] else 'off'}; {result['elapsed_s']} s",
        f"spans: ContextAttributesProcessor + BatchProcessor, {result['exporter']}",
        "",
        f"End to end: the SDK on an in-process MockTransport; {e2e['complete']['rounds']} ABBA rounds of "
        f"{e2e['calls_per_block']['complete']} complete / {e2e['calls_per_block']['stream']} stream calls; "
        "median of pairs [95 % CI]",
        e2e_row.format("", "bare us", "instrumented us", "added us", "overhead %"),
    ]
    for name, label in labels.items():
        fig = e2e[name]
        lines.append(
            e2e_row.format(
                label,
                f"{fig['bare_us']:.1f}",
                f"{fig['instrumented_us']:.1f}",
                _ci(fig["added_us"], "+.1f"),
                _ci(fig["overhead_pct"], "+.2f"),
            )
        )
    lines += [
        "",
        f"Instrumentation alone: SDK methods replaced by replays of real SDK answers; {solo['complete']['rounds']} "
        f"ABBA rounds of {solo['calls_per_block']['complete']} / {solo['calls_per_block']['stream']} calls",
        solo_row.format("", "added us", "% of bare SDK call", "added us per chunk", "export us/span*"),
    ]
    for name, label in labels.items():
        fig = solo[name]
        lines.append(
            solo_row.format(
                label,
                _ci(fig["added_us"], "+.1f"),
                _ci(fig["pct_of_bare_sdk_call"], "+.2f"),
                _ci(fig["added_us_per_chunk"], "+.3f") if "added_us_per_chunk" in fig else "",
                f"{fig['export_us_per_span']:.1f}",
            )
        )
    lines.append("")
    for label, key in (("complete overhead", "complete_overhead"), ("stream added per chunk", "stream_per_chunk")):
        tgt = targets[key]
        fmt = "+.2f" if tgt["unit"] == "%" else "+.3f"
        lines.append(
            f"target {label} <= {tgt['limit']:g} {tgt['unit']}: {tgt['verdict'].upper()} "
            f"(alone {_ci(tgt['alone'], fmt)} {tgt['alone']['verdict']}; "
            f"end to end {_ci(tgt['end_to_end'], fmt)} {tgt['end_to_end']['verdict']})"
        )
    lines += [
        "",
        f"spans: {spans['received']} received in {spans['export_batches']} batches, {spans['expected']} expected, "
        f"{spans['dropped']} dropped",
        f"* includes the in-process receiver's decoding: {spans['receiver_decode_us_per_span']} us/span",
    ]
    if spans["received"] != spans["expected"] or spans["failed_batches"]:
        lines.append(
            f"WARNING: the exporter did not deliver exactly one span per instrumented call "
            f"({spans['failed_batches']} requests answered with an error)"
        )
    print("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter run (~10 s)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    phases = QUICK if args.quick else FULL

    started = time.perf_counter()
    loopback_only()
    client = mistral_client()
    with OtlpReceiver() as rx:
        provider, processor, exporter = make_provider(rx)
        bench = Bench(provider, max_calls=processor.max_batch_size - 2)
        try:
            end_to_end, e2e_counts = bench.run(workloads(client), phases["end_to_end"])
            with replayed_sdk(client):
                alone, alone_counts = bench.run(workloads(client), phases["alone"])
        finally:
            provider.shutdown()
        received = len(rx.spans)
        failed = sum(1 for export in rx.exports if not export.spans)
        spans = {
            "expected": bench.traced_calls,
            "received": received,
            "dropped": processor.dropped,
            "export_batches": len(rx.exports),
            "failed_batches": failed,
            "receiver_decode_us_per_span": receiver_decode_us_per_span(rx),
        }
    result = {
        "respan_auto": __version__,
        "mistralai": version("mistralai"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "capture_content": config.capture_content(),
        "exporter": exporter,
        **figures(end_to_end, alone, {"end_to_end": e2e_counts, "alone": alone_counts}),
        "spans": spans,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
