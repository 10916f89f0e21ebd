"""Respan attributes that apply to every span: process defaults and ``propagate_attributes`` scopes.

Scoped values live in the OpenTelemetry context, so they follow the context wherever it goes
(asyncio tasks, threads under the threading instrumentation). A span processor copies them
onto each span as it starts, whoever started it.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from respan_auto import content
from respan_auto._guard import report_once, warn_once

# option -> span attribute, as Respan's ingest reads them
ATTRIBUTE_KEYS = {
    "customer_identifier": "respan.customer_params.customer_identifier",
    "customer_email": "respan.customer_params.email",
    "customer_name": "respan.customer_params.name",
    "thread_identifier": "respan.threads.thread_identifier",
    "session_identifier": "respan.sessions.session_identifier",
    "trace_group_identifier": "respan.trace.trace_group_identifier",
    "custom_identifier": "respan.span_params.custom_identifier",
    "environment": "respan.environment",
}
METADATA_PREFIX = "respan.metadata."

_SCOPE_KEY = context_api.create_key("respan-attributes")
ENTITY_KEY = context_api.create_key("respan-entity")
_defaults: dict[str, str] = {}

# the process's content switch, read at call time (see respan_auto/content.py)
capture_content = content.enabled


@dataclass(frozen=True)
class Entity:
    """Where in the decorator tree a context is: the nearest workflow and the enclosing tasks."""

    workflow: str | None
    path: tuple[str, ...]


def child_entity(parent: Entity | None, kind: str, name: str) -> Entity:
    if kind == "workflow":
        return Entity(name, ())
    if parent is None:
        return Entity(None, (name,))
    return Entity(parent.workflow, (*parent.path, name))


def entity_attributes(entity: Entity | None) -> dict[str, str]:
    """``traceloop.workflow.name`` and ``traceloop.entity.path`` for a span started in ``entity``."""
    if entity is None:
        return {}
    attrs = {}
    if entity.workflow:
        attrs["traceloop.workflow.name"] = entity.workflow
    if entity.path:
        attrs["traceloop.entity.path"] = ".".join(entity.path)
    return attrs


def metadata_value(value: Any) -> str:
    """Metadata values are strings on the wire; anything else is JSON, never a Python repr."""
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def to_attributes(options: Mapping[str, Any], metadata: Mapping[str, Any] | None) -> dict[str, str]:
    """Flatten options and metadata to span attributes; metadata keys become separate attributes so scopes merge."""
    attrs = {ATTRIBUTE_KEYS[name]: str(value) for name, value in options.items() if value is not None}
    for key, value in (metadata or {}).items():
        attrs[METADATA_PREFIX + str(key)] = metadata_value(value)
    return attrs


def add_defaults(attributes: Mapping[str, str]) -> None:
    """Process-wide attributes for every span in every thread (``Respan(...)`` and RESPAN_* variables).

    A later ``Respan(...)`` adds to and overrides what an earlier one set; it never clears it.
    """
    global _defaults
    _defaults = {**_defaults, **attributes}


def scoped_attributes(ctx: context_api.Context | None = None) -> Mapping[str, str]:
    scoped = context_api.get_value(_SCOPE_KEY, ctx)
    return scoped if isinstance(scoped, dict) else {}  # only with_scope puts a value there: a dict


def with_scope(attributes: Mapping[str, str], ctx: context_api.Context | None = None) -> context_api.Context:
    """A context whose scope is the current one with ``attributes`` merged over it."""
    merged = {**scoped_attributes(ctx), **attributes}
    return context_api.set_value(_SCOPE_KEY, merged, ctx)


def current_attributes(ctx: context_api.Context | None = None) -> dict[str, str]:
    return {**_defaults, **scoped_attributes(ctx)}


class ContextAttributesProcessor(SpanProcessor):
    """Stamps the defaults, the scope and the decorator position in force onto every span as it starts."""

    def on_start(self, span: Span, parent_context: context_api.Context | None = None) -> None:
        try:
            # an explicit parent context (say, one extracted from headers) may not carry our values
            scoped = scoped_attributes(parent_context) or scoped_attributes()
            entity = context_api.get_value(ENTITY_KEY, parent_context) or context_api.get_value(ENTITY_KEY)
            attrs = {**entity_attributes(entity if isinstance(entity, Entity) else None), **_defaults, **scoped}
            if attrs:
                span.set_attributes(attrs)
        except Exception as exc:  # noqa: BLE001
            report_once("context attributes", exc)

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class ContextScope:
    """A block (sync or async ``with``) that runs in a context of the subclass's making.

    The block may end in another ``contextvars`` context than the one it began in: a generator's steps each
    run in a fresh copy of the caller's context when a server steps it from a thread pool (Starlette's
    ``StreamingResponse``), so the token from entry cannot be reset there. Leaving then restores the context
    from before the block if this block's context is the one in force, and otherwise changes nothing; there
    is nothing to report.
    """

    def __init__(self) -> None:
        # (what attach returned, the context entered, the one before)
        self._entries: list[
            tuple[contextvars.Token[context_api.Context], context_api.Context, context_api.Context]
        ] = []

    def entered_context(self) -> context_api.Context:
        raise NotImplementedError

    def __enter__(self) -> ContextScope:
        before = context_api.get_current()
        entered = self.entered_context()
        self._entries.append((context_api.attach(entered), entered, before))
        return self

    def __exit__(self, *exc_info: object) -> None:
        token, entered, before = self._entries.pop()
        if not isinstance(token, contextvars.Token):  # another runtime context than OpenTelemetry's default
            context_api.detach(token)
            return
        try:
            token.var.reset(token)  # what detach does, without its logged traceback when the context differs
        except (ValueError, RuntimeError):  # made in another context (or already used)
            if context_api.get_current() is entered:
                context_api.attach(before)

    async def __aenter__(self) -> ContextScope:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__(*exc_info)


class propagate_attributes(ContextScope):  # noqa: N801 - used like a function, as in the seed's examples
    """Attach Respan attributes to every span started inside the block (sync or async ``with``).

    Nested scopes merge (metadata key by key); the inner value wins. The span current at entry
    gets them too, so a workflow whose body names the customer is attributed to that customer.
    """

    def __init__(
        self,
        *,
        customer_identifier: str | None = None,
        customer_email: str | None = None,
        customer_name: str | None = None,
        thread_identifier: str | None = None,
        session_identifier: str | None = None,
        trace_group_identifier: str | None = None,
        custom_identifier: str | None = None,
        environment: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        given = {
            "customer_identifier": customer_identifier,
            "customer_email": customer_email,
            "customer_name": customer_name,
            "thread_identifier": thread_identifier,
            "session_identifier": session_identifier,
            "trace_group_identifier": trace_group_identifier,
            "custom_identifier": custom_identifier,
            "environment": environment,
        }
        for name, value in given.items():
            if value is not None and not isinstance(value, str):
                warn_once(
                    f"propagate:{name}",
                    "respan_auto: propagate_attributes(%s=...) expects a str, got %s; using str() of it",
                    name,
                    type(value).__name__,
                )
        if metadata is not None and not isinstance(metadata, Mapping):
            warn_once(
                "propagate:metadata",
                "respan_auto: propagate_attributes(metadata=...) expects a dict, got %s; ignoring it",
                type(metadata).__name__,
            )
            metadata = None
        super().__init__()
        self.attributes = to_attributes(given, metadata)

    def entered_context(self) -> context_api.Context:
        try:
            span = trace.get_current_span()
            if span.is_recording():
                span.set_attributes(self.attributes)
        except Exception as exc:  # noqa: BLE001
            report_once("propagate current span", exc)
        return with_scope(self.attributes)
