"""Respan attributes that apply to every span: process defaults and ``propagate_attributes`` scopes.

Scoped values live in the OpenTelemetry context, so they follow the context wherever it goes
(asyncio tasks, threads under the threading instrumentation). A span processor copies them
onto each span as it starts, whoever started it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as context_api
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from respan_auto._guard import report_once

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
_defaults: dict[str, str] = {}


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
    return context_api.get_value(_SCOPE_KEY, ctx) or {}


def with_scope(attributes: Mapping[str, str], ctx: context_api.Context | None = None) -> context_api.Context:
    """A context whose scope is the current one with ``attributes`` merged over it."""
    merged = {**scoped_attributes(ctx), **attributes}
    return context_api.set_value(_SCOPE_KEY, merged, ctx)


def current_attributes(ctx: context_api.Context | None = None) -> dict[str, str]:
    return {**_defaults, **scoped_attributes(ctx)}


class ContextAttributesProcessor(SpanProcessor):
    """Stamps the defaults and the scope in force onto every span as it starts."""

    def on_start(self, span: Span, parent_context: context_api.Context | None = None) -> None:
        try:
            # an explicit parent context (say, one extracted from headers) may not carry our scope
            scoped = scoped_attributes(parent_context) or scoped_attributes()
            if _defaults or scoped:
                span.set_attributes({**_defaults, **scoped})
        except Exception as exc:  # noqa: BLE001
            report_once("context attributes", exc)

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
