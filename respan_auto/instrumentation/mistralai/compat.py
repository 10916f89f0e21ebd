"""Where each mistralai generation keeps its chat class, found without importing mistralai.

1.x: ``mistralai.chat``; 2.x and 3.x: ``mistralai.client.chat``. Each generation's own
tracing hook lives in ``<root>._hooks.tracing``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from types import ModuleType

from respan_auto._guard import warn_once

# (root package, chat module, the SDK's tracing-hook module)
LAYOUTS = (
    ("mistralai", "mistralai.chat", "mistralai._hooks.tracing"),
    ("mistralai.client", "mistralai.client.chat", "mistralai.client._hooks.tracing"),
)
CHAT_CLASS = "Chat"
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


def chat_class(module: ModuleType) -> type | None:
    cls = getattr(module, CHAT_CLASS, None)
    if not isinstance(cls, type):
        warn_once(
            f"chat-class:{module.__name__}",
            "respan_auto: %s has no Chat class in mistralai %s; Mistral calls will not be traced",
            module.__name__,
            _installed_version(),
        )
        return None
    return cls


def when_imported(module_name: str, hook: Callable[[ModuleType], None]) -> None:
    """Run ``hook`` now if the module is loaded, else right after it is imported."""
    import wrapt

    wrapt.register_post_import_hook(hook, module_name)
