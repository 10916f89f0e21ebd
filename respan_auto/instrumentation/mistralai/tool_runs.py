"""The run helpers' client-side tool runs: one ``execute_tool {name}`` span for each.

``Conversations.run_async``/``run_stream_async`` run the app's functions for the model and send back the results.
The SDK opens its own span for each run from the *global* tracer, whatever its telemetry setting, and always with
the arguments and the result. We wrap ``create_function_result`` (as ``mistralai.extra.run.context`` holds it) to
make the run's span ourselves, under the content switch; while it runs, the SDK's tools module is handed a tracer
that makes no span, so every run has exactly one span and the tool's own work nests under ours.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import wrapt
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import SpanKind, Status, StatusCode

from respan_auto import content
from respan_auto import semconv as sc
from respan_auto._guard import report_once
from respan_auto.instrumentation.mistralai.attributes import dumps, field_of, plain_text, to_plain
from respan_auto.instrumentation.mistralai.call import leave
from respan_auto.instrumentation.mistralai.patch import named_after

CONTEXT_MODULE = "mistralai.extra.run.context"  # holds ``create_function_result`` as the run helpers call it
TOOLS_MODULE = "mistralai.extra.run.tools"  # opens the SDK's own tool-run span
RUNNER = "create_function_result"
TRACE_GLOBAL = "trace"  # the tools module's name for ``opentelemetry.trace``

_IN_TOOL_RUN_KEY = context_api.create_key("respan-mistralai-tool-run")


class _NoSpanTracer(trace.NoOpTracer):
    """Hands out spans that record nothing and leave the current span (ours) current."""

    def start_span(self, name: str, context: Any = None, *args: Any, **kwargs: Any) -> trace.Span:
        return trace.NonRecordingSpan(trace.get_current_span(context).get_span_context())

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self, name: str, context: Any = None, *args: Any, **kwargs: Any
    ) -> Iterator[trace.Span]:
        yield self.start_span(name, context)


_NO_SPAN_TRACER = _NoSpanTracer()


class QuietTraceModule(wrapt.ObjectProxy):
    """``opentelemetry.trace`` as the SDK's tools module sees it: inside our tool-run span, no tracer of its own."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        if context_api.get_value(_IN_TOOL_RUN_KEY):
            return _NO_SPAN_TRACER
        return self.__wrapped__.get_tracer(*args, **kwargs)  # type: ignore[no-any-return]


def _start(tracer: trace.Tracer, function_call: Any, capture: bool) -> trace.Span:
    name = field_of(function_call, "name")
    name = plain_text(name) if name is not None else None
    attributes: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: sc.OPERATION_EXECUTE_TOOL,
        sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_MISTRAL,
        sc.GEN_AI_TOOL_TYPE: "function",
        sc.TRACELOOP_SPAN_KIND: "tool",
    }
    if name:
        attributes[sc.GEN_AI_TOOL_NAME] = name
    call_id = field_of(function_call, "tool_call_id")
    if isinstance(call_id, str) and call_id:
        attributes[sc.GEN_AI_TOOL_CALL_ID] = call_id
    arguments = field_of(function_call, "arguments")
    if capture and arguments is not None:
        attributes[sc.GEN_AI_TOOL_CALL_ARGUMENTS] = (
            arguments if isinstance(arguments, str) else dumps(to_plain(arguments))
        )
    span_name = f"{sc.OPERATION_EXECUTE_TOOL} {name}" if name else sc.OPERATION_EXECUTE_TOOL
    return tracer.start_span(span_name, kind=SpanKind.INTERNAL, attributes=attributes)


def _end(span: trace.Span, capture: bool, result: Any = None, error: BaseException | None = None) -> None:
    try:
        if error is not None:
            span.set_attribute(sc.ERROR_TYPE, type(error).__qualname__)
            content.record_exception(span, error, capture)
            span.set_status(Status(StatusCode.ERROR, type(error).__qualname__))
        elif capture:
            text = field_of(result, "result")
            if isinstance(text, str):
                span.set_attribute(sc.GEN_AI_TOOL_CALL_RESULT, text)
        span.end()
    except Exception as exc:  # noqa: BLE001
        report_once("tool run span end", exc)


def tool_run_wrapper(tracer: trace.Tracer, pinned: bool | None) -> Any:
    """The wrapper of ``create_function_result(function_call, run_tool, continue_on_fn_error)``, a coroutine."""

    def wrapper(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        async def traced() -> Any:
            span = token = None
            capture = content.enabled(pinned)
            if is_instrumentation_enabled():
                try:
                    span = _start(tracer, args[0] if args else kwargs.get("function_call"), capture)
                    ctx = context_api.set_value(_IN_TOOL_RUN_KEY, True, trace.set_span_in_context(span))
                    token = context_api.attach(ctx)
                except Exception as exc:  # noqa: BLE001
                    report_once("tool run span start", exc)
            if span is None:
                return await wrapped(*args, **kwargs)
            try:
                result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                leave(token)
                _end(span, capture, error=exc)
                raise
            leave(token)
            _end(span, capture, result=result)
            return result

        named_after(traced, wrapped)
        return traced()

    return wrapper
