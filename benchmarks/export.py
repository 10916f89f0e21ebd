"""Export throughput and memory of respan_auto's span pipeline: BatchProcessor -> OtlpHttpExporter -> loopback.

Why it is built this way:

* The pipeline is the product's own: ``BatchProcessor`` (the default queue of ``Settings``, 2048 spans, batches
  of 512), the ``make_preparer`` step (redaction and truncation with default settings; measured with and
  without it) and ``OtlpHttpExporter`` (gzip OTLP protobuf over urllib), under an opentelemetry-sdk
  ``TracerProvider`` with the span limits ``Pipeline`` uses.
* The receiver runs in a separate process (``sys.executable -c``) on 127.0.0.1 and, when the machine has two
  cores, on the other core, so it never shares the measured process's GIL or CPU. It answers 200 at once and
  decodes each request (gzip, ``ExportTraceServiceRequest``) only after answering, to count spans: its
  decoding lands neither in the measured process nor in the exporter's wait. Nothing else is contacted.
* Each run is a fresh child process, so that every memory baseline is clean. "One core" pins the child with
  ``os.sched_setaffinity`` (app thread, export thread and RSS sampler share that core); "unpinned" lets it use
  every core, the receiver's included (the receiver stays pinned to its own).
* The workload is spans shaped like the Mistral instrumentation's chat span: 25 attributes (13 at start,
  12 at end) with a 300-character prompt and a 300-character completion, both repeated in the JSON message
  attributes, token counts, ids; every span's text is unique (built just before its chunk is timed), and spans
  come in parent-child pairs.
* Throughput is spans per second from the first span's start to the moment ``force_flush`` has returned True
  and the receiver reports every span decoded. The app thread never blocks in the pipeline: past a full queue
  spans are dropped, so the producer pauses while the queue is nearly full (it reads the processor's queue
  length), and the figure is what the pipeline sustains without losing spans; the queue then stays nearly full,
  the worst case for memory with the default bound. The producer-side cost is the
  app thread's create+end time per span (wall, pauses excluded, and its CPU time), next to the bare SDK's
  (a ``TracerProvider`` with no processor).
* Memory is VmRSS from /proc/self/status: the baseline after every import and a warm-up export (so import cost
  and lazy imports are not counted), the peak during the run (a sampler thread every 5 ms, and VmHWM reset
  through /proc/self/clear_refs when allowed), and after flush + gc. "Added" is peak - baseline. The import cost
  of ``respan_auto.export.pipeline`` and of the exporter with its OTLP encoder is measured in a fresh interpreter.
* The export thread's work is also timed stage by stage, synchronously on one core (prepare, ``encode_request``,
  serialization, gzip, HTTP post), to show where its time goes; ``--profile`` adds a cProfile of the real
  export thread during a run.

Usage: ``python benchmarks/export.py [--quick] [--json] [--profile] [--spans N] [--runs N]``. The exit code is
0 whether or not the targets are met: this is a report, not a gate.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import gzip
import http.client
import json
import os
import platform
import pstats
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider

from respan_auto.config import Settings
from respan_auto.export.batch import BatchProcessor
from respan_auto.export.encoding import encode_request
from respan_auto.export.otlp import OtlpHttpExporter
from respan_auto.export.pipeline import make_preparer
from respan_auto.version import __version__

TARGET_SPANS_PER_S = 20_000
TARGET_ADDED_MB = 25.0
FULL_SPANS, FULL_RUNS = 50_000, 3
QUICK_SPANS, QUICK_RUNS = 10_000, 1
FLOOR_SPANS = 10_000  # bare SDK spans per run
STAGE_SPANS = 8192  # spans for the stage-by-stage timing
CHUNK = 64  # spans produced between two looks at the queue
SAMPLE_S = 0.005
MB = 1024 * 1024
CONFIGS = (  # (key, label, prepare, pinned)
    ("one_core_prepared", "one core, with prepare", True, True),
    ("one_core_raw", "one core, no prepare", False, True),
    ("unpinned_prepared", "unpinned, with prepare", True, False),
    ("unpinned_raw", "unpinned, no prepare", False, False),
)

RECEIVER = r"""
import gzip, json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
try:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
except ImportError:
    ExportTraceServiceRequest = None
lock = threading.Lock()
stats = {"requests": 0, "bytes": 0, "raw_bytes": 0, "spans": 0, "decode_s": 0.0,
         "decodes": ExportTraceServiceRequest is not None}

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, payload):
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def do_GET(self):
        with lock:
            payload = json.dumps(stats).encode()
        self.answer(payload)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        with lock:
            stats["requests"] += 1
            stats["bytes"] += len(body)
        self.answer(b"{}")
        started = time.perf_counter()  # decoded after answering: the exporter never waits on it
        raw = gzip.decompress(body) if self.headers.get("content-encoding") == "gzip" else body
        spans = 0
        if ExportTraceServiceRequest is not None:
            request = ExportTraceServiceRequest()
            request.ParseFromString(raw)
            spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        with lock:
            stats["raw_bytes"] += len(raw)
            stats["spans"] += spans
            stats["decode_s"] += time.perf_counter() - started

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()  # until the benchmark closes the pipe
"""

IMPORT_PROBE = r"""
import json, sys
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))
before = rss()
import respan_auto.export.pipeline
pipeline = rss()
import respan_auto.export.otlp
import respan_auto.export.encoding
otlp = rss()
print(json.dumps({"interpreter": before, "pipeline": pipeline - before, "otlp": otlp - pipeline}))
"""


# ---------------------------------------------------------------- memory


def rss_bytes(field: str = "VmRSS") -> int | None:
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(field.encode() + b":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so that it holds this run's peak."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


class RssSampler(threading.Thread):
    def __init__(self, interval: float = SAMPLE_S) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.interval = interval
        self.peak = rss_bytes() or 0
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            with open("/proc/self/status", "rb", buffering=0) as status:
                while not self._stop_event.wait(self.interval):
                    status.seek(0)
                    for line in status.read().splitlines():
                        if line.startswith(b"VmRSS:"):
                            self.peak = max(self.peak, int(line.split()[1]) * 1024)
                            self.samples += 1
                            break
        except OSError:
            pass

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, rss_bytes() or 0)


# ---------------------------------------------------------------- the receiver (another process)


class Receiver:
    """The loopback receiver subprocess: counts requests and bytes, decodes after answering to count spans."""

    def __init__(self, core: int | None) -> None:
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RECEIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.core = None
        if core is not None:
            try:
                os.sched_setaffinity(self.proc.pid, {core})
                self.core = core
            except OSError:
                pass

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(5)


def receiver_stats(port: int) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/stats")
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    return {k: after[k] - before[k] for k in ("requests", "bytes", "raw_bytes", "spans", "decode_s")}


# ---------------------------------------------------------------- the workload


WORDS = (
    "the model answer question context retrieval document summary user assistant token stream latency "
    "request response paris france weather forecast invoice customer order shipping refund policy product "
    "search ranking vector embedding agent tool call result error retry budget report quarter revenue growth "
    "translate english french german meeting schedule calendar email draft review code function python test"
).split()
SYSTEM = "You are a helpful assistant. Answer briefly and cite the documents you used."
POOL = 128


def _text(rng: random.Random, length: int) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < length:
        words.append(rng.choice(WORDS))
    return " ".join(words)[:length]


class Workload:
    """Attribute values of Mistral chat spans, unique per span; ``values`` builds one chunk's worth."""

    def __init__(self, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.prompts = [_text(rng, 291) for _ in range(POOL)]  # + a 9-character tag = 300
        self.completions = [_text(rng, 291) for _ in range(POOL)]
        self.system_json = json.dumps([{"type": "text", "content": SYSTEM}])
        self.input_head = (
            '[{"role": "system", "parts": [{"type": "text", "content": "' + SYSTEM + '"}]}, '
            '{"role": "user", "parts": [{"type": "text", "content": "'
        )
        self.output_head = '[{"role": "assistant", "parts": [{"type": "text", "content": "'
        self.output_tail = '"}], "finish_reason": "stop"}]'

    def values(self, start: int, stop: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        out = []
        for i in range(start, stop):
            k = i % POOL
            tag = f" #{i:07d}"
            prompt = self.prompts[k] + tag
            completion = self.completions[k] + tag
            input_tokens, output_tokens = 60 + k, 70 + (i % 97)
            at_start = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "mistral_ai",
                "gen_ai.system": "mistral_ai",
                "llm.request.type": "chat",
                "gen_ai.request.model": "mistral-small-latest",
                "gen_ai.prompt.0.role": "system",
                "gen_ai.prompt.0.content": SYSTEM,
                "gen_ai.prompt.1.role": "user",
                "gen_ai.prompt.1.content": prompt,
                "gen_ai.input.messages": self.input_head + prompt + '"}]}]',
                "gen_ai.system_instructions": self.system_json,
                "server.address": "api.mistral.ai",
                "server.port": 443,
            }
            at_end = {
                "gen_ai.response.id": f"cmpl-{i:024x}",
                "gen_ai.response.model": "mistral-small-2506",
                "gen_ai.usage.input_tokens": input_tokens,
                "gen_ai.usage.prompt_tokens": input_tokens,
                "gen_ai.usage.output_tokens": output_tokens,
                "gen_ai.usage.completion_tokens": output_tokens,
                "llm.usage.total_tokens": input_tokens + output_tokens,
                "gen_ai.response.finish_reasons": ("stop",),
                "gen_ai.completion.0.role": "assistant",
                "gen_ai.completion.0.content": completion,
                "gen_ai.completion.0.finish_reason": "stop",
                "gen_ai.output.messages": self.output_head + completion + self.output_tail,
            }
            out.append((at_start, at_end))
        return out


def make_provider(*processors: SpanProcessor) -> TracerProvider:
    """A provider as ``Pipeline`` builds one: no silent SDK truncation (``prepare`` does it, and says so)."""
    limits = SpanLimits(max_attribute_length=SpanLimits.UNSET, max_span_attribute_length=SpanLimits.UNSET)
    resource = Resource.create({"service.name": "export-benchmark"})
    provider = TracerProvider(resource=resource, shutdown_on_exit=False, span_limits=limits)
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def produce(
    provider: TracerProvider, workload: Workload, count: int, processor: BatchProcessor | None = None
) -> dict[str, float]:
    """``count`` chat spans in parent-child pairs; the app thread's create+end time, without pauses or value-making.

    With a ``processor``, pause (sleep) while its queue is nearly full, so that nothing is dropped.
    """
    tracer = provider.get_tracer("respan_auto.instrumentation.mistralai", __version__)
    client = trace.SpanKind.CLIENT
    limit = max(CHUNK, processor.max_queue_size - 2 * CHUNK) if processor is not None else 0
    wall = cpu = build = 0.0
    pauses = 0
    for first in range(0, count, CHUNK):
        started = time.perf_counter()
        chunk = workload.values(first, min(count, first + CHUNK))
        build += time.perf_counter() - started
        if processor is not None:
            while len(processor._queue) > limit:  # benchmark-only peek: spans past a full queue are dropped
                pauses += 1
                time.sleep(0.0002)
        started, started_cpu = time.perf_counter(), time.thread_time()
        for j in range(0, len(chunk) - 1, 2):
            (parent_start, parent_end), (child_start, child_end) = chunk[j], chunk[j + 1]
            parent = tracer.start_span("chat mistral-small-latest", kind=client, attributes=parent_start)
            child = tracer.start_span(
                "chat mistral-small-latest",
                context=trace.set_span_in_context(parent),
                kind=client,
                attributes=child_start,
            )
            child.set_attributes(child_end)
            child.end()
            parent.set_attributes(parent_end)
            parent.end()
        wall += time.perf_counter() - started
        cpu += time.thread_time() - started_cpu
    return {
        "us_per_span": wall / count * 1e6,
        "cpu_us_per_span": cpu / count * 1e6,
        "build_us_per_span": build / count * 1e6,
        "pauses": pauses,
    }


class Collector(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def collect(workload: Workload, count: int) -> list[ReadableSpan]:
    collector = Collector()
    produce(make_provider(collector), workload, count)
    return collector.spans


# ---------------------------------------------------------------- child runs (one fresh process each)


def settings() -> Settings:
    return Settings.load(environ={})


def make_processor(port: int, prepare: bool, profiled: bool = False) -> BatchProcessor:
    config = settings()
    exporter = OtlpHttpExporter(
        f"http://127.0.0.1:{port}/api/v2/traces",
        {"Authorization": "Bearer benchmark"},
        max_request_bytes=config.max_export_bytes,
    )
    preparer = make_preparer(config, {}) if prepare else None
    cls = ProfiledBatchProcessor if profiled else BatchProcessor
    return cls(exporter, max_queue_size=config.max_queue_size, prepare=preparer)


class ProfiledBatchProcessor(BatchProcessor):
    """The real export thread, under cProfile (stats complete once the processor is shut down)."""

    def _work(self) -> None:
        self.profile = cProfile.Profile()
        self.profile.runcall(super()._work)


def pin(core: int | None) -> bool:
    if core is None or not hasattr(os, "sched_setaffinity"):
        return False
    try:
        os.sched_setaffinity(0, {core})
        return True
    except OSError:
        return False


def warm_up(port: int, workload: Workload, prepare: bool) -> None:
    """Everything a run imports or compiles lazily, before the baseline: a throwaway export of a few spans."""
    spans = collect(workload, 2 * CHUNK)
    processor = make_processor(port, prepare)
    processor.force_flush(1000)
    prepared = [s for s in map(processor.prepare, spans) if s is not None] if processor.prepare else spans
    processor.exporter.send(prepared)
    processor.shutdown()
    produce(make_provider(), workload, 2 * CHUNK)


def wait_for_spans(port: int, before: dict[str, Any], count: int, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        got = delta(receiver_stats(port), before)
        if got["spans"] >= count or not before["decodes"] or time.monotonic() > deadline:
            return got
        time.sleep(0.001)


def child_run(spec: dict[str, Any]) -> dict[str, Any]:
    port, count = spec["port"], spec["spans"]
    pinned = pin(spec["core"])
    workload = Workload()
    warm_up(port, workload, spec["prepare"])
    gc.collect()
    baseline = rss_bytes()
    hwm_reset = reset_peak()
    sampler = RssSampler()
    sampler.start()

    processor = make_processor(port, spec["prepare"], profiled=spec.get("profile", False))
    provider = make_provider(processor)
    before = receiver_stats(port)
    started = time.perf_counter()
    producer = produce(provider, workload, count, processor)
    produced = time.perf_counter()
    flushed = processor.force_flush(120_000)
    flush_returned = time.perf_counter()
    arrived = wait_for_spans(port, before, count)
    confirmed = time.perf_counter()
    gc.collect()
    after = rss_bytes()
    peak = sampler.stop()
    hwm = rss_bytes("VmHWM") if hwm_reset else None
    if hwm is not None:
        peak = max(peak, hwm)
    dropped, failed = processor.dropped, processor.failed
    provider.shutdown()
    profile = profile_rows(processor.profile) if spec.get("profile") else None

    floor = produce(make_provider(), workload, min(count, FLOOR_SPANS))
    result: dict[str, Any] = {
        "pinned": pinned,
        "spans": count,
        "spans_per_s": count / (confirmed - started),
        "produce_s": produced - started,
        "flush_wait_ms": (flush_returned - produced) * 1e3,
        "confirm_ms": (confirmed - flush_returned) * 1e3,
        "flushed": flushed,
        "producer": producer,
        "bare_sdk": floor,
        "dropped": dropped,
        "failed": failed,
        "received": arrived,
        "rss": {
            "baseline_mb": baseline / MB if baseline else None,
            "peak_mb": peak / MB if peak else None,
            "after_mb": after / MB if after else None,
            "added_mb": (peak - baseline) / MB if baseline and peak else None,
            "retained_mb": (after - baseline) / MB if baseline and after else None,
            "samples": sampler.samples,
            "hwm_reset": hwm_reset,
        },
    }
    if profile is not None:
        result["profile"] = profile
    return result


def child_stages(spec: dict[str, Any]) -> dict[str, Any]:
    """The export thread's work, stage by stage, run synchronously on this thread."""
    pinned = pin(spec["core"])
    workload = Workload()
    spans = collect(workload, STAGE_SPANS)
    processor = make_processor(spec["port"], prepare=True)
    exporter, prepare = processor.exporter, processor.prepare
    assert isinstance(exporter, OtlpHttpExporter) and prepare is not None
    totals = dict.fromkeys(("prepare", "encode", "serialize", "gzip", "post"), 0.0)
    raw_bytes = gz_bytes = 0
    for _ in range(2):  # the first round warms up; the second is kept
        totals = dict.fromkeys(totals, 0.0)
        raw_bytes = gz_bytes = 0
        for first in range(0, len(spans), processor.max_batch_size):
            batch = spans[first : first + processor.max_batch_size]
            t0 = time.perf_counter()
            prepared = [s for s in map(prepare, batch) if s is not None]
            t1 = time.perf_counter()
            raw = encode_request(prepared)
            t2 = time.perf_counter()
            t3 = t2  # encode_request writes the bytes directly: no separate serialisation step
            body = gzip.compress(raw, compresslevel=1)
            t4 = time.perf_counter()
            ok = exporter.post(body).ok
            t5 = time.perf_counter()
            assert ok
            for key, seconds in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                totals[key] += seconds
            raw_bytes += len(raw)
            gz_bytes += len(body)
    processor.shutdown()
    count = len(spans)
    per_span = {k: v / count * 1e6 for k, v in totals.items()}
    return {
        "pinned": pinned,
        "spans": count,
        "us_per_span": per_span,
        "total_us_per_span": sum(per_span.values()),
        "raw_bytes_per_span": raw_bytes / count,
        "gzip_bytes_per_span": gz_bytes / count,
    }


def profile_rows(profile: cProfile.Profile, top: int = 15) -> dict[str, Any]:
    stats = pstats.Stats(profile)
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in entries.values())

    def name(key: tuple[str, int, str]) -> str:
        path, line, func = key
        return func if path == "~" else f"{'/'.join(path.split('/')[-2:])}:{line}({func})"

    rows = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:top]
    stages = {}
    for key, (_, calls, _, cumulative, _) in entries.items():
        path, _, func = key
        watched = func in ("_prepared", "send", "encode_request", "post") or (func == "__call__" and "limits" in path)
        if watched or "SerializeToString" in func or "zlib.compress" in func:
            stages[name(key)] = {"cum_s": cumulative, "calls": calls}
    return {
        "total_s": total,
        "top_tottime": [{"fn": name(k), "tottime_s": v[2], "cumtime_s": v[3], "calls": v[1]} for k, v in rows],
        "stages": dict(sorted(stages.items(), key=lambda item: -item[1]["cum_s"])),
    }


def child_main(raw: str) -> int:
    spec = json.loads(raw)
    result = child_stages(spec) if spec["mode"] == "stages" else child_run(spec)
    print(json.dumps(result))
    return 0


# ---------------------------------------------------------------- the parent: orchestration and report


def child_env() -> dict[str, str]:
    """No RESPAN_*/OTEL_* settings reach the children, and urllib's proxies stay off 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_"))}
    bypass = [p for p in (env.get("no_proxy") or env.get("NO_PROXY") or "").split(",") if p.strip()]
    env["no_proxy"] = env["NO_PROXY"] = ",".join([*bypass, "127.0.0.1"])
    return env


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    argv = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=child_env(), timeout=900, check=False)
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    if done.returncode != 0 or not done.stdout.strip():
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def import_cost() -> dict[str, Any]:
    try:
        done = subprocess.run(
            [sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, env=child_env(), timeout=120
        )
        got = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as exc:
        return {"error": type(exc).__name__}
    return {
        "interpreter_mb": got["interpreter"] / MB,
        "pipeline_mb": got["pipeline"] / MB,
        "otlp_protobuf_mb": got["otlp"] / MB,
        "total_mb": (got["pipeline"] + got["otlp"]) / MB,
    }


def cores() -> tuple[int | None, int | None, str]:
    """(core for the measured process, core for the receiver, what was done)."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None, "not applied: os.sched_setaffinity is not available on this platform"
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) >= 2:
        return allowed[0], allowed[1], f"measured process on core {allowed[0]}, receiver on core {allowed[1]}"
    return allowed[0], None, f"measured process on core {allowed[0]}; only one core: the receiver shares it"


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in runs if "error" not in r]
    errors = [r["error"] for r in runs if "error" in r]
    if not good:
        return {"runs": 0, "errors": errors}

    def spread(pick: Any) -> dict[str, float] | None:
        values = [v for v in map(pick, good) if v is not None]
        return {"median": statistics.median(values), "min": min(values), "max": max(values)} if values else None

    received = sum(r["received"]["spans"] for r in good)
    expected = sum(r["spans"] for r in good)
    return {
        "runs": len(good),
        "errors": errors,
        "pinned": all(r["pinned"] for r in good),
        "spans_per_s": spread(lambda r: r["spans_per_s"]),
        "producer_us": spread(lambda r: r["producer"]["us_per_span"]),
        "producer_cpu_us": spread(lambda r: r["producer"]["cpu_us_per_span"]),
        "build_us": spread(lambda r: r["producer"]["build_us_per_span"]),
        "bare_sdk_us": spread(lambda r: r["bare_sdk"]["us_per_span"]),
        "bare_sdk_cpu_us": spread(lambda r: r["bare_sdk"]["cpu_us_per_span"]),
        "pauses": spread(lambda r: r["producer"]["pauses"]),
        "flush_wait_ms": spread(lambda r: r["flush_wait_ms"]),
        **{key: spread(lambda r, key=key: r["rss"][key]) for key in ("baseline_mb", "peak_mb", "after_mb")},
        "added_mb": spread(lambda r: r["rss"]["added_mb"]),
        "retained_mb": spread(lambda r: r["rss"]["retained_mb"]),
        "dropped": sum(r["dropped"] for r in good),
        "failed": sum(r["failed"] for r in good),
        "expected": expected,
        "received": received,
        "requests": sum(r["received"]["requests"] for r in good),
        "wire_bytes_per_span": sum(r["received"]["bytes"] for r in good) / expected,
        "receiver_decode_us_per_span": sum(r["received"]["decode_s"] for r in good) / max(1, received) * 1e6,
        "all_flushed": all(r["flushed"] for r in good),
    }


def verdicts(configs: dict[str, Any]) -> dict[str, Any]:
    """Throughput: the one-core run with prepare (the product's default), else the unpinned one. Memory: the worst."""
    key = "one_core_prepared" if configs["one_core_prepared"].get("pinned") else "unpinned_prepared"
    throughput = (configs[key].get("spans_per_s") or {}).get("median")
    memory = [c["added_mb"]["max"] for c in configs.values() if c.get("added_mb")]
    worst = max(memory) if memory else None

    def word(ok: bool | None) -> str:
        return "unknown" if ok is None else "met" if ok else "not met"

    return {
        "throughput": {
            "limit": TARGET_SPANS_PER_S,
            "config": key,
            "one_core": key == "one_core_prepared",
            "value": throughput,
            "verdict": word(None if throughput is None else throughput >= TARGET_SPANS_PER_S),
        },
        "memory": {
            "limit": TARGET_ADDED_MB,
            "value": worst,
            "verdict": word(None if worst is None else worst < TARGET_ADDED_MB),
        },
    }


def _s(figure: dict[str, float] | None, fmt: str) -> str:
    if figure is None:
        return "n/a"
    if figure["min"] == figure["max"]:
        return f"{figure['median']:{fmt}}"
    return f"{figure['median']:{fmt}} [{figure['min']:{fmt}}-{figure['max']:{fmt}}]"


def print_report(result: dict[str, Any]) -> None:
    row = "{:<24}{:>22}{:>20}{:>20}{:>9}{:>10}{:>20}{:>22}"
    lines = [
        f"respan_auto {result['respan_auto']}, {result['python']}, opentelemetry-sdk {result['otel_sdk']}, "
        f"protobuf {result['protobuf']}; {result['cpus']} CPUs, load average {result['load_average_1min']} at start; "
        f"{result['elapsed_s']} s",
        f"workload: {result['spans']} Mistral chat spans per run (25 attributes, 300-char prompt and completion, "
        f"unique text; parent-child pairs), {result['runs']} run(s) per configuration, each in a fresh process",
        f"pipeline: BatchProcessor(max_queue_size={result['max_queue_size']}, batches of 512) -> OtlpHttpExporter "
        "(gzip OTLP protobuf, urllib) -> receiver process on 127.0.0.1 (answers, then decodes)",
        f"pinning: {result['pinning']}",
        "",
        "Throughput: first span start -> force_flush True and every span decoded by the receiver; median [min-max]",
        row.format(
            "", "spans/s", "app us/span (cpu)", "bare SDK us (cpu)", "pauses", "flush ms", "RSS added MB", "after gc MB"
        ),
    ]
    for key, label, _, _ in CONFIGS:
        c = result["configs"][key]
        if not c.get("runs"):
            lines.append(f"{label:<24}failed: {'; '.join(c.get('errors', []))[:90]}")
            continue
        pinned = "" if c["pinned"] or not key.startswith("one_core") else " (not pinned)"
        lines.append(
            row.format(
                label + pinned,
                _s(c["spans_per_s"], ",.0f"),
                f"{c['producer_us']['median']:.1f} ({c['producer_cpu_us']['median']:.1f})",
                f"{c['bare_sdk_us']['median']:.1f} ({c['bare_sdk_cpu_us']['median']:.1f})",
                f"{c['pauses']['median']:.0f}",
                f"{c['flush_wait_ms']['median']:.0f}",
                _s(c["added_mb"], ".1f"),
                _s(c["retained_mb"], "+.1f"),
            )
        )
    main_config = result["configs"]["one_core_prepared"]
    if main_config.get("runs"):
        lines += [
            f"  app us/span: create+end on the app thread (wall, and its CPU time), pauses and the making of the "
            f"attribute values ({main_config['build_us']['median']:.1f} us) excluded; bare SDK: the same spans, "
            "TracerProvider with no processor",
            f"  RSS, one core with prepare: baseline {_s(main_config['baseline_mb'], '.1f')} MB, peak "
            f"{_s(main_config['peak_mb'], '.1f')} MB, after flush + gc {_s(main_config['after_mb'], '.1f')} MB; "
            f"on the wire {main_config['wire_bytes_per_span']:.0f} B/span in {main_config['requests']} requests; "
            f"receiver decoding (in its own process) {main_config['receiver_decode_us_per_span']:.1f} us/span",
        ]
    stages = result["stages"]
    if "error" in stages:
        lines += ["", f"Export thread stages: failed: {stages['error']}"]
    else:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in stages["us_per_span"].items())
        lines += [
            "",
            f"Export thread stages (synchronous{', one core' if stages['pinned'] else ''}; {stages['spans']} spans "
            f"in batches of 512), us/span: {parts}; total {stages['total_us_per_span']:.1f} "
            f"(ceiling {1e6 / stages['total_us_per_span']:,.0f} spans/s); "
            f"{stages['raw_bytes_per_span']:.0f} B/span raw, {stages['gzip_bytes_per_span']:.0f} gzip",
        ]
    imports = result["imports"]
    if "error" in imports:
        lines.append(f"Import cost: failed ({imports['error']})")
    else:
        lines.append(
            f"Import cost (fresh interpreter at {imports['interpreter_mb']:.1f} MB): respan_auto.export.pipeline "
            f"+{imports['pipeline_mb']:.1f} MB, then the exporter +{imports['otlp_protobuf_mb']:.1f} MB "
            f"= {imports['total_mb']:.1f} MB (not counted in 'RSS added')"
        )
    lines.append("")
    tp, mem = result["targets"]["throughput"], result["targets"]["memory"]
    where = "one core, with prepare" if tp["one_core"] else "unpinned, with prepare (pinning unavailable)"
    value = f"{tp['value']:,.0f} spans/s" if tp["value"] is not None else "n/a"
    lines.append(f"target >= {tp['limit']:,} spans/s on one core: {tp['verdict'].upper()} ({value}, {where})")
    value = f"{mem['value']:.1f} MB" if mem["value"] is not None else "n/a"
    lines.append(f"target pipeline adds < {mem['limit']:g} MB RSS: {mem['verdict'].upper()} ({value}, worst run)")
    for key, label, _, _ in CONFIGS:
        c = result["configs"][key]
        if c.get("runs") and (c["received"] != c["expected"] or c["dropped"] or c["failed"] or not c["all_flushed"]):
            lines.append(
                f"WARNING {label}: {c['received']} of {c['expected']} spans received, {c['dropped']} dropped, "
                f"{c['failed']} failed, flush {'ok' if c['all_flushed'] else 'timed out'}"
            )
    profile = result.get("profile")
    if profile and "error" in profile:
        lines += ["", f"cProfile of the export thread: failed ({profile['error']})"]
    elif profile:
        lines += ["", "cProfile of the export thread (one core, with prepare; cumulative s for the stages):"]
        for fn, figure in list(profile["stages"].items())[:8]:
            lines.append(f"  {figure['cum_s']:8.3f} s cum  {figure['calls']:>8} calls  {fn}")
        lines.append(f"  top by own time (total {profile['total_s']:.3f} s):")
        for entry in profile["top_tottime"]:
            lines.append(
                f"  {entry['tottime_s']:8.3f} s own {entry['cumtime_s']:8.3f} s cum {entry['calls']:>8}  {entry['fn']}"
            )
    print("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SPANS} spans, one run per configuration")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--profile", action="store_true", help="also cProfile the export thread during a run")
    parser.add_argument("--spans", type=int, help="spans per run")
    parser.add_argument("--runs", type=int, help="runs per configuration")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args.child)
    count = max(2 * CHUNK, (args.spans or (QUICK_SPANS if args.quick else FULL_SPANS)) // 2 * 2)
    runs = max(1, args.runs or (QUICK_RUNS if args.quick else FULL_RUNS))

    started = time.perf_counter()
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    core, receiver_core, pinning = cores()
    receiver = Receiver(receiver_core)
    if receiver_core is not None and receiver.core is None:
        pinning += " (the receiver could not be pinned)"
    try:
        imports = import_cost()
        collected: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _, _ in CONFIGS}
        for _ in range(runs):  # configurations interleaved, so that drift hits them alike
            for key, _, prepare, pinned in CONFIGS:
                spec = {"mode": "run", "port": receiver.port, "spans": count, "prepare": prepare}
                collected[key].append(run_child({**spec, "core": core if pinned else None}))
        stages = run_child({"mode": "stages", "port": receiver.port, "core": core})
        profile = None
        if args.profile:
            spec = {"mode": "run", "port": receiver.port, "spans": count, "prepare": True, "core": core}
            profiled = run_child({**spec, "profile": True})
            profile = profiled.get("profile", {"error": profiled.get("error")})
    finally:
        receiver.stop()
    configs = {key: summarize(found) for key, found in collected.items()}
    if core is not None and configs["one_core_prepared"].get("runs") and not configs["one_core_prepared"]["pinned"]:
        pinning = "not applied: os.sched_setaffinity was refused"
    result: dict[str, Any] = {
        "respan_auto": __version__,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "otel_sdk": version("opentelemetry-sdk"),
        "protobuf": "not used: respan_auto writes the OTLP bytes itself",
        "load_average_1min": load,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "spans": count,
        "runs": runs,
        "max_queue_size": settings().max_queue_size,
        "pinning": pinning,
        "configs": configs,
        "stages": stages,
        "imports": imports,
        "elapsed_s": 0.0,
    }
    if profile is not None:
        result["profile"] = profile
    result["targets"] = verdicts(configs)
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
