"""The wrappers around each family's methods (plain and streamed, sync and async) and their installation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import wrapt

from respan_auto._guard import report_once, warn_once
from respan_auto.instrumentation.mistralai.call import Call, Telemetry, in_traced_call
from respan_auto.instrumentation.mistralai.families import CHAT, Family
from respan_auto.instrumentation.mistralai.stream import wrap_async_stream, wrap_stream

Wrapper = Callable[[Any, Any, tuple, dict], Any]
OnResult = Callable[[Call, Any], Any]


def _end_with_response(call: Call, response: Any) -> Any:
    call.finish(response=response)
    return response


def _failed(call: Call, error: BaseException) -> None:
    call.detach()
    call.finish(error=error)


def _returned(call: Call, on_result: OnResult, result: Any) -> Any:
    call.detach()
    return on_result(call, result)


def _sync_wrapper(telemetry: Telemetry, family: Family, on_result: OnResult, stream: bool) -> Wrapper:
    def wrapper(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        call = telemetry.begin(instance, kwargs, stream, family, args)
        if call is None:
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            _failed(call, exc)
            raise
        return _returned(call, on_result, result)

    return wrapper


def named_after(function: Any, wrapped: Any) -> None:
    for attribute in ("__name__", "__qualname__"):
        name = getattr(wrapped, attribute, None)
        if isinstance(name, str):
            setattr(function, attribute, name)


def _async_wrapper(telemetry: Telemetry, family: Family, on_result: OnResult, stream: bool) -> Wrapper:
    def wrapper(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        # The span starts when the coroutine runs, as the SDK's own work does, and the SDK's coroutine is
        # made only then: one that the app (or a layer above) drops is ours alone, and it carries the SDK
        # method's name, so the "never awaited" warning reads exactly as it would without us.
        async def traced() -> Any:
            call = telemetry.begin(instance, kwargs, stream, family, args)
            if call is None:
                return await wrapped(*args, **kwargs)
            try:
                result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                _failed(call, exc)
                raise
            return _returned(call, on_result, result)

        named_after(traced, wrapped)
        return traced()

    return wrapper


def _response_or(follow: OnResult, step: str) -> OnResult:
    """For methods that return a stream only when asked (``stream=True``): follow a stream, end on a response."""

    def on_result(call: Call, result: Any) -> Any:
        return follow(call, result) if hasattr(result, step) else _end_with_response(call, result)

    return on_result


def family_wrappers(telemetry: Telemetry, family: Family) -> dict[str, Wrapper]:
    """The wrapper for each method of the family's class we trace."""
    wrappers = {}
    for name in family.methods:
        is_async, stream = name.endswith("_async"), "stream" in name.split("_")
        make, follow, step = (
            (_async_wrapper, wrap_async_stream, "__anext__") if is_async else (_sync_wrapper, wrap_stream, "__next__")
        )
        if family.streams_on_request:
            on_result = _response_or(follow, step)
        else:
            on_result = follow if stream else _end_with_response
        wrappers[name] = make(telemetry, family, on_result, stream)
    return wrappers


def chat_wrappers(telemetry: Telemetry) -> dict[str, Wrapper]:
    return family_wrappers(telemetry, CHAT)


def quiet_sdk_tracer(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    """Wraps the SDK's ``get_or_create_otel_tracer``: inside our span, report tracing as off.

    The SDK's own hook (always on with a global provider up to 2.4.9, opt-in later) would
    otherwise add a second span with the same ``gen_ai.request.model`` for every call.
    """
    result = wrapped(*args, **kwargs)
    try:
        if in_traced_call() and isinstance(result, tuple) and len(result) == 2:
            return False, result[1]
    except Exception as exc:  # noqa: BLE001
        report_once("SDK tracer hook", exc)
    return result


class Patcher:
    """Applies wrappers to classes and module functions, remembers originals, restores them."""

    def __init__(self) -> None:
        self._originals: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, wrapper: Wrapper) -> bool:
        original = vars(owner).get(name)
        if original is None:
            return False
        if any(o is owner and n == name for o, n, _ in self._originals):
            return True  # already ours: a module re-import fires the hook again
        wrapt.wrap_function_wrapper(owner, name, wrapper)
        self._originals.append((owner, name, original))
        return True

    def replace(self, owner: Any, name: str, make: Callable[[Any], Any]) -> bool:
        """Swap a module's global for ``make(original)``, once; False when the module has no such global."""
        original = vars(owner).get(name)
        if original is None:
            return False
        if not any(o is owner and n == name for o, n, _ in self._originals):
            setattr(owner, name, make(original))
            self._originals.append((owner, name, original))
        return True

    def restore(self) -> None:
        while self._originals:
            owner, name, original = self._originals.pop()
            try:
                setattr(owner, name, original)
            except Exception as exc:  # noqa: BLE001
                report_once("unpatch", exc)


def patch_family_class(patcher: Patcher, cls: Any, wrappers: dict[str, Wrapper], where: str) -> None:
    missing = [name for name, wrapper in wrappers.items() if not patcher.wrap(cls, name, wrapper)]
    if missing:
        warn_once(
            f"methods:{where}.{cls.__name__}",
            "respan_auto: %s.%s has no %s; those Mistral calls will not be traced",
            where,
            cls.__name__,
            ", ".join(missing),
        )
