"""Where each mistralai generation keeps its API classes, found without importing mistralai.

1.x: ``mistralai.chat``, ``mistralai.fim``, ...; 2.x and 3.x: ``mistralai.client.chat``, ... (the module of each
family is in ``families.py``); the cloud clients keep the same modules under their own roots. Each generation's own
tracing hook lives in ``<root>._hooks.tracing``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from types import ModuleType

from respan_auto._guard import warn_once

# (root package, the SDK's tracing-hook module): each generation's own client, then its Azure and Google Cloud ones
# (``MistralAzure``, ``MistralGoogleCloud``/``MistralGCP``), top-level packages on 1.x and under ``mistralai`` later
ROOTS = tuple(
    (root, f"{root}._hooks.tracing")
    for root in (
        "mistralai",
        "mistralai.client",
        "mistralai_azure",
        "mistralai_gcp",
        "mistralai.azure.client",
        "mistralai.gcp.client",
    )
)
SDK_TRACER_FUNCTION = "get_or_create_otel_tracer"


def _installed_version() -> str:
    try:
        from importlib.metadata import version

        return version("mistralai")
    except Exception:  # noqa: BLE001 - only used in a message
        return "(unknown version)"


def _has_known_layout(module: ModuleType) -> bool:
    """Whether an imported root package holds a chat module where some generation keeps it."""
    paths: Iterable[str] = getattr(module, "__path__", ())
    for path in paths:
        if os.path.exists(os.path.join(path, "chat.py")) or os.path.exists(os.path.join(path, "client", "chat.py")):
            return True
    return False


def check_layout(module: ModuleType) -> None:
    """Post-import hook for a root package: say once if the chat module is not where we look."""
    if getattr(module, "__path__", None) is None:
        return  # a plain module of that name (1.x ships a legacy ``mistralai.client`` module)
    if not _has_known_layout(module):
        warn_once(
            "mistralai-layout",
            "respan_auto: mistralai %s has a layout respan_auto does not know; Mistral calls will not be traced",
            _installed_version(),
        )


def family_class(module: ModuleType, name: str) -> type | None:
    """The family's class in its module, or None (said once) when this SDK release does not have it there."""
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        warn_once(
            f"class:{module.__name__}.{name}",
            "respan_auto: %s has no %s class in mistralai %s; those Mistral calls will not be traced",
            module.__name__,
            name,
            _installed_version(),
        )
        return None
    return cls


def when_imported(module_name: str, hook: Callable[[ModuleType], None]) -> None:
    """Run ``hook`` now if the module is loaded, else right after it is imported."""
    import wrapt

    wrapt.register_post_import_hook(hook, module_name)
