"""Which tracer provider our spans go through: the app's own whenever it has one, else ours.

Instrumentors are given ``handle.provider``, a :class:`FollowingTracerProvider`. Its tracers start
each span in the current *target*: the app's provider when the app set one before us, else an SDK
provider of ours. Apps usually set up their own tracing after importing mistralai, and so after
the launcher started us; OpenTelemetry lets the global provider be set only once, so without help
the app's own set would be refused and its exporters would get nothing. So, while the global is
still ours, an app's (or logfire's, or a framework's) ``trace.set_tracer_provider`` is let through:
the app's provider becomes the global, our span processors join it, and our tracers follow it, so
parents and children land in the same pipelines. Letting that set through means reopening OTel's
private set-once guard: done only while the global is ours, and only when the guard has the layout
we know (opentelemetry-api 1.27 and later); otherwise OTel's refusal stands, with one warning.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.util.types import Attributes

from respan_auto._guard import report_once, warn_once

# like ProxyTracer: usable as ``with`` and as a decorator, on sync and async functions (either form below)
_spanning: Callable[[Callable[..., Iterator[trace.Span]]], Callable[..., Any]]
try:
    from opentelemetry.util._decorator import _agnosticcontextmanager as _spanning
except ImportError:  # pragma: no cover - a layout we do not know: the plain standard-library form
    from contextlib import contextmanager as _spanning

logger = logging.getLogger("respan_auto")

MAX_CACHED_TRACERS = 256


def span_limits() -> SpanLimits:
    """The SDK's limits minus its silent attribute truncation: ours marks what it cuts."""
    return SpanLimits(max_attribute_length=SpanLimits.UNSET, max_span_attribute_length=SpanLimits.UNSET)


class _Guest(SpanProcessor):
    """One of our processors inside the app's provider: it sees every span there, its life cycle stays ours.

    The app's provider shuts its processors down when it goes (at exit, or when logfire is
    configured again); ours must keep working until our own exit flush, which is bounded by
    ``RESPAN_EXIT_TIMEOUT``, so ``shutdown`` here does nothing.
    """

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner = inner

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.inner.on_start(span, parent_context=parent_context)

    def _on_ending(self, span: Any) -> None:
        on_ending = getattr(self.inner, "_on_ending", None)
        if on_ending is not None:
            on_ending(span)

    def on_end(self, span: Any) -> None:
        self.inner.on_end(span)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _FollowingTracer(trace.Tracer):
    """Starts each span in its provider's current target, through that target's own tracer (cached per target)."""

    def __init__(self, owner: FollowingTracerProvider, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._owner = owner
        self._args = args
        self._kwargs = kwargs
        self._pair: tuple[Any, trace.Tracer] | None = None  # (target, its tracer): one attribute, swapped whole

    def _tracer(self) -> trace.Tracer:
        target = self._owner.target
        pair = self._pair
        if pair is None or pair[0] is not target:
            try:
                tracer = target.get_tracer(*self._args, **self._kwargs)
            except Exception as exc:  # noqa: BLE001 - a provider that cannot give a tracer must not break the app
                report_once("get a tracer from the target provider", exc)
                tracer = trace.NoOpTracer()
            pair = self._pair = (target, tracer)
        return pair[1]

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self._tracer().start_span(*args, **kwargs)

    @_spanning
    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Iterator[trace.Span]:
        with self._tracer().start_as_current_span(*args, **kwargs) as span:
            yield span


def _takes_processors(provider: Any) -> bool:
    """SDK-like, duck-typed: the SDK's provider, logfire's proxy, any provider that takes span processors."""
    return callable(getattr(provider, "add_span_processor", None)) and not isinstance(provider, FollowingTracerProvider)


class FollowingTracerProvider(trace.TracerProvider):
    """What instrumentors are given: every tracer it hands out follows ``target`` when the app's provider takes over.

    While it is the global provider, apps that treat the global as the SDK's (``add_span_processor``,
    ``force_flush``, ``resource``) reach the target; ``shutdown`` only ever stops a provider of ours.
    """

    def __init__(
        self, target: Any, own: TracerProvider | None = None, processors: Sequence[SpanProcessor] = ()
    ) -> None:
        self.target = target
        self.own = own
        self._processors = list(processors)  # what goes with us when the app's provider takes over
        self._tracers: dict[Any, _FollowingTracer] = {}

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> trace.Tracer:
        args = (instrumenting_module_name, instrumenting_library_version, schema_url)
        if attributes:
            return _FollowingTracer(self, args, {"attributes": attributes})
        tracer = self._tracers.get(args)  # decorators ask on every call: the target's get_tracer is not cheap
        if tracer is None:
            if len(self._tracers) >= MAX_CACHED_TRACERS:
                self._tracers = {}
            tracer = self._tracers[args] = _FollowingTracer(self, args, {})
        return tracer

    def carry(self, processors: Sequence[SpanProcessor]) -> bool:
        """Add ``processors`` to the target, and to any provider this one moves to later; False if refused."""
        self._processors.extend(processors)
        return _add_guests(self.target, processors)

    def move_to(self, provider: Any) -> bool:
        """Make ``provider`` the target, our processors with it; False (target unchanged) if it takes none."""
        if not _takes_processors(provider):
            logger.debug(
                "respan_auto: the new global tracer provider (%s) takes no span processors; our spans stay in ours",
                type(provider).__name__,
            )
            return False
        if not _add_guests(provider, self._processors):
            return False
        self.target = provider
        logger.debug(
            "respan_auto: the app set its own tracer provider (%s); our spans now go there", type(provider).__name__
        )
        return True

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        self.target.add_span_processor(span_processor)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        flush = getattr(self.target, "force_flush", None)
        return bool(flush(timeout_millis)) if callable(flush) else True

    def shutdown(self) -> None:
        if self.own is not None:
            self.own.shutdown()

    @property
    def resource(self) -> Resource:
        return getattr(self.target, "resource", None) or Resource.get_empty()


def _add_guests(provider: Any, processors: Sequence[SpanProcessor]) -> bool:
    try:
        for processor in processors:
            provider.add_span_processor(_Guest(processor))
    except Exception as exc:  # noqa: BLE001
        report_once("join the app's tracer provider", exc)
        return False
    return True


@dataclass
class ProviderHandle:
    """``provider`` is what instrumentors are given; ``own`` the SDK provider we made (None when we joined)."""

    provider: FollowingTracerProvider
    own: TracerProvider | None = None

    @property
    def joined(self) -> bool:
        """Whether our spans go through the app's provider at this moment (it may take over later)."""
        return self.provider.target is not self.own


def install(processors: Sequence[SpanProcessor], resource: Resource) -> ProviderHandle:
    """Add ``processors`` to the app's provider, or set up ours (global), ready to hand over to the app's."""
    current = trace.get_tracer_provider()
    if isinstance(current, FollowingTracerProvider):  # a second pipeline in this process: share the first's
        current.carry(processors)
        return ProviderHandle(current)
    if _takes_processors(current):
        following = FollowingTracerProvider(current)
        if following.carry(processors):
            return ProviderHandle(following)
    own = TracerProvider(resource=resource, shutdown_on_exit=False, span_limits=span_limits())
    for processor in processors:
        own.add_span_processor(processor)
    following = FollowingTracerProvider(own, own=own, processors=processors)
    if not isinstance(current, trace.ProxyTracerProvider):
        # the global is taken by a provider that takes no processors (a no-op one): ours stays private
        logger.debug("respan_auto: the global tracer provider (%s) is not ours to join", type(current).__name__)
        return ProviderHandle(following, own)
    with _lock:
        if _watch_global_sets():
            _ours.append(following)
    trace.set_tracer_provider(following)
    return ProviderHandle(following, own)


# --- letting the app's own set through, while the global is ours ----------------------------------

_lock = threading.Lock()
_ours: list[FollowingTracerProvider] = []  # the providers of ours that were made global
_original_set: Callable[..., None] | None = None


def _renew_lock() -> None:
    global _lock
    _lock = threading.Lock()  # a fork in the middle of a set must not leave the child's lock held


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_lock)


def _set_once_guard() -> Any | None:
    """OTel's private set-once guard, if it has the layout we know (opentelemetry-api 1.27 to now)."""
    guard = getattr(trace, "_TRACER_PROVIDER_SET_ONCE", None)
    if guard is None or not isinstance(getattr(guard, "_done", None), bool) or not hasattr(trace, "_TRACER_PROVIDER"):
        return None
    return guard


def _watch_global_sets() -> bool:
    """Route OTel's global set through ``_set_global`` (once per process); False, with one warning, if we cannot.

    ``trace.set_tracer_provider`` calls the module-level ``_set_tracer_provider`` at each call, so
    replacing that one catches ``from opentelemetry.trace import set_tracer_provider`` done earlier too.
    """
    global _original_set
    if _original_set is not None:
        return True
    original = getattr(trace, "_set_tracer_provider", None)
    if not callable(original) or _set_once_guard() is None:
        warn_once(
            "provider:layout",
            "respan_auto: this opentelemetry-api has a layout we do not know: a TracerProvider the app sets up "
            "after respan_auto started will be refused by OpenTelemetry, and the app's own exporters get no spans",
        )
        return False
    _original_set = original
    trace._set_tracer_provider = _set_global  # type: ignore[attr-defined]
    return True


def _set_global(tracer_provider: Any, *args: Any, **kwargs: Any) -> None:
    """OTel's global set, which lets the app's provider replace ours (only ours) and takes our spans there."""
    original = _original_set
    assert original is not None
    with _lock:
        ours = _reopen_for(tracer_provider)
        if ours:
            original(tracer_provider, *args, **kwargs)
            for following in ours:
                if following.target is following.own:
                    following.move_to(tracer_provider)
            return
    original(tracer_provider, *args, **kwargs)


def _reopen_for(tracer_provider: Any) -> list[FollowingTracerProvider]:
    """When the global is ours and ``tracer_provider`` another: reopen the set-once guard, and say whose it was."""
    try:
        current = getattr(trace, "_TRACER_PROVIDER", None)
        if current is None or current is tracer_provider or isinstance(tracer_provider, FollowingTracerProvider):
            return []
        if not any(current is following for following in _ours):
            return []
        guard = _set_once_guard()
        if guard is None:
            warn_once(
                "provider:guard",
                "respan_auto: cannot hand the global tracer provider over to the app's (unknown opentelemetry-api "
                "layout): OpenTelemetry keeps ours, and the app's own exporters get no spans",
            )
            return []
        guard._done = False
        return list(_ours)
    except Exception as exc:  # noqa: BLE001 - never raise into the app's set-up
        report_once("hand the global tracer provider over", exc)
        return []
