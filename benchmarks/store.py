"""The local SQLite store: write throughput from one process and from eight at once, and listing time at 100,000 spans.

Why it is built this way:

* Spans are real ``ReadableSpan`` objects shaped like a traced app's: traces of five spans (a task, two chat calls
  with usage, model, customer and prompts/completions of about 2 KB, a tool call and a retrieval step), one trace in
  ten with an error, three apps, two models, fifty customers, spread over the last twenty days. Every text is unique.
* Throughput counts only ``LocalStoreExporter.export`` (spans built outside the timing), in batches of 512 as the
  SDK's batch processor hands them over; spans per second is spans over the time inside ``export``. Eight
  processes write one fresh store together: each makes its spans first, then all start on a common instant, and
  their rate is all spans over the wall time from that instant to the last one's end.
* Listing is ``list_traces`` on the store the single process filled (about 20,000 traces), each query's median of
  five runs: the default page, and pages filtered by app, model, errors and prompt text (a rare word, and a word
  found nowhere, which reads every span).
* Retention is set out of reach (no size or age bound), so that every span written stays for the queries.

Usage: ``python benchmarks/store.py [--spans N]``. The exit code is 0: this is a report, not a gate.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from respan_auto.export.local_store import LocalStoreExporter, TraceQuery, list_traces

BATCH = 512
SPANS_PER_TRACE = 5
APPS = ("checkout", "search", "support-bot")
MODELS = ("mistral-small-2506", "mistral-large-2411")
WORDS = "the store keeps prompts and completions private to its user while many writers add spans".split()
DAY = 86400 * 10**9


def _text(rng: random.Random, size: int) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < size:
        words.append(rng.choice(WORDS) + str(rng.randrange(10**6)))
    return " ".join(words)


class _Trace:
    """Makes the child spans of one trace."""

    def __init__(self, rng: random.Random, root: SpanContext, resource: Resource, customer: str, start: int) -> None:
        self.rng, self.root, self.resource, self.customer, self.start = rng, root, resource, customer, start

    def span(self, name: str, offset: int, length: int, attributes: dict, error: bool = False) -> ReadableSpan:
        context = SpanContext(self.root.trace_id, self.rng.getrandbits(64), is_remote=False, trace_flags=TraceFlags(1))
        return ReadableSpan(
            name=name,
            context=context,
            parent=self.root,
            resource=self.resource,
            attributes={"respan.customer_params.customer_identifier": self.customer, **attributes},
            kind=SpanKind.CLIENT,
            status=Status(StatusCode.ERROR if error else StatusCode.UNSET),
            start_time=self.start + offset,
            end_time=self.start + offset + length,
        )


def _spans(seed: int, traces: int) -> Iterator[ReadableSpan]:
    """``traces`` traces of five spans each, as a traced LLM app records them."""
    rng = random.Random(seed)
    now = time.time_ns()
    for _ in range(traces):
        trace_id, start = rng.getrandbits(128), now - rng.randrange(20 * DAY)
        app, customer, failed = rng.choice(APPS), f"customer-{rng.randrange(50)}", rng.random() < 0.1
        resource = Resource.create({"service.name": app})
        root = SpanContext(trace_id, rng.getrandbits(64), is_remote=False, trace_flags=TraceFlags(1))

        child = _Trace(rng, root, resource, customer, start)

        for index in range(2):
            model = rng.choice(MODELS)
            prompt, answer = _text(rng, 900), _text(rng, 700)
            attributes = {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": model,
                "gen_ai.response.model": model,
                "gen_ai.usage.input_tokens": rng.randrange(50, 2000),
                "gen_ai.usage.output_tokens": rng.randrange(20, 800),
                "gen_ai.prompt.0.role": "user",
                "gen_ai.prompt.0.content": prompt,
                "gen_ai.completion.0.role": "assistant",
                "gen_ai.completion.0.content": answer,
                "gen_ai.response.time_to_first_chunk": rng.random(),
            }
            if failed and index:
                attributes["error.type"] = "500"
            yield child.span(f"chat {model}", 1000 + index * 10**8, 9 * 10**7, attributes, failed and bool(index))
        yield child.span("lookup_order", 3 * 10**8, 10**6, {"tool.arguments": _text(rng, 200)})
        yield child.span("retrieve", 500, 10**5, {"query": _text(rng, 100)})
        yield ReadableSpan(
            name="handle_request",
            context=root,
            resource=resource,
            attributes={"respan.customer_params.customer_identifier": customer},
            events=[Event("respan.stream.chunk", {"index": 0, "size": 12}, start + 10)],
            status=Status(StatusCode.ERROR if failed else StatusCode.UNSET),
            start_time=start,
            end_time=start + 4 * 10**8,
        )


def _batches(spans: Iterator[ReadableSpan]) -> Iterator[list[ReadableSpan]]:
    while batch := [s for _, s in zip(range(BATCH), spans, strict=False)]:
        yield batch


def write(path: str, seed: int, traces: int) -> tuple[int, float]:
    """Export the spans in batches, made as they go; the spans written and the seconds spent inside ``export``."""
    exporter = LocalStoreExporter(path, max_bytes=2**50, max_age=10**9)
    written, spent = 0, 0.0
    for batch in _batches(_spans(seed, traces)):
        started = time.perf_counter()
        exporter.export(batch)
        spent += time.perf_counter() - started
        written += len(batch)
    exporter.shutdown()
    return written, spent


def write_at(path: str, seed: int, traces: int, begin_at: float) -> None:
    """Make every span first, then export them all from ``begin_at`` on: the wall time is the writing alone."""
    exporter = LocalStoreExporter(path, max_bytes=2**50, max_age=10**9)
    batches = list(_batches(_spans(seed, traces)))
    while time.time() < begin_at:
        time.sleep(0.001)
    for batch in batches:
        exporter.export(batch)
    exporter.shutdown()


def parallel(path: str, processes: int, traces: int) -> float:
    """Spans per second of ``processes`` writers of one store, from their common start to the last one's end."""
    begin_at = time.time() + 15.0  # all have made their spans and wait by then
    workers = [
        subprocess.Popen([sys.executable, __file__, "--worker", path, str(seed), str(traces), str(begin_at)])
        for seed in range(1, processes + 1)
    ]
    for worker in workers:
        worker.wait()
    return processes * traces * SPANS_PER_TRACE / (time.time() - begin_at)


def timed(path: str, query: TraceQuery, runs: int = 5) -> tuple[float, int]:
    times, found = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        found = len(list_traces(path, query))
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        path, seed, traces, begin_at = options.worker
        write_at(path, int(seed), int(traces), float(begin_at))
        return 0
    traces = options.spans // SPANS_PER_TRACE
    with tempfile.TemporaryDirectory() as folder:
        single = os.path.join(folder, "one", "traces.db")
        spans, spent = write(single, 0, traces)
        print(f"store write, 1 process:   {spans / spent:>9,.0f} spans/s  ({spans:,} spans, {spent:.1f} s in export)")
        rate = parallel(os.path.join(folder, "eight", "traces.db"), 8, traces // 8)
        print(f"store write, 8 processes: {rate:>9,.0f} spans/s  (one store, {os.cpu_count()} cores)")
        size = os.path.getsize(single)  # the writer closed it last: the WAL is checkpointed into it
        print(f"\nlist_traces over {spans:,} spans ({traces:,} traces, {size / 2**20:.0f} MiB), median of 5:")
        print(f"  {'query':<34}{'ms':>8}{'traces':>8}")
        queries = {
            "default (newest 50)": TraceQuery(),
            "app=search": TraceQuery(app="search"),
            "model=mistral-large-2411": TraceQuery(model="mistral-large-2411"),
            "errors only": TraceQuery(errors=True),
            "text, a rare word": TraceQuery(text="completions123"),
            "text, found nowhere (full scan)": TraceQuery(text="zebra crossing"),
            "all four filters": TraceQuery(app="search", model="mistral-large-2411", errors=True, text="store"),
        }
        for name, query in queries.items():
            millis, found = timed(single, query)
            print(f"  {name:<34}{millis:>8.1f}{found:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
