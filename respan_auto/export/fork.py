"""After ``fork`` a child starts its export state afresh: what the parent queued is the parent's to send."""

from __future__ import annotations

import os
import weakref
from typing import Any


def reset_in_child(owner: Any, reset: str) -> None:
    """Call ``owner.<reset>()`` in every child forked while ``owner`` lives."""
    if not hasattr(os, "register_at_fork"):
        return
    ref = weakref.ref(owner)

    def after_in_child() -> None:
        alive = ref()
        if alive is not None:
            getattr(alive, reset)()

    os.register_at_fork(after_in_child=after_in_child)
