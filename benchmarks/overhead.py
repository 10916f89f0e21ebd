"""What tracing a Mistral call costs the process: the real SDK, bare against ours and against OpenInference.

Why it is built this way:

* The SDK talks to an in-process ``MockTransport`` that replays the stand-in's canned answers
  (``respan_auto.testing.mistral_server``), built once per distinct request body: the bare figure is the
  SDK's own CPU cost, with no network and no stand-in work in it. Next to a real API call (hundreds of
  milliseconds of waiting) any overhead shrinks further; this is the worst case.
* Five arms in the same run, switched by ``instrument()``/``uninstrument()``: the bare SDK; ours, our
  ``MistralAIInstrumentor`` on the default pipeline exactly as ``Respan()`` and the launcher build it
  (``Pipeline(Settings.load(...))`` with RESPAN_API_KEY and RESPAN_BASE_URL: context processor, end stage,
  the SDK's ``BatchSpanProcessor``, export stage, the standard OTLP/HTTP exporter with gzip, our sender
  thread); and OpenInference's ``MistralAIInstrumentor`` on a plain SDK ``BatchSpanProcessor`` and the standard
  ``OTLPSpanExporter`` (gzip too, so that both pay for compression); and two floors (``SpanFloor``): one span of
  fixed attributes per call with no extraction at all, on that same plain pipeline (the least that any
  instrumentation standing on the SDK's span and the standard exporter pays here) and on ours. All export to the
  same receiver.
* The cost is CPU, counted two ways. Process CPU (``time.process_time_ns``) covers every thread, so the
  batch processor's encoding and the sender's posting are in it; that is the headline. The app thread alone
  (``time.thread_time_ns``) is shown beside it: what the caller's own thread pays inside the calls.
* Export is asynchronous, so every block ends with a flush of both pipelines inside its process-CPU window,
  and starts empty (its untimed warm-up call is flushed before the clock starts): the export work of a
  block's spans is charged to that block, in one request per block. Bare blocks flush the idle pipelines too,
  so that the fixed cost of a flush cancels out. Blocks last about ``block_seconds``, like the gaps between
  the batch processor's timed exports under a steady stream of calls; their span counts are printed.
* The loopback receiver runs in a child process (``_receiver.py``, pinned to the last core; this process to
  the others) because it decodes every request: in here its CPU would count against us.
* End to end, each traced call is followed by a bare one in the same block (instrumentation suppressed for
  it), so that drift cancels within each block and every traced call runs just after an SDK call has
  evicted it from the CPU caches, as between an app's own calls; the block's flush is charged to the traced
  calls. Tracing code run hot in a loop is two to three times cheaper than this on a small VM.
* Arms alternate in mirrored order (A B C C B A) over many short rounds, and each figure is the median of
  per-round differences with a distribution-free 95 % interval, so that drift and busy neighbours cancel;
  ours as a fraction of OpenInference's is the ratio of the two medians, with a bootstrap interval.
* A second phase replaces ``Chat.complete``/``stream`` with replays of real SDK answers (with the same
  signatures, which OpenInference inspects), leaving only tracing and export to time. That is a lower bound:
  run hot in a tight loop, the tracing code is faster than between real SDK calls, which evict it from the
  CPU caches, and its blocks carry more spans per request.
* The per-chunk goal is read as what each chunk adds: a 100-chunk stream against a 10-chunk one whose blocks
  carry as many calls (so as many spans per export request), divided by the 90 chunks between. What a
  stream's span costs whatever its length is judged with the ``complete`` goal; the whole stream's added CPU
  divided by its chunks is printed beside it.
* Verdicts: "not met" when even the lower bound misses a goal; otherwise what the end-to-end interval
  says: "met", "not met", or "inconclusive" when it straddles the goal (run longer, or on a quiet machine).

Usage: ``python benchmarks/overhead.py [--quick] [--json]``. The exit code is 0 whether or not the goals are
met: this is a report, not a gate.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import wrapt
from _receiver import ReceiverProcess, other_cores
from opentelemetry import context as context_api
from opentelemetry.instrumentation.utils import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from respan_auto.config import Settings
from respan_auto.export.pipeline import Pipeline
from respan_auto.instrumentation.mistralai import MistralAIInstrumentor
from respan_auto.testing.mistral_server import completion_body, sse_events
from respan_auto.version import __version__

MODEL = "mistral-small-latest"
STREAM_CHUNKS = 100
SHORT_CHUNKS = 10  # a short stream, whose blocks carry as many spans as the long one's: see marginal_per_chunk
COMPLETE_MESSAGES = [{"role": "user", "content": "Say hello to the benchmark in one short sentence."}]
STREAM_MESSAGES = [{"role": "user", "content": f"Tell a long story. #chunks={STREAM_CHUNKS}"}]
SHORT_MESSAGES = [{"role": "user", "content": f"Tell a long story. #chunks={SHORT_CHUNKS}"}]
CHUNKS = {"complete": 1, "stream": STREAM_CHUNKS, "stream_short": SHORT_CHUNKS}
SAME_BLOCKS = {"stream_short": "stream"}  # workload -> the one whose calls per block it takes
GOAL_COMPLETE_PCT = 3.0
GOAL_CHUNK_US = 2.0
GOAL_FRACTION_OF_OI = 0.25
API_KEY = "rsp_0123456789abcdef0123456789abcdef"
MAX_BLOCK_CALLS = 512  # the batch processor's batch size: past it, it would export in the middle of a block
MIN_ROUNDS = 6
OUR_SCOPE = "respan_auto.instrumentation.mistralai"
OI_SCOPE = "openinference.instrumentation.mistralai"


@dataclass(frozen=True)
class Phase:
    """How long to measure and how long one block of calls should last."""

    seconds: float
    block_seconds: float
    interleaved: bool = False  # each traced call next to a bare one in the same block (see Bench.interleaved_block)


FULL = {"end_to_end": Phase(150.0, 1.0, interleaved=True), "alone": Phase(30.0, 0.2)}
QUICK = {"end_to_end": Phase(15.0, 0.3, interleaved=True), "alone": Phase(4.0, 0.1)}

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

    def streamed(messages: list[dict[str, str]]) -> Callable[[], None]:
        def stream() -> None:
            with client.chat.stream(model=MODEL, messages=messages) as events:
                for _ in events:
                    pass

        return stream

    return {"complete": complete, "stream": streamed(STREAM_MESSAGES), "stream_short": streamed(SHORT_MESSAGES)}


class _Replay:
    """The SDK's ``EventStream`` as the instrumentations see it (iterator, context manager, ``close``)."""

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
    """Swap ``Chat.complete``/``stream`` for replays of real SDK answers, so that only tracing costs time.

    Call while uninstrumented: ``instrument()`` then wraps the replays as it wraps the SDK methods. The
    replays carry the originals' signatures (``__wrapped__``), which OpenInference binds the arguments to.
    """
    response = client.chat.complete(model=MODEL, messages=COMPLETE_MESSAGES)
    events = {}
    for messages in (STREAM_MESSAGES, SHORT_MESSAGES):
        with client.chat.stream(model=MODEL, messages=messages) as stream:
            events[messages[0]["content"]] = list(stream)
    chat_class = type(client.chat)
    originals = {name: vars(chat_class)[name] for name in ("complete", "stream")}

    def complete(self: Any, *args: Any, **kwargs: Any) -> Any:
        return response

    def stream_(self: Any, *args: Any, **kwargs: Any) -> Any:
        return _Replay(events[kwargs["messages"][0]["content"]])

    chat_class.complete = functools.update_wrapper(complete, originals["complete"])
    chat_class.stream = functools.update_wrapper(stream_, originals["stream"])
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(chat_class, name, original)


# ---------------------------------------------------------------- the three arms


class Arm:
    """One way of running the SDK: ``on()`` before a block, ``off()`` after; ``scope`` names its spans."""

    name = "bare"
    scope: str | None = None
    note = "no instrumentation"

    def on(self) -> None:
        return None

    def off(self) -> None:
        return None

    def flush(self) -> bool:
        return True


class Ours(Arm):
    """Our instrumentor on the default pipeline, built from settings as ``Respan()`` builds it."""

    name = "ours"
    scope = OUR_SCOPE

    def __init__(self, receiver_url: str) -> None:
        # a key that appears in no prompt: one that did would be redacted, and each span copied, on export
        environ = {"RESPAN_API_KEY": API_KEY, "RESPAN_BASE_URL": receiver_url + "/api"}
        self.settings = Settings.load(environ=environ)
        self.pipeline = Pipeline(self.settings, environ=environ)
        self.instrumentor = MistralAIInstrumentor()
        self.note = f"respan_auto Pipeline to {self.settings.traces_url} ({self.pipeline.destination})"

    def on(self) -> None:
        self.instrumentor.instrument(
            tracer_provider=self.pipeline.provider, capture_content=self.settings.trace_content
        )

    def off(self) -> None:
        self.instrumentor.uninstrument()

    def flush(self) -> bool:
        return self.pipeline.flush(timeout=30.0)


class OpenInference(Arm):
    """OpenInference's instrumentor on a plain SDK ``BatchSpanProcessor`` and the standard OTLP/HTTP exporter."""

    name = "openinference"
    scope = OI_SCOPE

    def __init__(self, receiver_url: str) -> None:
        from openinference.instrumentation.mistralai import MistralAIInstrumentor as OIInstrumentor
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = receiver_url + "/v1/traces"
        self.provider = TracerProvider()
        self.provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, compression=Compression.Gzip))
        )
        self.instrumentor = OIInstrumentor()
        self.note = (
            f"openinference-instrumentation-mistralai {version('openinference-instrumentation-mistralai')}, "
            f"BatchSpanProcessor + OTLPSpanExporter (gzip) to {endpoint}"
        )

    def on(self) -> None:
        self.instrumentor.instrument(tracer_provider=self.provider)

    def off(self) -> None:
        self.instrumentor.uninstrument()

    def flush(self) -> bool:
        return bool(self.provider.force_flush(30_000))


FLOOR_ATTRIBUTES = {f"floor.attribute.{i}": "x" * 32 for i in range(22)}  # as many as ours writes on a complete
FLOOR_SCOPE = "respan-benchmark-floor"


class SpanFloor(Arm):
    """What any instrumentation on the SDK's span and export path costs at least: one span per call, no extraction.

    A wrapper on ``Chat.complete``/``stream`` that starts a span with fixed attributes (as many as ours writes on a
    ``complete``) and ends it when the method returns. It reads nothing, records no metrics and follows no stream: a
    floor, not a rival. ``floor`` exports through a plain ``BatchSpanProcessor`` and the standard ``OTLPSpanExporter``
    (gzip); ``floor-ours`` through our default pipeline (``Ours``'s own), so that the room our extraction has left is
    the gap between the two rows.
    """

    def __init__(self, chat_class: type, receiver_url: str, ours: Ours | None = None) -> None:
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        self.chat_class = chat_class
        self.ours = ours
        if ours is None:
            self.name, self.scope, export = "floor", FLOOR_SCOPE, "BatchSpanProcessor + OTLPSpanExporter (gzip)"
            self.provider = TracerProvider()
            self.provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver_url + "/v1/traces", compression=Compression.Gzip))
            )
        else:
            self.name, self.scope, export = "floor-ours", FLOOR_SCOPE + ".ours", "our default pipeline"
            self.provider = ours.pipeline.provider
        self.tracer = self.provider.get_tracer(self.scope)
        self.note = f"one span of {len(FLOOR_ATTRIBUTES)} fixed attributes per call, no extraction, {export}"
        self.saved: list[tuple[type, str, Any]] = []

    def on(self) -> None:
        from opentelemetry.instrumentation.utils import is_instrumentation_enabled

        tracer = self.tracer

        def wrapper(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
            if not is_instrumentation_enabled():
                return wrapped(*args, **kwargs)
            span = tracer.start_span("chat", attributes=FLOOR_ATTRIBUTES)
            try:
                return wrapped(*args, **kwargs)
            finally:
                span.end()

        chat_class = self.chat_class
        for name in ("complete", "stream"):
            self.saved.append((chat_class, name, vars(chat_class)[name]))
            wrapt.wrap_function_wrapper(chat_class, name, wrapper)

    def off(self) -> None:
        while self.saved:
            owner, name, original = self.saved.pop()
            setattr(owner, name, original)

    def flush(self) -> bool:
        return self.ours.flush() if self.ours is not None else bool(self.provider.force_flush(30_000))


def make_arms(receiver_url: str, chat_class: type) -> tuple[list[Arm], str | None]:
    """Bare, ours, the floor and, when it is installed and works here, OpenInference; else a note saying why not."""
    ours = Ours(receiver_url)
    arms: list[Arm] = [Arm(), ours, SpanFloor(chat_class, receiver_url), SpanFloor(chat_class, receiver_url, ours)]
    try:
        version("openinference-instrumentation-mistralai")
    except PackageNotFoundError:
        return arms, "openinference-instrumentation-mistralai is not installed"
    try:
        arm = OpenInference(receiver_url)
        arm.on()
        arm.off()
    except Exception as exc:  # noqa: BLE001 - a comparison we cannot run is skipped, with the reason
        return arms, f"OpenInference failed here ({type(exc).__name__}: {exc})"
    return [*arms, arm], None


# ---------------------------------------------------------------- measuring


@dataclass
class Block:
    """One block of calls: CPU in ns per call, process-wide (with the flush) and on the app thread."""

    process: float
    thread: float


@dataclass
class Samples:
    """Per-arm blocks of one workload; ``blocks[arm][i]`` belong to round ``i``."""

    blocks: dict[str, list[Block]] = field(default_factory=dict)
    # interleaved phases: the bare calls made in each traced arm's own blocks, paired with them
    paired_bare: dict[str, list[Block]] = field(default_factory=dict)


class Bench:
    """Runs blocks of calls under each arm; counts the spans each traced arm should have sent."""

    def __init__(self, arms: list[Arm]) -> None:
        self.arms = arms
        self.expected = {arm.name: 0 for arm in arms}
        self.flush_failures = 0

    def flush_all(self) -> None:
        for arm in self.arms:
            if not arm.flush():
                self.flush_failures += 1

    @contextmanager
    def armed(self, arm: Arm) -> Iterator[None]:
        arm.on()
        try:
            yield
        finally:
            arm.off()

    def block(self, arm: Arm, call: Callable[[], None], count: int) -> Block:
        """``count`` calls and the flush that sends their spans, after one untimed call, flushed beforehand.

        The untimed call keeps the cost of switching arms (``instrument()`` reads package metadata and
        evicts caches) out of the figures; flushing it leaves the pipelines empty when the clock starts.
        """
        call()
        self.flush_all()
        process, thread = time.process_time_ns(), time.thread_time_ns()
        for _ in range(count):
            call()
        thread = time.thread_time_ns() - thread
        self.flush_all()
        process = time.process_time_ns() - process
        self.expected[arm.name] += count + 1
        return Block(process / count, thread / count)

    def interleaved_block(self, arm: Arm, call: Callable[[], None], count: int) -> tuple[Block, Block]:
        """``count`` traced calls, each followed by a bare one (instrumentation suppressed), then the flush.

        Drift between blocks cancels within the block, and each traced call runs just after a bare SDK call has
        evicted it from the CPU caches, as between an app's calls. The flush, which exports the traced calls'
        spans, is charged to them. A "bare" call still passes the instrumentors' wrappers, which return at once
        when instrumentation is suppressed (a microsecond or two).
        """
        call()
        self.flush_all()
        bare, traced = Block(0, 0), Block(0, 0)
        for _ in range(count):
            process, thread = time.process_time_ns(), time.thread_time_ns()
            call()
            traced.process += time.process_time_ns() - process
            traced.thread += time.thread_time_ns() - thread
            token = context_api.attach(context_api.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
            try:
                process, thread = time.process_time_ns(), time.thread_time_ns()
                call()
                bare.process += time.process_time_ns() - process
                bare.thread += time.thread_time_ns() - thread
            finally:
                context_api.detach(token)
        process = time.process_time_ns()
        self.flush_all()
        traced.process += time.process_time_ns() - process
        self.expected[arm.name] += count + 1
        return Block(bare.process / count, bare.thread / count), Block(traced.process / count, traced.thread / count)

    def calibrate(self, work: Workloads, block_seconds: float) -> dict[str, int]:
        """Calls per block, sized on the slowest arm's process CPU, which this also warms up."""
        counts: dict[str, int] = {}
        for name, call in work.items():
            if name in SAME_BLOCKS:
                counts[name] = counts[SAME_BLOCKS[name]]
                for arm in self.arms:
                    with self.armed(arm):
                        self.block(arm, call, 3)
                continue
            slowest = 0.0
            for arm in self.arms:
                with self.armed(arm):
                    slowest = max(slowest, self.block(arm, call, 3).process)
            counts[name] = max(1, min(MAX_BLOCK_CALLS, round(block_seconds * 1e9 / slowest)))
        return counts

    def run(self, work: Workloads, phase: Phase) -> tuple[dict[str, Samples], dict[str, int]]:
        """Mirrored rounds (A B C C B A) until the phase's time is up; the samples and the calls per block.

        Interleaved, the traced arms' blocks carry their own bare calls (half as many blocks of twice the calls).
        """
        counts = self.calibrate(work, phase.block_seconds / (2 if phase.interleaved else 1))
        arms = [arm for arm in self.arms if arm.scope] if phase.interleaved else self.arms
        samples = {name: Samples({arm.name: [] for arm in self.arms}, {arm.name: [] for arm in arms}) for name in work}
        deadline = time.perf_counter() + phase.seconds
        rounds = 0
        while rounds < MIN_ROUNDS or time.perf_counter() < deadline:
            for arm in [*arms, *reversed(arms)]:
                with self.armed(arm):
                    for name, call in work.items():
                        if not phase.interleaved:
                            samples[name].blocks[arm.name].append(self.block(arm, call, counts[name]))
                            continue
                        bare, traced = self.interleaved_block(arm, call, counts[name])
                        samples[name].paired_bare[arm.name].append(bare)
                        samples[name].blocks[arm.name].append(traced)
                        samples[name].blocks["bare"].append(bare)
            rounds += 2
        return samples, counts


# ---------------------------------------------------------------- statistics and verdicts


Estimate = tuple[float, float, float]  # median, low and high ends of its 95 % interval


def median_ci(values: Sequence[float]) -> Estimate:
    """Median and its distribution-free 95 % interval (order statistics), robust to bursts of noise."""
    ordered = sorted(values)
    k = max(0, int(len(ordered) / 2 - 0.98 * math.sqrt(len(ordered))))
    return statistics.median(ordered), ordered[k], ordered[-1 - k]


def _figure(estimate: Estimate, scale: float = 1.0, digits: int = 2) -> dict[str, Any]:
    value, low, high = (round(x * scale, digits) for x in estimate)
    return {"value": value, "ci95": [low, high]}


def _pairs(samples: Samples, arm: str, kind: str) -> list[tuple[float, float]]:
    """(bare, traced) ns per call of each round, for ``kind`` "process" or "thread"."""
    bare = samples.paired_bare.get(arm) or samples.blocks["bare"]
    traced = samples.blocks[arm]
    return [(getattr(b, kind), getattr(t, kind)) for b, t in zip(bare, traced, strict=True)]


def arm_figures(samples: Samples, arm: str, chunks: int) -> dict[str, Any]:
    """Added µs per call (and per chunk) and overhead %, process-wide and on the app thread."""
    result: dict[str, Any] = {}
    for kind in ("process", "thread"):
        pairs = _pairs(samples, arm, kind)
        added = median_ci([t - b for b, t in pairs])
        result[kind] = {
            "traced_us": round(statistics.median(t for _, t in pairs) / 1e3, 2),
            "added_us": _figure(added, 1e-3),
            "overhead_pct": _figure(median_ci([t / b - 1 for b, t in pairs]), 100),
        }
        if chunks > 1:
            result[kind]["added_us_per_chunk"] = _figure(added, 1e-3 / chunks, digits=3)
    return result


def fraction_of(samples: Samples, ours: str, theirs: str, resamples: int = 2000) -> dict[str, Any]:
    """Our added process CPU over theirs: the ratio of the two median added costs, with a bootstrap 95 % interval.

    Rounds are resampled whole, so each keeps its three blocks together; a resample in which theirs added
    nothing counts as an unbounded ratio rather than being dropped, which would flatter us.
    """
    added_ours = [t - b for b, t in _pairs(samples, ours, "process")]
    added_theirs = [t - b for b, t in _pairs(samples, theirs, "process")]

    def ratio(rounds: Sequence[int]) -> float:
        theirs_median = statistics.median(added_theirs[i] for i in rounds)
        return statistics.median(added_ours[i] for i in rounds) / theirs_median if theirs_median > 0 else math.inf

    rng = random.Random(0)
    n = len(added_ours)
    boot = sorted(ratio([rng.randrange(n) for _ in range(n)]) for _ in range(resamples))
    low, high = boot[int(0.025 * resamples)], boot[int(0.975 * resamples) - 1]
    value = ratio(range(n))
    return {
        "value": round(value, 3) if math.isfinite(value) else None,
        "ci95": [round(x, 3) if math.isfinite(x) else None for x in (low, high)],
    }


def phase_figures(samples: dict[str, Samples], arms: list[str], bare_sdk: dict[str, float]) -> dict[str, Any]:
    """Per workload: the bare figures and each traced arm's; ``bare_sdk`` (ns) scales the replay phase."""
    result: dict[str, Any] = {}
    for name, sample in samples.items():
        bare = sample.blocks["bare"]
        entry: dict[str, Any] = {
            "bare_us": {
                kind: round(statistics.median(getattr(b, kind) for b in bare) / 1e3, 2)
                for kind in ("process", "thread")
            },
            "rounds": len(bare),
        }
        for arm in arms:
            figures = arm_figures(sample, arm, CHUNKS[name])
            added = figures["process"]["added_us"]
            figures["process"]["pct_of_bare_sdk_call"] = {
                "value": round(added["value"] * 1e5 / bare_sdk[name], 2),
                "ci95": [round(x * 1e5 / bare_sdk[name], 2) for x in added["ci95"]],
            }
            entry[arm] = figures
        if "openinference" in arms:
            entry["ours_fraction_of_openinference"] = fraction_of(sample, "ours", "openinference")
        result[name] = entry
    return result


def verdict(figure: dict[str, Any], limit: float) -> str:
    low, high = figure["ci95"]
    if low is None:  # unbounded from below: their overhead was not even measurable
        return "inconclusive"
    high = math.inf if high is None else high
    return "met" if high <= limit else "not met" if low > limit else "inconclusive"


def goal(limit: float, unit: str, end_to_end: dict[str, Any], alone: dict[str, Any] | None) -> dict[str, Any]:
    """The end-to-end verdict, unless the replay phase (a lower bound) already misses the goal."""
    ends = verdict(end_to_end, limit)
    result = {"limit": limit, "unit": unit, "end_to_end": {**end_to_end, "verdict": ends}, "verdict": ends}
    if alone is not None:
        alones = verdict(alone, limit)
        result["alone"] = {**alone, "verdict": alones}
        if alones == "not met":
            result["verdict"] = "not met"
    return result


def marginal_per_chunk(samples: dict[str, Samples], arm: str) -> dict[str, Any]:
    """What one more chunk costs: (added per long stream - added per short stream) / the chunks between, per round.

    Both streams' blocks carry the same number of calls, so each of their spans pays the same share of its
    export request, and every per-span cost (span, attributes, encoding, the request) cancels: what is left
    is the chunks' own cost, on the app thread and in the larger output they make.
    """
    short, long = _pairs(samples["stream_short"], arm, "process"), _pairs(samples["stream"], arm, "process")
    chunks = STREAM_CHUNKS - SHORT_CHUNKS
    values = [((tl - bl) - (ts - bs)) / chunks for (bs, ts), (bl, tl) in zip(short, long, strict=True)]
    return _figure(median_ci(values), 1e-3, digits=3)


def goals(
    e2e: dict[str, Any], solo: dict[str, Any], samples: dict[str, dict[str, Samples]], with_oi: bool
) -> dict[str, Any]:
    result = {
        "complete_overhead": goal(
            GOAL_COMPLETE_PCT,
            "%",
            e2e["complete"]["ours"]["process"]["overhead_pct"],
            solo["complete"]["ours"]["process"]["pct_of_bare_sdk_call"],
        ),
        "stream_per_chunk": goal(
            GOAL_CHUNK_US,
            "us",
            marginal_per_chunk(samples["end_to_end"], "ours"),
            marginal_per_chunk(samples["alone"], "ours"),
        ),
    }
    # the least any instrumentation on the SDK's span and standard export path pays: beside the verdict, no more
    result["complete_overhead"]["floors"] = {
        name: e2e["complete"][name]["process"]["overhead_pct"] for name in ("floor", "floor-ours")
    }
    result["stream_per_chunk"]["whole_stream_per_chunk"] = {
        "end_to_end": e2e["stream"]["ours"]["process"]["added_us_per_chunk"],
        "alone": solo["stream"]["ours"]["process"]["added_us_per_chunk"],
    }
    if with_oi:
        # the replay's ratio is not a bound: shown beside the end-to-end verdict, no more
        for name in ("complete", "stream"):
            replay = solo[name]["ours_fraction_of_openinference"]
            key = f"{name}_fraction_of_openinference"
            result[key] = goal(GOAL_FRACTION_OF_OI, "x", e2e[name]["ours_fraction_of_openinference"], None)
            result[key]["replay"] = {**replay, "verdict": verdict(replay, GOAL_FRACTION_OF_OI)}
    return result


# ---------------------------------------------------------------- reporting


def _num(x: float, sign: bool = True) -> str:
    """Three significant figures or so, whatever the magnitude: tables mix µs per chunk and ms per stream."""
    digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2
    return f"{x:{'+' if sign else ''}.{digits}f}"


def _ci(figure: dict[str, Any], sign: bool = True) -> str:
    value, (low, high) = figure["value"], figure["ci95"]
    shown = ["inf" if x is None else _num(x, sign) for x in (value, low, high)]
    return f"{shown[0]} [{shown[1]}, {shown[2]}]"


def _phase_lines(title: str, phase: dict[str, Any], arms: list[str], replay: bool) -> list[str]:
    row = "{:<13}{:<15}{:>11}{:>27}{:>25}{:>27}{:>25}"
    share = "% of SDK call" if replay else "overhead %"
    heads = (
        "",
        "arm",
        "us/call",
        "added us (process)",
        f"{share} (process)",
        "added us (app thread)",
        "added us/chunk",
    )
    lines = [title, row.format(*heads)]
    for name, entry in phase.items():
        if name == "calls_per_block":
            continue
        label = "complete" if name == "complete" else f"stream x{CHUNKS[name]}"
        lines.append(row.format(label, "bare", _num(entry["bare_us"]["process"], False), "", "", "", ""))
        for arm in arms:
            proc, thread = entry[arm]["process"], entry[arm]["thread"]
            pct = proc["pct_of_bare_sdk_call"] if replay else proc["overhead_pct"]
            chunk = _ci(proc["added_us_per_chunk"]) if "added_us_per_chunk" in proc else ""
            cells = (_num(proc["traced_us"], False), _ci(proc["added_us"]), _ci(pct), _ci(thread["added_us"]), chunk)
            lines.append(row.format("", arm, *cells))
        if "ours_fraction_of_openinference" in entry:
            fraction = _ci(entry["ours_fraction_of_openinference"], sign=False)
            lines.append(f"{'':<13}ours / openinference, added process CPU: {fraction}")
    return lines


def print_report(result: dict[str, Any]) -> None:
    e2e, solo, arms = result["end_to_end"], result["alone"], result["arms"]
    traced = [arm for arm in arms if arm != "bare"]
    lines = [
        f"respan_auto {result['respan_auto']} on mistralai {result['mistralai']}, {result['python']}, "
        f"{result['cpus']}; {result['elapsed_s']} s",
        *(f"  {arm}: {note}" for arm, note in result["arm_notes"].items()),
    ]
    if result["skipped"]:
        lines.append(f"  openinference: skipped: {result['skipped']}")
    lines += [
        "CPU is process CPU (every thread: app, batch processor, sender), each block ending with the flush that "
        "exports its spans;",
        "the app thread's CPU during the calls is shown beside it. Median of per-round differences [95 % CI].",
        "",
        *_phase_lines(
            f"End to end: the SDK on an in-process MockTransport; {e2e['complete']['rounds']} rounds of "
            f"{e2e['calls_per_block']['complete']} complete / {e2e['calls_per_block']['stream']} stream calls "
            "(= spans per export request)",
            e2e,
            traced,
            replay=False,
        ),
        "",
        *_phase_lines(
            f"Tracing alone (lower bound): SDK methods replaced by replays of its answers; {solo['complete']['rounds']}"
            f" rounds of {solo['calls_per_block']['complete']} / {solo['calls_per_block']['stream']} calls",
            solo,
            traced,
            replay=True,
        ),
        "",
    ]
    labels = {
        "complete_overhead": "complete overhead (process CPU)",
        "stream_per_chunk": "stream, added per chunk (process CPU, long stream - short stream)",
        "complete_fraction_of_openinference": "complete, ours / OpenInference added",
        "stream_fraction_of_openinference": "stream, ours / OpenInference added",
    }
    for key, tgt in result["goals"].items():
        sign = tgt["unit"] != "x"
        unit = "" if tgt["unit"] == "x" else f" {tgt['unit']}"
        detail = f"end to end {_ci(tgt['end_to_end'], sign)} {tgt['end_to_end']['verdict']}"
        if "alone" in tgt:
            detail = f"lower bound {_ci(tgt['alone'], sign)} {tgt['alone']['verdict']}; {detail}"
        for name, floor in tgt.get("floors", {}).items():
            detail += f"\n    {name} (one span, no extraction) end to end {_ci(floor)}"
        if "replay" in tgt:
            detail += f"; replay {_ci(tgt['replay'], sign)} would be {tgt['replay']['verdict']}"
        if "whole_stream_per_chunk" in tgt:
            whole = tgt["whole_stream_per_chunk"]
            detail += (
                f"\n    the whole stream's added CPU / {STREAM_CHUNKS}, span and request included: lower bound "
                f"{_ci(whole['alone'])}, end to end {_ci(whole['end_to_end'])}"
            )
        lines += [f"goal {labels[key]} <= {tgt['limit']:g}{unit}: {tgt['verdict'].upper()}", f"    {detail}"]
    spans = result["spans"]
    lines += [
        "",
        "spans received / expected: "
        + ", ".join(f"{arm} {got['received']}/{got['expected']}" for arm, got in spans["by_arm"].items())
        + f"; {spans['requests']} requests, {spans['failed_requests']} refused",
    ]
    if not spans["complete"]:
        lines.append("WARNING: not every traced call's span reached the receiver")
    print("\n".join(lines))


def loopback_only() -> None:
    """Keep proxy settings from the environment off the exporters' requests to 127.0.0.1."""
    bypass = [p for p in (os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or "").split(",") if p.strip()]
    os.environ["no_proxy"] = ",".join([*bypass, "127.0.0.1"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter run (~30 s)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--seconds", type=float, help="length of the end-to-end phase (a quiet machine needs less)")
    args = parser.parse_args(argv)
    phases = dict(QUICK if args.quick else FULL)
    if args.seconds:
        phases["end_to_end"] = Phase(args.seconds, phases["end_to_end"].block_seconds)

    started = time.perf_counter()
    loopback_only()
    receiver_core, own_cores = other_cores()
    with ReceiverProcess(receiver_core) as receiver:
        if own_cores:
            os.sched_setaffinity(0, own_cores)
        client = mistral_client()
        arms, skipped = make_arms(receiver.url, type(client.chat))
        names = [arm.name for arm in arms]
        traced = names[1:]
        bench = Bench(arms)
        end_to_end, e2e_counts = bench.run(workloads(client), phases["end_to_end"])
        with replayed_sdk(client):
            alone, alone_counts = bench.run(workloads(client), phases["alone"])
        bench.flush_all()
        stats = receiver.stats()
    bare_sdk = {name: statistics.median(b.process for b in end_to_end[name].blocks["bare"]) for name in CHUNKS}
    e2e = phase_figures(end_to_end, traced, bare_sdk)
    solo = phase_figures(alone, traced, bare_sdk)
    by_arm = {
        arm.name: {"expected": bench.expected[arm.name], "received": stats["scopes"].get(arm.scope or "", 0)}
        for arm in arms
        if arm.scope
    }
    result = {
        "respan_auto": __version__,
        "mistralai": version("mistralai"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpus": f"app on cores {sorted(own_cores)}, receiver on core {receiver_core}" if own_cores else "unpinned",
        "arms": names,
        "arm_notes": {arm.name: arm.note for arm in arms},
        "skipped": skipped,
        "end_to_end": {**e2e, "calls_per_block": e2e_counts},
        "alone": {**solo, "calls_per_block": alone_counts},
        "goals": goals(e2e, solo, {"end_to_end": end_to_end, "alone": alone}, "openinference" in names),
        "spans": {
            "by_arm": by_arm,
            "requests": stats.get("requests", 0),
            "failed_requests": stats.get("failed", 0),
            "flush_failures": bench.flush_failures,
            "complete": all(v["expected"] == v["received"] for v in by_arm.values()) and not bench.flush_failures,
        },
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
