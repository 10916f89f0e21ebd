"""respan-auto: zero-code OpenTelemetry tracing for the Mistral AI Python SDK.

The public names load on first use, so ``import respan_auto`` (which the launcher's bootstrap
does at interpreter start) costs next to nothing.
"""

from __future__ import annotations

import importlib

from respan_auto.version import __version__

_PUBLIC = {
    "Respan": "respan_auto.sdk",
    "workflow": "respan_auto.decorators",
    "task": "respan_auto.decorators",
    "agent": "respan_auto.decorators",
    "tool": "respan_auto.decorators",
    "propagate_attributes": "respan_auto.context",
    "gateway_params": "respan_auto.gateway",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> object:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'respan_auto' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
