"""Stream proxies that pass every chunk through unchanged and end the span exactly once.

They follow wrapt's idiom: ``__iter__``/``__enter__`` (and the async twins) return the proxy
itself, so ``for``, ``with`` and ``async with`` all keep going through it. Everything else
(``.response``, ``isinstance``, unknown attributes) falls through to the SDK's stream.
"""

from __future__ import annotations

from time import time_ns
from typing import Any

import wrapt
from opentelemetry import context as context_api
from opentelemetry import trace

from respan_auto._guard import report_once
from respan_auto.instrumentation.mistralai.call import Call, leave


class _StreamState:
    """What a proxy carries: the call and what the chunks have said so far."""

    __slots__ = ("accumulator", "call")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.accumulator = call.accumulator()

    def end(self, error: BaseException | None = None, completed: bool = False) -> None:
        self.call.finish(stream=self.accumulator, error=error, completed=completed)


class StreamProxy(wrapt.ObjectProxy):
    """Proxy for the SDK's ``EventStream``."""

    def __init__(self, wrapped: Any, state: _StreamState) -> None:
        super().__init__(wrapped)
        self._self_state = state
        self._self_add = state.accumulator.add  # bound once: it runs per chunk
        self._self_next = wrapped.__next__  # looked up once (through any proxy): it runs per chunk

    def __iter__(self) -> StreamProxy:
        return self

    def __next__(self) -> Any:
        try:
            item = self._self_next()
        except StopIteration:
            self._self_state.end(completed=True)
            raise
        except BaseException as exc:
            self._self_state.end(error=exc)
            raise
        self._self_add(item, time_ns())
        return item

    def __enter__(self) -> Any:
        entered = self.__wrapped__.__enter__()
        return self if entered is self.__wrapped__ else entered

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            self._self_state.end()

    def __del__(self) -> None:
        try:
            self._self_state.end()
        except Exception as exc:  # noqa: BLE001 - interpreter shutdown may have torn modules down
            report_once("stream garbage collection", exc)


class ClosableStreamProxy(StreamProxy):
    """For SDK generations whose ``EventStream`` has ``close()`` (2.x and later)."""

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_state.end()


class AsyncStreamProxy(wrapt.ObjectProxy):
    """Proxy for the SDK's ``EventStreamAsync``."""

    def __init__(self, wrapped: Any, state: _StreamState) -> None:
        super().__init__(wrapped)
        self._self_state = state
        self._self_add = state.accumulator.add
        self._self_next = wrapped.__anext__

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self._self_next()
        except StopAsyncIteration:
            self._self_state.end(completed=True)
            raise
        except BaseException as exc:
            self._self_state.end(error=exc)
            raise
        self._self_add(item, time_ns())
        return item

    async def __aenter__(self) -> Any:
        entered = await self.__wrapped__.__aenter__()
        return self if entered is self.__wrapped__ else entered

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            self._self_state.end()

    def __del__(self) -> None:
        try:
            self._self_state.end()
        except Exception as exc:  # noqa: BLE001
            report_once("stream garbage collection", exc)


class ClosableAsyncStreamProxy(AsyncStreamProxy):
    async def close(self) -> Any:
        try:
            return await self.__wrapped__.close()
        finally:
            self._self_state.end()


class RunStreamProxy(AsyncStreamProxy):
    """For ``run_stream_async``'s async generator: each step runs in the run's span, so the requests and tool runs
    that the step makes are the run's children; ``aclose`` (a generator's ``close``) ends the span."""

    async def __anext__(self) -> Any:
        token = _enter(self._self_state.call)
        try:
            return await super().__anext__()
        finally:
            leave(token)

    async def aclose(self) -> Any:
        token = _enter(self._self_state.call)
        try:
            return await self.__wrapped__.aclose()
        finally:
            leave(token)
            self._self_state.end()


def _enter(call: Call) -> Any:
    try:
        return context_api.attach(trace.set_span_in_context(call.span))
    except Exception as exc:  # noqa: BLE001
        report_once("run context attach", exc)
        return None


def _wrap(call: Call, stream: Any, step: str, plain: type, closable: type) -> Any:
    """Wrap the SDK's stream so the span follows it; an object that is not a stream ends the span and passes."""
    try:
        if not hasattr(stream, step):
            call.finish()
            return stream
        return (closable if hasattr(stream, "close") else plain)(stream, _StreamState(call))
    except Exception as exc:  # noqa: BLE001
        report_once("stream wrap", exc)
        call.finish()
        return stream


def wrap_stream(call: Call, stream: Any) -> Any:
    return _wrap(call, stream, "__next__", StreamProxy, ClosableStreamProxy)


def wrap_async_stream(call: Call, stream: Any) -> Any:
    if call.family.run:
        return _wrap(call, stream, "__anext__", RunStreamProxy, RunStreamProxy)
    return _wrap(call, stream, "__anext__", AsyncStreamProxy, ClosableAsyncStreamProxy)
