"""Carry the OpenTelemetry context into threads and thread pools.

A new thread starts with an empty context, so a span started there would have no parent and none of
the ``propagate_attributes`` scope (which lives in the context). ``opentelemetry-instrumentation-threading``
fixes that, but each of its releases pins ``opentelemetry-instrumentation`` exactly and lags the SDK train,
so depending on it fights the user's own OpenTelemetry versions. This is the same idea, with no pins:

- ``Thread.start`` captures the current context on the thread object;
- ``Thread._bootstrap_inner`` (which every started thread runs around ``run()``) attaches it in the new
  thread, so subclasses that override ``run()`` and ``threading.Timer`` get it too;
- ``ThreadPoolExecutor.submit`` captures the context, and the task runs in it (``map`` and asyncio's
  ``run_in_executor`` go through ``submit``).

Wrapping happens once; each start or submit then costs one context capture. The wrappers never raise
into user code, and ``uninstrument`` puts the originals back (for tests).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import Token
from typing import Any

import wrapt
from opentelemetry import context as context_api

from respan_auto._guard import report_once

# the contrib package's entry point: never activated beside ours
CONTRIB_ENTRY_POINT = "threading"
CONTRIB_MODULE = "opentelemetry.instrumentation.threading"

_ATTRIBUTE = "_respan_otel_context"
_lock = threading.Lock()
_enabled = False
_proxies: dict[tuple[type, str], wrapt.FunctionWrapper[..., Any]] = {}  # (owner, name) -> the wrapper we put there


def _capture_on_start(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    if _enabled:
        try:
            vars(instance)[_ATTRIBUTE] = context_api.get_current()
        except Exception as exc:  # noqa: BLE001
            report_once("thread context capture", exc)
    return wrapped(*args, **kwargs)


def _attach(captured: context_api.Context | None) -> Token[context_api.Context] | None:
    try:
        return context_api.attach(captured) if captured is not None else None
    except Exception as exc:  # noqa: BLE001
        report_once("thread context attach", exc)
        return None


def _attach_in_thread(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    # popped, so that a finished Thread object kept by the app does not keep the parent span alive
    token = _attach(getattr(instance, "__dict__", {}).pop(_ATTRIBUTE, None))
    try:
        return wrapped(*args, **kwargs)
    finally:
        if token is not None:
            context_api.detach(token)


def _in_context(captured: context_api.Context, fn: Callable[..., Any]) -> Callable[..., Any]:
    def run_in_context(*args: Any, **kwargs: Any) -> Any:
        token = _attach(captured)
        try:
            return fn(*args, **kwargs)
        finally:
            if token is not None:
                context_api.detach(token)

    return run_in_context


def _capture_on_submit(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    if _enabled and args:
        try:
            args = (_in_context(context_api.get_current(), args[0]), *args[1:])
        except Exception as exc:  # noqa: BLE001
            report_once("pool context capture", exc)
    return wrapped(*args, **kwargs)


def _targets() -> list[tuple[type, str, Callable[..., Any]]]:
    # _bootstrap_inner is private but present in every CPython we support; run() is the fallback
    runner = "_bootstrap_inner" if "_bootstrap_inner" in vars(threading.Thread) else "run"
    return [
        (threading.Thread, "start", _capture_on_start),
        (threading.Thread, runner, _attach_in_thread),
        (ThreadPoolExecutor, "submit", _capture_on_submit),
    ]


def _ours_in_chain(owner: type, name: str) -> bool:
    """Whether our wrapper is still there, on top or under someone else's."""
    ours = _proxies.get((owner, name))
    current = vars(owner).get(name)
    for _ in range(32):  # a chain of wrappers is short; the bound only guards against a cycle
        if ours is None or current is None:
            return False
        if current is ours:
            return True
        current = getattr(current, "__wrapped__", None)
    return False


def contrib_active() -> bool:
    """Whether ``opentelemetry-instrumentation-threading`` already propagates (it is a singleton)."""
    module = sys.modules.get(CONTRIB_MODULE)
    if module is None:
        return False
    try:
        return bool(module.ThreadingInstrumentor().is_instrumented_by_opentelemetry)
    except Exception:  # noqa: BLE001
        return False


def active() -> bool:
    return _enabled


def instrument() -> bool:
    """Turn propagation on; True if this call did. Idempotent; a no-op while the contrib instrumentor is active."""
    global _enabled
    with _lock:
        if _enabled or contrib_active():
            return False
        try:
            for owner, name, wrapper in _targets():
                if not _ours_in_chain(owner, name):
                    _proxies[(owner, name)] = wrapt.wrap_function_wrapper(owner, name, wrapper)
        except Exception as exc:  # noqa: BLE001
            report_once("thread instrumentation", exc)
            return False
        _enabled = True
        return True


def uninstrument() -> None:
    """Turn propagation off and put the originals back.

    A wrapper that someone else has since wrapped over stays in their chain, as a pass-through.
    """
    global _enabled
    with _lock:
        _enabled = False
        for (owner, name), proxy in list(_proxies.items()):
            if vars(owner).get(name) is proxy:
                setattr(owner, name, proxy.__wrapped__)
                del _proxies[(owner, name)]
