"""``@workflow``, ``@task``, ``@agent`` and ``@tool``: spans that give Mistral calls their place.

Each works bare or called, on sync and async functions, generators and methods. A generator's
span covers its whole iteration, but its context is attached only while the generator body runs,
so nothing leaks into the code between two ``next`` calls, nor into later traces when a
generator is dropped unfinished.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any, TypeVar

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from respan_auto._guard import report_once
from respan_auto.context import ENTITY_KEY, capture_content, child_entity, entity_attributes
from respan_auto.version import __version__

F = TypeVar("F", bound=Callable[..., Any])

MAX_VALUE_CHARS = 10_000
_KINDS = ("workflow", "task", "agent", "tool")


def _plain(value: Any, depth: int = 0) -> Any:
    """JSON-ready form of an argument or result: pydantic objects dumped, other objects a short type tag."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if depth > 8:
        return f"<{type(value).__name__}>"
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json")
        except Exception:  # noqa: BLE001 - a model that cannot dump itself still gets a tag
            pass
    return f"<{type(value).__name__}>"


def serialize(value: Any) -> str:
    """JSON text, truncated (and marked so) past ``MAX_VALUE_CHARS``."""
    text = json.dumps(_plain(value), ensure_ascii=False, default=str)
    if len(text) > MAX_VALUE_CHARS:
        return text[:MAX_VALUE_CHARS] + "…[truncated]"
    return text


class _Scope:
    """One decorated call's span: started once, entered around each step, ended exactly once."""

    __slots__ = ("_ended", "_token", "capture", "context", "span")

    def __init__(self, kind: str, name: str, args: tuple, kwargs: dict) -> None:
        parent = context_api.get_current()
        parent_entity = context_api.get_value(ENTITY_KEY, parent)
        entity = child_entity(parent_entity, kind, name)
        attributes = {
            **entity_attributes(parent_entity),
            "traceloop.span.kind": kind,
            "traceloop.entity.name": name,
        }
        if entity.workflow:
            attributes["traceloop.workflow.name"] = entity.workflow
        self.capture = capture_content()
        if self.capture:
            try:
                attributes["traceloop.entity.input"] = serialize({"args": list(args), "kwargs": kwargs})
            except Exception as exc:  # noqa: BLE001
                report_once("decorator input", exc)
        tracer = trace.get_tracer("respan_auto.decorators", __version__)
        self.span: Span = tracer.start_span(f"{name}.{kind}", context=parent, attributes=attributes)
        self.context = context_api.set_value(ENTITY_KEY, entity, trace.set_span_in_context(self.span, parent))
        self._ended = False

    def enter(self) -> object:
        return context_api.attach(self.context)

    @staticmethod
    def leave(token: object) -> None:
        context_api.detach(token)

    def __enter__(self) -> _Scope:
        self._token = self.enter()
        return self

    def __exit__(self, exc_type: object, error: BaseException | None, tb: object) -> None:
        self.leave(self._token)
        if error is not None:
            self.end(error=error)

    def stopped_by(self, exc: BaseException) -> None:
        """A generator step raised ``exc``: exhaustion and closing end the span normally, the rest is an error."""
        if isinstance(exc, StopIteration):
            self.end(exc.value, has_output=exc.value is not None)
        elif isinstance(exc, (StopAsyncIteration, GeneratorExit)):
            self.end()
        else:
            self.end(error=exc)

    def returned(self, result: Any) -> Any:
        self.end(result, has_output=True)
        return result

    def end(self, output: Any = None, error: BaseException | None = None, has_output: bool = False) -> None:
        if self._ended:
            return
        self._ended = True
        try:
            if error is not None:
                self.span.record_exception(error)
                self.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            elif has_output and self.capture:
                self.span.set_attribute("traceloop.entity.output", serialize(output))
        except Exception as exc:  # noqa: BLE001
            report_once("decorator output", exc)
        self.span.end()


class _TracedGenerator(Generator):
    """Drives the user's generator, with the span's context attached only during each step."""

    def __init__(self, scope: _Scope, inner: Generator) -> None:
        self._scope = scope
        self._inner = inner

    def _step(self, method: Callable[..., Any], *args: Any) -> Any:
        token = self._scope.enter()
        try:
            return method(*args)
        except BaseException as exc:
            self._scope.stopped_by(exc)
            raise
        finally:
            self._scope.leave(token)

    def send(self, value: Any) -> Any:
        return self._step(self._inner.send, value)

    def throw(self, *args: Any) -> Any:
        return self._step(self._inner.throw, *args)

    def close(self) -> None:
        try:
            self._step(self._inner.close)
        finally:
            self._scope.end()

    def __del__(self) -> None:
        self._scope.end()


class _TracedAsyncGenerator(AsyncGenerator):
    def __init__(self, scope: _Scope, inner: AsyncGenerator) -> None:
        self._scope = scope
        self._inner = inner

    async def _step(self, method: Callable[..., Any], *args: Any) -> Any:
        token = self._scope.enter()
        try:
            return await method(*args)
        except BaseException as exc:
            self._scope.stopped_by(exc)
            raise
        finally:
            self._scope.leave(token)

    async def asend(self, value: Any) -> Any:
        return await self._step(self._inner.asend, value)

    async def athrow(self, *args: Any) -> Any:
        return await self._step(self._inner.athrow, *args)

    async def aclose(self) -> None:
        try:
            await self._step(self._inner.aclose)
        finally:
            self._scope.end()

    def __del__(self) -> None:
        self._scope.end()


def _start(kind: str, name: str, args: tuple, kwargs: dict) -> _Scope | None:
    try:
        return _Scope(kind, name, args, kwargs)
    except Exception as exc:  # noqa: BLE001 - tracing trouble must never stop the function
        report_once("decorator span", exc)
        return None


def _wrap(fn: F, kind: str, name: str | None) -> F:
    entity_name = name or getattr(fn, "__qualname__", None) or getattr(fn, "__name__", "anonymous")

    generator = (
        _TracedAsyncGenerator
        if inspect.isasyncgenfunction(fn)
        else _TracedGenerator
        if inspect.isgeneratorfunction(fn)
        else None
    )
    if generator is not None:

        @functools.wraps(fn)
        def generator_wrapper(*args: Any, **kwargs: Any) -> Any:
            scope = _start(kind, entity_name, args, kwargs)
            inner = fn(*args, **kwargs)
            return inner if scope is None else generator(scope, inner)

        return generator_wrapper  # type: ignore[return-value]

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            scope = _start(kind, entity_name, args, kwargs)
            if scope is None:
                return await fn(*args, **kwargs)
            with scope:
                result = await fn(*args, **kwargs)
            return scope.returned(result)

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        scope = _start(kind, entity_name, args, kwargs)
        if scope is None:
            return fn(*args, **kwargs)
        with scope:
            result = fn(*args, **kwargs)
        return scope.returned(result)

    return wrapper  # type: ignore[return-value]


def _decorator(kind: str) -> Callable[..., Any]:
    def decorator(fn: Callable[..., Any] | str | None = None, *, name: str | None = None) -> Any:
        if callable(fn):
            return _wrap(fn, kind, name)  # bare: @task
        label = fn if isinstance(fn, str) else name  # @task("x") or @task(name="x")
        return lambda f: _wrap(f, kind, label)

    decorator.__name__ = kind
    decorator.__qualname__ = kind
    decorator.__doc__ = f"Trace a function as a {kind}: ``@{kind}``, ``@{kind}(name=...)``."
    return decorator


workflow = _decorator("workflow")
task = _decorator("task")
agent = _decorator("agent")
tool = _decorator("tool")
