"""One traced call's life cycle: start the span, record the outcome, end it exactly once, record metrics.

Shared by every wrapper: plain and streamed, sync and async. The outcome is written in an order that keeps
what matters when something fails part-way: the response's attributes (model, usage, output) first, in one
call, then the error, then the opt-in chunk events.

Errors: an exception that comes out of the SDK (``CancelledError`` and ``KeyboardInterrupt`` included) is the
call's error: ``error.type``, ``http.response.status_code`` when it is an HTTP error (400 and up), the
exception event (its message left out when content capture is off: SDK errors can quote the request) and an
ERROR status. A stream the app stops early (``break``, ``close()``, leaving its ``with`` block, an exception
in the app's own loop, garbage collection) is not a failed call: it ends with ``respan.stream.completed=false``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from itertools import pairwise
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import SpanKind, Status, StatusCode

from respan_auto import content
from respan_auto import semconv as sc
from respan_auto._guard import report_once
from respan_auto.instrumentation.mistralai import attributes as attrs
from respan_auto.instrumentation.mistralai.families import CHAT, Family

# Set in the context while a traced call runs: a nested call (``parse`` calling ``complete``,
# a second instrumentor layer) and the SDK's own tracing hook see it and stay quiet.
IN_CALL_KEY = context_api.create_key("respan-mistralai-call")

_METRIC_KEYS = (
    sc.GEN_AI_OPERATION_NAME,
    sc.GEN_AI_PROVIDER_NAME,
    sc.GEN_AI_REQUEST_MODEL,
    sc.SERVER_ADDRESS,
    sc.SERVER_PORT,
)
# Room left for everything but the indexed prompt keys (request, response, context and app attributes).
_RESERVED_ATTRIBUTES = 64


def leave(token: Any) -> None:
    """Detach a context token of ours (None: nothing was attached); a failure is reported, never raised."""
    if token is not None:
        try:
            context_api.detach(token)
        except Exception as exc:  # noqa: BLE001
            report_once("context detach", exc)


def in_traced_call() -> bool:
    return bool(context_api.get_value(IN_CALL_KEY))


def _indexed_message_budget(tracer: Any) -> int:
    """How many messages get indexed prompt keys (four keys each at most) under the provider's attribute limit."""
    limit = getattr(getattr(tracer, "_span_limits", None), "max_span_attributes", None)
    if not isinstance(limit, int):
        return attrs.MAX_INDEXED_MESSAGES
    return max(1, min(attrs.MAX_INDEXED_MESSAGES, (limit - _RESERVED_ATTRIBUTES) // 4))


class Telemetry:
    """What the wrappers need from ``instrument()``: a tracer, the instruments and the switches.

    ``capture_content`` is this instrumentor's own word on content (None: the process's switch decides alone,
    at each call); ``chunk_events`` adds one timing event per stream chunk.
    """

    def __init__(
        self, tracer: trace.Tracer, meter: Any, capture_content: bool | None = None, chunk_events: bool = False
    ) -> None:
        self.tracer = tracer
        self.pinned = capture_content
        self.chunk_events = chunk_events
        self.max_indexed = _indexed_message_budget(tracer)
        self.duration = meter.create_histogram(
            sc.METRIC_OPERATION_DURATION, unit="s", description="GenAI operation duration"
        )
        self.tokens = meter.create_histogram(
            sc.METRIC_TOKEN_USAGE, unit="{token}", description="Measures number of input and output tokens used"
        )
        self.first_chunk = meter.create_histogram(
            sc.METRIC_TIME_TO_FIRST_CHUNK, unit="s", description="Time to receive the first chunk"
        )
        self.per_chunk = meter.create_histogram(
            sc.METRIC_TIME_PER_OUTPUT_CHUNK, unit="s", description="Time per output chunk, after the first"
        )

    def begin(
        self, instance: Any, kwargs: Mapping[str, Any], stream: bool = False, family: Family = CHAT, args: tuple = ()
    ) -> Call | None:
        """Start a span for a call, or return None when this call must not be traced."""
        if in_traced_call() or not is_instrumentation_enabled():
            return None
        try:
            return Call(self, family, instance, kwargs, stream, args)
        except Exception as exc:  # noqa: BLE001
            report_once("span start", exc)
            return None


# operations whose spans a framework opens around the one model call it makes through the SDK
_MODEL_OPERATIONS = frozenset(
    {sc.OPERATION_CHAT, sc.OPERATION_TEXT_COMPLETION, sc.OPERATION_EMBEDDINGS, "generate_content"}
)
_OUR_SCOPE = __name__.rpartition(".")[0]


def _in_framework_model_span() -> bool:
    """Whether another instrumentation's span for this same model call is current (pydantic-ai's ``chat``, say).

    That span already reports the call's usage, so ours keeps it only under ``respan.usage.*`` and records no token
    metrics: totals in the backend and in our views count each call's tokens once.
    """
    try:
        parent = trace.get_current_span()
        scope = getattr(parent, "instrumentation_scope", None)
        if not parent.is_recording() or scope is None or scope.name == _OUR_SCOPE:
            return False
        attributes = getattr(parent, "attributes", None) or {}
        return attributes.get(sc.GEN_AI_OPERATION_NAME) in _MODEL_OPERATIONS
    except Exception as exc:  # noqa: BLE001
        report_once("framework span check", exc)
        return False


def _usage_moved(outcome: Mapping[str, Any]) -> dict[str, Any]:
    """The outcome with its usage keys (``gen_ai.usage.*``, ``llm.usage.*``) under ``respan.usage.*`` instead."""
    written = {}
    for key, value in outcome.items():
        if key.startswith(sc.USAGE_PREFIXES):
            written[sc.RESPAN_USAGE_PREFIX + key.rpartition(".usage.")[2]] = value
        else:
            written[key] = value
    return written


def _name_of(family: Family, attributes: Mapping[str, Any], *fallbacks: str) -> Any:
    """What the span's name ends with: the first of the family's naming attributes that is set."""
    return next((attributes[key] for key in (*family.named_by, *fallbacks) if attributes.get(key)), None)


def _server_url(instance: Any, kwargs: Mapping[str, Any]) -> str | None:
    url = kwargs.get("server_url")
    if isinstance(url, str) and url:
        return url
    config = getattr(instance, "sdk_configuration", None)
    details = getattr(config, "get_server_details", None)
    if details is None:
        return None
    url = details()[0]
    return url if isinstance(url, str) else None


class Call:
    """The span of one call, current while the SDK method runs and ended exactly once."""

    __slots__ = (
        "_ended",
        "_lock",
        "_metric_attrs",
        "_token",
        "_unnamed",
        "capture",
        "counted_above",
        "family",
        "span",
        "start_ns",
        "telemetry",
    )

    def __init__(
        self,
        telemetry: Telemetry,
        family: Family,
        instance: Any,
        kwargs: Mapping[str, Any],
        stream: bool,
        args: tuple = (),
    ) -> None:
        self.telemetry = telemetry
        self.family = family
        self._ended = False
        self._lock = threading.Lock()
        self._token = None
        self.capture = content.enabled(telemetry.pinned)
        if args:
            kwargs = {**dict(zip(family.positional, args, strict=False)), **kwargs}
        request = family.request(kwargs, self.capture, stream, telemetry.max_indexed)
        try:
            url = _server_url(instance, kwargs)
            if url:
                request.update(attrs.server_attributes(url))
        except Exception as exc:  # noqa: BLE001
            report_once("server address", exc)
        named = _name_of(family, request)
        self._unnamed = named is None  # an append names its agent or model only in the answer
        name = f"{family.operation} {named}" if named else family.operation
        self._metric_attrs = {k: request[k] for k in _METRIC_KEYS if k in request}
        self.start_ns = time.time_ns()
        self.counted_above = _in_framework_model_span()
        if self.counted_above:
            request[sc.RESPAN_USAGE_COUNTED_ABOVE] = True
        kind = SpanKind.INTERNAL if family.run else SpanKind.CLIENT
        self.span = telemetry.tracer.start_span(name, kind=kind, attributes=request, start_time=self.start_ns)
        ctx = trace.set_span_in_context(self.span)
        if not family.run:  # a run's own calls are traced, as its children
            ctx = context_api.set_value(IN_CALL_KEY, True, ctx)
        self._token = context_api.attach(ctx)

    def accumulator(self) -> attrs.StreamAccumulator:
        return self.family.accumulator(self.capture, self.telemetry.chunk_events)  # type: ignore[no-any-return]

    def detach(self) -> None:
        """Leave the span's context; called once the SDK method has returned or raised."""
        token, self._token = self._token, None
        leave(token)

    def finish(
        self,
        response: Any = None,
        stream: attrs.StreamAccumulator | None = None,
        error: BaseException | None = None,
        completed: bool | None = None,
    ) -> None:
        """Record the outcome and end the span; later calls do nothing."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        end_ns = time.time_ns()
        span = self.span
        outcome: Mapping[str, Any] = {}
        try:
            if response is not None:
                outcome = self.family.response(response, self.capture)
            elif stream is not None:
                outcome = stream.attributes()
            written = _usage_moved(outcome) if self.counted_above else dict(outcome)
            if stream is not None:
                written.update(attrs.stream_timing_attributes(self.start_ns, stream.chunk_times))
                if completed is not None:
                    written[sc.RESPAN_STREAM_COMPLETED] = completed
            span.set_attributes(written)
            named = _name_of(self.family, outcome, sc.GEN_AI_RESPONSE_MODEL) if self._unnamed else None
            if named is not None:
                span.update_name(f"{self.family.operation} {named}")
        except Exception as exc:  # noqa: BLE001
            report_once("span finish", exc)
        if error is not None:
            self._record_error(error)
        elif stream is not None and stream.failure:
            self._record_failure(stream.failure)
        if stream is not None and stream.chunk_sizes is not None:
            self._chunk_events(stream)
        try:
            span.end(end_time=end_ns)
        except Exception as exc:  # noqa: BLE001
            report_once("span end", exc)
        if not self.family.run:  # the client metrics are the calls'
            self._record_metrics(end_ns, outcome, error, stream)

    def _record_error(self, error: BaseException) -> None:
        try:
            span = self.span
            error_type = type(error).__qualname__
            span.set_attribute(sc.ERROR_TYPE, error_type)
            status = getattr(error, "status_code", None)
            if isinstance(status, int) and not isinstance(status, bool) and status >= 400:
                span.set_attribute(sc.HTTP_RESPONSE_STATUS_CODE, status)
            content.record_exception(span, error, self.capture)
            span.set_status(Status(StatusCode.ERROR, error_type))
        except Exception as exc:  # noqa: BLE001
            report_once("span error", exc)

    def _record_failure(self, failure: str) -> None:
        """A failure the server reported inside a stream that the SDK passed on without raising."""
        try:
            self.span.set_attribute(sc.ERROR_TYPE, failure)
            self.span.set_status(Status(StatusCode.ERROR, failure))
        except Exception as exc:  # noqa: BLE001
            report_once("span error", exc)

    def _chunk_events(self, stream: attrs.StreamAccumulator) -> None:
        """The opt-in per-chunk events: when each chunk came and how much text it carried, never the text."""
        try:
            span = self.span
            if not span.is_recording():
                return
            name = sc.RESPAN_STREAM_CHUNK_EVENT
            sizes = stream.chunk_sizes or ()
            for index, (timestamp, size) in enumerate(zip(stream.chunk_times, sizes, strict=False)):
                span.add_event(name, {"index": index, "size": size}, timestamp=timestamp)
        except Exception as exc:  # noqa: BLE001
            report_once("stream chunk events", exc)

    def _record_metrics(
        self,
        end_ns: int,
        outcome: Mapping[str, Any],
        error: BaseException | None,
        stream: attrs.StreamAccumulator | None,
    ) -> None:
        try:
            telemetry = self.telemetry
            metric_attrs = dict(self._metric_attrs)
            model = outcome.get(sc.GEN_AI_RESPONSE_MODEL)
            if model:
                metric_attrs[sc.GEN_AI_RESPONSE_MODEL] = model
            if error is not None:
                metric_attrs[sc.ERROR_TYPE] = type(error).__qualname__
            elif stream is not None and stream.failure:
                metric_attrs[sc.ERROR_TYPE] = stream.failure
            telemetry.duration.record((end_ns - self.start_ns) / 1e9, metric_attrs)
            for key, token_type in ((sc.GEN_AI_USAGE_INPUT_TOKENS, "input"), (sc.GEN_AI_USAGE_OUTPUT_TOKENS, "output")):
                if key in outcome and not self.counted_above:
                    telemetry.tokens.record(outcome[key], {**metric_attrs, sc.GEN_AI_TOKEN_TYPE: token_type})
            times = stream.chunk_times if stream is not None else ()
            if times:
                telemetry.first_chunk.record((times[0] - self.start_ns) / 1e9, metric_attrs)
                record = telemetry.per_chunk.record
                for previous, current in pairwise(times):
                    record((current - previous) / 1e9, metric_attrs)
        except Exception as exc:  # noqa: BLE001
            report_once("metrics", exc)
