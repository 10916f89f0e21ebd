"""Our export pipeline against the plain OpenTelemetry one: CPU per span, peak memory, throughput.

Why it is built this way:

* Two pipelines, each from its defaults: ours, ``Pipeline(Settings.load(...))`` with RESPAN_API_KEY and
  RESPAN_BASE_URL, as ``Respan()`` and the launcher build it (context processor, end stage, the SDK's
  ``BatchSpanProcessor``, export stage, the standard OTLP/HTTP exporter with gzip, our sender thread); and the
  plain one, a ``TracerProvider`` with a ``BatchSpanProcessor`` and the standard ``OTLPSpanExporter`` (gzip).
  A third arm, a provider with no processor, is the floor: what making the spans costs anyway.
* The spans are LLM spans as our instrumentation records them: 25 attributes, a system prompt, a prompt of
  about 800 characters and a completion of about 600, each also inside the JSON message attributes (about
  4 KB a span); one span in ten carries a long retrieval prompt (16 KB). Every span's text is unique.
* Each run is a child process (pinned off the receiver's core), so that its memory is its own: the baseline
  is taken after a warm-up export (imports and lazy set-up done), the peak is the kernel's high-water mark
  (``VmHWM``, reset after the baseline). The receiver, ``respan_auto.testing``'s ``OtlpReceiver`` in a process
  of its own (``_receiver.py``), decodes every request; its CPU is not the pipeline's.
* The spans come in waves of 2,000, each followed by a flush: a wave fits either pipeline's default queue
  (2,048 spans), so nothing is dropped and the peak is that of a nearly full default queue, the worst case.
  CPU per span is the whole process's (app thread, batch processor, sender) from the first span to the last
  flush, minus the floor's; throughput is spans delivered per second of that time.
* Arms alternate over the runs (floor, ours, plain, plain, ours, floor...), and figures are medians.

Usage: ``python benchmarks/export.py [--quick] [--json] [--spans N] [--runs N]``. The exit code is 0: this
is a report, not a gate.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import version
from typing import Any

from _receiver import ReceiverProcess, other_cores

from respan_auto.version import __version__

ARMS = ("floor", "ours", "plain")
WAVE = 2000
WARM_UP = 200
API_KEY = "rsp_0123456789abcdef0123456789abcdef"  # in no span's text: a key found there would be redacted
SYSTEM = "You are a helpful assistant for an online shop. Answer briefly, cite the documents you used."
WORDS = (
    "order refund shipping invoice customer product search ranking vector embedding agent tool call result "
    "retry budget report quarter revenue growth translate english french meeting schedule calendar email draft "
    "review code function python test paris weather forecast policy account password reset delivery tracking"
).split()


# ---------------------------------------------------------------- the spans


def _text(rng: random.Random, length: int) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < length:
        words.append(rng.choice(WORDS))
    return " ".join(words)[:length]


class Workload:
    """Attributes of chat spans, unique per span (a numbered tag), from a pool of texts made once."""

    POOL = 64

    def __init__(self, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.prompts = [_text(rng, 800) for _ in range(self.POOL)]
        self.contexts = [_text(rng, 16_000) for _ in range(self.POOL // 8)]
        self.completions = [_text(rng, 600) for _ in range(self.POOL)]

    def span(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """(attributes at start, attributes at end) of span ``i``."""
        k = i % self.POOL
        prompt = f"{self.prompts[k]} #{i:08d}"
        if i % 10 == 9:
            prompt = f"{self.contexts[k % len(self.contexts)]}\n\n{prompt}"
        completion = f"{self.completions[k]} #{i:08d}"
        tokens_in, tokens_out = len(prompt) // 4, len(completion) // 4
        start = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "mistral_ai",
            "gen_ai.system": "mistral_ai",
            "llm.request.type": "chat",
            "gen_ai.request.model": "mistral-small-latest",
            "gen_ai.request.temperature": 0.2,
            "gen_ai.prompt.0.role": "system",
            "gen_ai.prompt.0.content": SYSTEM,
            "gen_ai.prompt.1.role": "user",
            "gen_ai.prompt.1.content": prompt,
            "gen_ai.input.messages": json.dumps(
                [
                    {"role": "system", "parts": [{"type": "text", "content": SYSTEM}]},
                    {"role": "user", "parts": [{"type": "text", "content": prompt}]},
                ]
            ),
            "server.address": "api.mistral.ai",
            "server.port": 443,
        }
        end = {
            "gen_ai.response.id": f"cmpl-{i:024x}",
            "gen_ai.response.model": "mistral-small-2506",
            "gen_ai.usage.input_tokens": tokens_in,
            "gen_ai.usage.prompt_tokens": tokens_in,
            "gen_ai.usage.output_tokens": tokens_out,
            "gen_ai.usage.completion_tokens": tokens_out,
            "llm.usage.total_tokens": tokens_in + tokens_out,
            "gen_ai.response.finish_reasons": ("stop",),
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.content": completion,
            "gen_ai.output.messages": json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": completion}], "finish_reason": "stop"}]
            ),
        }
        return start, end


# ---------------------------------------------------------------- one run, in a child process


def rss_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def reset_peak() -> bool:
    """Make VmHWM start again from the current RSS (Linux), so that it holds this run's peak."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def build(arm: str, receiver_url: str) -> tuple[Any, Callable[[], bool]]:
    """(tracer provider, flush) of an arm; the flush returns once every ended span has been delivered."""
    if arm == "ours":
        from respan_auto.config import Settings
        from respan_auto.export.pipeline import Pipeline

        environ = {"RESPAN_API_KEY": API_KEY, "RESPAN_BASE_URL": receiver_url + "/api"}
        pipeline = Pipeline(Settings.load(environ=environ), environ=environ)
        return pipeline.provider, lambda: pipeline.flush(timeout=60.0)
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    if arm == "plain":
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporter = OTLPSpanExporter(endpoint=receiver_url + "/v1/traces", compression=Compression.Gzip)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider, lambda: bool(provider.force_flush(60_000))


def produce(tracer: Any, workload: Workload, spans: range) -> None:
    from opentelemetry.trace import SpanKind

    for i in spans:
        start, end = workload.span(i)
        span = tracer.start_span("chat mistral-small-latest", kind=SpanKind.CLIENT, attributes=start)
        span.set_attributes(end)
        span.end()


def waves(first: int, count: int) -> Iterator[range]:
    for start in range(first, first + count, WAVE):
        yield range(start, min(first + count, start + WAVE))


def child(arm: str, receiver_url: str, count: int) -> dict[str, Any]:
    """One run of ``arm``: warm up, take the memory baseline, then ``count`` spans in flushed waves."""
    _, own_cores = other_cores()
    if own_cores:
        os.sched_setaffinity(0, own_cores)  # off the receiver's core
    workload = Workload()
    provider, flush = build(arm, receiver_url)
    tracer = provider.get_tracer("respan_auto.instrumentation.mistralai")
    produce(tracer, workload, range(WARM_UP))
    flush()
    gc.collect()
    baseline = rss_kb("VmRSS")
    peak_reset = reset_peak()
    flushed = True
    app_ns = 0
    started, cpu = time.perf_counter(), time.process_time_ns()
    for wave in waves(WARM_UP, count):
        thread = time.thread_time_ns()
        produce(tracer, workload, wave)
        app_ns += time.thread_time_ns() - thread
        flushed = flush() and flushed
    cpu, wall = time.process_time_ns() - cpu, time.perf_counter() - started
    return {
        "arm": arm,
        "spans": count,
        "cpu_us_per_span": cpu / count / 1e3,
        "app_thread_us_per_span": app_ns / count / 1e3,
        "spans_per_s": count / wall,
        "baseline_mb": baseline / 1024,
        "peak_added_mb": ((rss_kb("VmHWM") if peak_reset else rss_kb("VmRSS")) - baseline) / 1024,
        "peak_is_high_water_mark": peak_reset,
        "flushed": flushed,
    }


def run_child(arm: str, receiver: ReceiverProcess, count: int) -> dict[str, Any]:
    """A fresh interpreter for one run; the receiver's counts before and after say what arrived."""
    before = receiver.stats()
    command = [sys.executable, os.path.abspath(__file__), "--child", arm, receiver.url, str(count)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    after = receiver.stats()
    result["received"] = after.get("spans", 0) - before.get("spans", 0)
    result["bytes_per_span"] = (after.get("raw_bytes", 0) - before.get("raw_bytes", 0)) / max(1, result["received"])
    result["refused_requests"] = after.get("failed", 0) - before.get("failed", 0)
    return result


# ---------------------------------------------------------------- the report


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    by_arm = {arm: [r for r in runs if r["arm"] == arm] for arm in ARMS}
    floor = statistics.median(r["cpu_us_per_span"] for r in by_arm["floor"])
    result: dict[str, Any] = {}
    for arm, rows in by_arm.items():
        figures = {
            key: round(statistics.median(r[key] for r in rows), 1)
            for key in ("cpu_us_per_span", "app_thread_us_per_span", "spans_per_s", "baseline_mb", "peak_added_mb")
        }
        figures["pipeline_cpu_us_per_span"] = round(figures["cpu_us_per_span"] - floor, 1)
        figures["runs"] = len(rows)
        if arm != "floor":
            figures["bytes_per_span"] = round(statistics.median(r["bytes_per_span"] for r in rows))
            figures["delivered"] = all(r["received"] == r["spans"] + WARM_UP and r["flushed"] for r in rows)
        result[arm] = figures
    ours, plain = result["ours"]["pipeline_cpu_us_per_span"], result["plain"]["pipeline_cpu_us_per_span"]
    result["ours_cpu_vs_plain"] = round(ours / plain, 2) if plain > 0 else None
    return result


def print_report(result: dict[str, Any]) -> None:
    row = "{:<8}{:>14}{:>16}{:>18}{:>14}{:>14}{:>16}{:>12}"
    lines = [
        f"respan_auto {result['respan_auto']}, opentelemetry-sdk {result['otel_sdk']}, {result['python']}, "
        f"{result['cpus']}; {result['runs']} run(s) of {result['spans']} spans per arm, median; "
        f"{result['elapsed_s']} s",
        "floor: spans made, no processor; ours: respan_auto Pipeline (defaults); plain: BatchSpanProcessor + "
        "OTLPSpanExporter (gzip)",
        "",
        row.format(
            "",
            "CPU us/span",
            "pipeline us/sp",
            "app thread us/sp",
            "spans/s",
            "base RSS MB",
            "peak added MB",
            "KB/span",
        ),
    ]
    for arm in ARMS:
        fig = result["arms"][arm]
        lines.append(
            row.format(
                arm,
                fig["cpu_us_per_span"],
                fig["pipeline_cpu_us_per_span"] if arm != "floor" else "",
                fig["app_thread_us_per_span"],
                f"{fig['spans_per_s']:.0f}",
                fig["baseline_mb"],
                fig["peak_added_mb"],
                f"{fig['bytes_per_span'] / 1024:.1f}" if "bytes_per_span" in fig else "",
            )
        )
    ratio = result["arms"]["ours_cpu_vs_plain"]
    lines += ["", f"ours / plain, pipeline CPU per span: {ratio}x" if ratio is not None else ""]
    lost = [arm for arm in ("ours", "plain") if not result["arms"][arm]["delivered"]]
    if lost:
        lines.append(f"WARNING: not every span reached the receiver with {', '.join(lost)}")
    print("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short run per arm")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--spans", type=int, help="spans per run (default 10000, quick 2000)")
    parser.add_argument("--runs", type=int, help="runs per arm (default 3, quick 1)")
    parser.add_argument("--child", nargs=3, metavar=("ARM", "URL", "SPANS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        arm, url, count = args.child
        print(json.dumps(child(arm, url, int(count))))
        return 0
    spans = args.spans or (2000 if args.quick else 10_000)
    runs = args.runs or (1 if args.quick else 3)
    started = time.perf_counter()
    os.environ["no_proxy"] = ",".join(filter(None, [os.environ.get("no_proxy", ""), "127.0.0.1"]))
    receiver_core, own_cores = other_cores()
    order = [arm for i in range(runs) for arm in (ARMS if i % 2 == 0 else ARMS[::-1])]
    with ReceiverProcess(receiver_core) as receiver:
        results = [run_child(arm, receiver, spans) for arm in order]
    result = {
        "respan_auto": __version__,
        "otel_sdk": version("opentelemetry-sdk"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpus": f"runs on cores {sorted(own_cores)}, receiver on core {receiver_core}" if own_cores else "unpinned",
        "spans": spans,
        "runs": runs,
        "arms": summarize(results),
        "raw": results,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
