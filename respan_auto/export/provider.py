"""Which tracer provider our spans go through: the app's own when it has one, else ours."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, SpanProcessor, TracerProvider


def span_limits() -> SpanLimits:
    """The SDK's limits minus its silent attribute truncation: ours marks what it cuts."""
    return SpanLimits(max_attribute_length=SpanLimits.UNSET, max_span_attribute_length=SpanLimits.UNSET)


@dataclass
class ProviderHandle:
    """``provider`` is what instrumentors are given; ``joined`` says whether it is the app's own."""

    provider: Any
    joined: bool


def install(processors: Sequence[SpanProcessor], resource: Resource) -> ProviderHandle:
    """Add ``processors`` to the app's SDK provider, or set up ours (global) with them."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        for processor in processors:
            current.add_span_processor(processor)
        return ProviderHandle(current, joined=True)
    provider = TracerProvider(resource=resource, shutdown_on_exit=False, span_limits=span_limits())
    for processor in processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return ProviderHandle(provider, joined=False)
