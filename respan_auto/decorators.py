"""``@workflow``, ``@task``, ``@agent`` and ``@tool``: spans that give Mistral calls their place.

Each works bare or called, on sync and async functions, generators, async generators and methods
(plain, class and static). The decorated object is a ``wrapt`` proxy of the function, so what
frameworks inspect stays true: the signature, and whether it is a coroutine, generator or async
generator function (FastAPI yield-dependencies, pytest yield-fixtures). A generator function still
returns a real generator.

A generator's span covers its whole iteration, but its context is attached only while the generator
body runs, so nothing leaks into the code between two ``next`` calls, nor into later traces when a
generator is dropped unfinished. What the body attaches itself (a ``propagate_attributes`` block
around a ``yield``) stays with it from one step to the next, whichever thread or context runs the
step: Starlette, for one, runs each step of a sync generator in its thread pool.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import json
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any, TypeVar, cast

import wrapt
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from respan_auto import content
from respan_auto import semconv as sc
from respan_auto._guard import report_once
from respan_auto.context import ENTITY_KEY, Entity, capture_content, child_entity, entity_attributes
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
    """One decorated call's span: started once, entered around the call or each generator step, ended once."""

    __slots__ = ("_ended", "_token", "capture", "context", "span")

    def __init__(self, kind: str, name: str, args: tuple, kwargs: dict) -> None:
        self._ended = True  # until the span exists
        parent = context_api.get_current()
        parent_entity = cast("Entity | None", context_api.get_value(ENTITY_KEY, parent))
        entity = child_entity(parent_entity, kind, name)
        attributes = {
            **entity_attributes(parent_entity),
            sc.TRACELOOP_SPAN_KIND: kind,
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

    def __enter__(self) -> _Scope:
        self._token = context_api.attach(self.context)
        return self

    def __exit__(self, exc_type: object, error: BaseException | None, tb: object) -> None:
        self.context = context_api.get_current()  # what the body attached stays for a generator's next step
        context_api.detach(self._token)
        if error is not None:
            self.end(error=error)

    def __del__(self) -> None:
        self.end()  # an async generator dropped before its first step

    def returned(self, result: Any) -> Any:
        self.end(result, has_output=True)
        return result

    def end(self, output: Any = None, error: BaseException | None = None, has_output: bool = False) -> None:
        if self._ended:
            return
        self._ended = True
        try:
            if error is not None:
                content.record_exception(self.span, error, self.capture)
                self.span.set_attribute(sc.ERROR_TYPE, type(error).__qualname__)  # as a failed model call has it
                self.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            elif has_output and self.capture:
                self.span.set_attribute("traceloop.entity.output", serialize(output))
        except Exception as exc:  # noqa: BLE001
            report_once("decorator output", exc)
        self.span.end()


def _start(kind: str, name: str, args: tuple, kwargs: dict) -> _Scope | None:
    try:
        return _Scope(kind, name, args, kwargs)
    except Exception as exc:  # noqa: BLE001 - tracing trouble must never stop the function
        report_once("decorator span", exc)
        return None


def _steps(scope: _Scope, inner: Generator) -> Generator:
    """Relays ``send``, ``throw`` and ``close`` to ``inner``, running each of its steps in ``scope``."""
    item = None  # for the priming ``next``, which nobody sees
    step: Callable[[Any], Any]
    arg: Any
    while True:
        try:
            sent = yield item
        except GeneratorExit:
            with scope:
                inner.close()
            scope.end()
            raise
        except BaseException as exc:  # noqa: BLE001 - the caller threw it in: it is the body's
            step, arg = inner.throw, exc
        else:
            step, arg = inner.send, sent
        with scope:
            try:
                item = step(arg)
            except StopIteration as stop:
                scope.end(stop.value, has_output=stop.value is not None)
                return stop.value


async def _async_steps(scope: _Scope, inner: AsyncGenerator) -> AsyncGenerator:
    """Relays ``asend``, ``athrow`` and ``aclose`` to ``inner``, running each of its steps in ``scope``."""
    step: Callable[[Any], Any] = inner.asend
    arg: Any = None
    while True:
        with scope:
            try:
                item = await step(arg)
            except StopAsyncIteration:
                scope.end()
                return
        try:
            arg, step = (yield item), inner.asend
        except GeneratorExit:
            with scope:
                await inner.aclose()
            scope.end()
            raise
        except BaseException as exc:  # noqa: BLE001 - the caller threw it in: it is the body's
            arg, step = exc, inner.athrow


def _generator(scope: _Scope, inner: Generator) -> Generator:
    outer = _steps(scope, inner)
    next(outer)  # primed, so that a throw or close before the first step still reaches the body and ends the span
    return _named(outer, inner)


def _async_generator(scope: _Scope, inner: AsyncGenerator) -> AsyncGenerator:
    # not primed: its first step must come from the event loop, which then finalizes it if it is dropped
    return _named(_async_steps(scope, inner), inner)


def _named(outer: Any, inner: Any) -> Any:
    """Our generator or coroutine bears the user's name, as its repr and asyncio's warnings show it."""
    outer.__name__ = getattr(inner, "__name__", outer.__name__)
    outer.__qualname__ = getattr(inner, "__qualname__", outer.__qualname__)
    return outer


async def _coroutine(
    kind: str, name: str, received: tuple, wrapped: Callable[..., Any], args: tuple, kwargs: dict
) -> Any:
    scope = _start(kind, name, received, kwargs)  # when awaited, in the context it is awaited in
    if scope is None:
        return await wrapped(*args, **kwargs)
    with scope:
        result = await wrapped(*args, **kwargs)
    return scope.returned(result)


def _attribute(module: str, qualname: str) -> Any:
    return functools.reduce(getattr, qualname.split("."), importlib.import_module(module))


class _BoundTraced(wrapt.BoundFunctionWrapper):
    """A decorated method looked up on an instance or class: it pickles and copies as a bound method does."""

    @property
    def __func__(self) -> Any:
        """The decorated function for a method, as a bound method's is (pytest rebinds fixture methods with it)."""
        method = cast(Any, self.__wrapped__).__func__  # AttributeError where there is no bound method, as there
        return self._self_parent if inspect.isfunction(self._self_parent.__wrapped__) else method

    def __reduce_ex__(self, protocol: object) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        bound_to = getattr(self.__wrapped__, "__self__", None)
        if bound_to is not None:
            return getattr, (bound_to, self.__name__)
        return _attribute, (self.__module__, self.__qualname__)

    def __copy__(self) -> Any:
        rebuild, args = self.__reduce_ex__(4)
        return rebuild(*args)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        rebuild, args = self.__reduce_ex__(4)
        return rebuild(*copy.deepcopy(args, memo))


class _Traced(wrapt.FunctionWrapper):
    """A decorated function: a proxy, so ``inspect`` and frameworks see the function itself."""

    __bound_function_wrapper__ = _BoundTraced

    def __reduce_ex__(self, protocol: object) -> str:
        return self.__qualname__  # pickled by reference, as a function is

    def __copy__(self) -> _Traced:
        return self  # a function is its own copy

    def __deepcopy__(self, memo: dict[int, Any]) -> _Traced:
        return self


def _wrap(fn: F, kind: str, name: str | None) -> F:
    function = fn.__func__ if isinstance(fn, (classmethod, staticmethod)) else fn
    entity_name = name or str(getattr(fn, "__qualname__", "") or getattr(fn, "__name__", "anonymous"))
    relay = (
        _async_generator
        if inspect.isasyncgenfunction(function)
        else _generator
        if inspect.isgeneratorfunction(function)
        else None
    )
    coroutine = relay is None and inspect.iscoroutinefunction(function)
    with_instance = not inspect.ismethod(fn)  # a method bound before decorating is called without its instance

    def traced(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        # the input is what the function receives: a method's self or cls first
        received = (instance, *args) if with_instance and instance is not None else args
        if coroutine:
            return _named(_coroutine(kind, entity_name, received, wrapped, args, kwargs), function)
        scope = _start(kind, entity_name, received, kwargs)
        if scope is None:
            return wrapped(*args, **kwargs)
        if relay is not None:
            return relay(scope, wrapped(*args, **kwargs))
        with scope:
            result = wrapped(*args, **kwargs)
        return scope.returned(result)

    return _Traced(fn, traced)  # type: ignore[return-value]


def _decorator(kind: str) -> Callable[..., Any]:
    def decorator(fn: Callable[..., Any] | str | None = None, *, name: str | None = None) -> Any:
        if callable(fn) or isinstance(fn, (classmethod, staticmethod)):
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
