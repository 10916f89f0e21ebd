"""What the launcher's sitecustomize runs at interpreter start: as little as possible.

Nothing heavy is imported until the app imports mistralai (or our decorators): then the pipeline
is built and every installed instrumentor activated, as ``Respan(is_auto_instrument=True)`` would.
"""

from __future__ import annotations

import os
import sys

TRIGGER_PACKAGES = frozenset({"mistralai"})
TRIGGER_MODULES = frozenset({"respan_auto.decorators"})
_activated = False


def activate() -> None:
    """Set up tracing as ``Respan(is_auto_instrument=True)`` does; never raises into the app."""
    global _activated
    if _activated:
        return
    _activated = True
    try:
        from respan_auto.sdk import Respan

        Respan(is_auto_instrument=True)
    except Exception as exc:  # noqa: BLE001
        sys.stderr.write(
            f"respan_auto: tracing could not start ({type(exc).__name__}: {exc}); the program runs untraced\n"
        )


class _ActivateOnImport:
    """A meta-path finder that only watches: the first import of a trigger activates tracing."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if not _activated and (fullname in TRIGGER_MODULES or fullname.partition(".")[0] in TRIGGER_PACKAGES):
            activate()
        return None


def start() -> None:
    if os.environ.get("RESPAN_ENABLED", "").strip().lower() in ("0", "false", "no", "off"):
        return
    if any(name in sys.modules for name in (*TRIGGER_PACKAGES, *TRIGGER_MODULES)):
        activate()
        return
    sys.meta_path.insert(0, _ActivateOnImport())
