"""One traced chat call: start the span, end it exactly once, record metrics.

Shared by the plain and streaming wrappers, sync and async alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import SpanKind, Status, StatusCode

try:
    from opentelemetry.sdk.trace import Event
except ImportError:  # an API-only install: spans are not the SDK's
    Event = None  # type: ignore[assignment,misc]

from respan_auto import semconv as sc
from respan_auto._guard import report_once
from respan_auto.instrumentation.mistralai import attributes as attrs

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


def in_traced_call() -> bool:
    return bool(context_api.get_value(IN_CALL_KEY))


class Telemetry:
    """What the wrappers need from ``instrument()``: a tracer, the instruments, the content switch."""

    def __init__(self, tracer: trace.Tracer, meter: Any, capture_content: bool) -> None:
        self.tracer = tracer
        self.capture_content = capture_content
        self.duration = meter.create_histogram(
            sc.METRIC_OPERATION_DURATION, unit="s", description="GenAI operation duration"
        )
        self.tokens = meter.create_histogram(
            sc.METRIC_TOKEN_USAGE, unit="{token}", description="Measures number of input and output tokens used"
        )

    def begin(self, instance: Any, kwargs: Mapping[str, Any]) -> Call | None:
        """Start a span for a call, or return None when this call must not be traced."""
        if in_traced_call() or not is_instrumentation_enabled():
            return None
        try:
            return Call(self, instance, kwargs)
        except Exception as exc:  # noqa: BLE001
            report_once("span start", exc)
            return None


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

    __slots__ = ("_ended", "_lock", "_metric_attrs", "_token", "span", "start_ns", "telemetry")

    def __init__(self, telemetry: Telemetry, instance: Any, kwargs: Mapping[str, Any]) -> None:
        self.telemetry = telemetry
        self._ended = False
        self._lock = threading.Lock()
        self._token = None
        request = attrs.request_attributes(kwargs, telemetry.capture_content)
        try:
            url = _server_url(instance, kwargs)
            if url:
                request.update(attrs.server_attributes(url))
        except Exception as exc:  # noqa: BLE001
            report_once("server address", exc)
        model = request.get(sc.GEN_AI_REQUEST_MODEL)
        name = f"{sc.OPERATION_CHAT} {model}" if model else sc.OPERATION_CHAT
        self._metric_attrs = {k: request[k] for k in _METRIC_KEYS if k in request}
        self.start_ns = time.time_ns()
        self.span = telemetry.tracer.start_span(
            name, kind=SpanKind.CLIENT, attributes=request, start_time=self.start_ns
        )
        ctx = context_api.set_value(IN_CALL_KEY, True, trace.set_span_in_context(self.span))
        self._token = context_api.attach(ctx)

    def detach(self) -> None:
        """Leave the span's context; called once the SDK method has returned or raised."""
        token, self._token = self._token, None
        if token is not None:
            try:
                context_api.detach(token)
            except Exception as exc:  # noqa: BLE001
                report_once("context detach", exc)

    def finish(
        self,
        response: Any = None,
        accumulator: attrs.StreamAccumulator | None = None,
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
        usage: Mapping[str, Any] = {}
        try:
            if response is not None:
                usage = attrs.response_attributes(response, self.telemetry.capture_content)
                span.set_attributes(usage)
            if accumulator is not None:
                self._finish_stream(accumulator, completed)
                usage = accumulator.attributes()
                span.set_attributes(usage)
            if error is not None:
                self._record_error(error)
        except Exception as exc:  # noqa: BLE001
            report_once("span finish", exc)
        try:
            span.end(end_time=end_ns)
        except Exception as exc:  # noqa: BLE001
            report_once("span end", exc)
        self._record_metrics(end_ns, usage, error)

    def _finish_stream(self, accumulator: attrs.StreamAccumulator, completed: bool | None) -> None:
        span = self.span
        if not span.is_recording():
            return  # sampled out: the chunk events would go nowhere
        times = accumulator.chunk_times
        if times:
            span.set_attribute(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, (times[0] - self.start_ns) / 1e9)
        if completed is not None:
            span.set_attribute(sc.RESPAN_STREAM_COMPLETED, completed)
        texts = accumulator.chunk_texts if accumulator.capture_content else None
        # The SDK's public add_event re-validates every attribute (about 5 us an event); ours are
        # plain ints and strings, so SDK spans take them directly. The span's event limit still applies.
        append = getattr(span, "_add_event", None) if Event is not None else None
        name = sc.RESPAN_STREAM_CHUNK_EVENT
        for index, timestamp in enumerate(times):
            event = {"index": index} if texts is None else {"index": index, "content": texts[index]}
            if append is not None:
                append(Event(name, event, timestamp))
            else:
                span.add_event(name, event, timestamp=timestamp)

    def _record_error(self, error: BaseException) -> None:
        span = self.span
        error_type = type(error).__qualname__
        span.set_attribute(sc.ERROR_TYPE, error_type)
        status = getattr(error, "status_code", None)
        if isinstance(status, int):
            span.set_attribute(sc.HTTP_RESPONSE_STATUS_CODE, status)
        span.record_exception(error, escaped=True)
        span.set_status(Status(StatusCode.ERROR, error_type))

    def _record_metrics(self, end_ns: int, usage: Mapping[str, Any], error: BaseException | None) -> None:
        try:
            metric_attrs = dict(self._metric_attrs)
            model = usage.get(sc.GEN_AI_RESPONSE_MODEL)
            if model:
                metric_attrs[sc.GEN_AI_RESPONSE_MODEL] = model
            if error is not None:
                metric_attrs[sc.ERROR_TYPE] = type(error).__qualname__
            self.telemetry.duration.record((end_ns - self.start_ns) / 1e9, metric_attrs)
            for key, token_type in ((sc.GEN_AI_USAGE_INPUT_TOKENS, "input"), (sc.GEN_AI_USAGE_OUTPUT_TOKENS, "output")):
                if key in usage:
                    self.telemetry.tokens.record(usage[key], {**metric_attrs, sc.GEN_AI_TOKEN_TYPE: token_type})
        except Exception as exc:  # noqa: BLE001
            report_once("metrics", exc)
