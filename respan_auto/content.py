"""The content switch: one owner, read at call time, so every way of turning content off takes effect at once.

Content (prompts, completions, tool arguments, decorator inputs and outputs) is recorded unless something says
no. The sources, each "off" winning over any "on":

* ``Respan(trace_content=...)``: the latest call that passed it;
* ``RESPAN_TRACE_CONTENT`` (the launcher's ``--no-content`` sets it);
* ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` (``false`` or ``no_content`` mean off);
* for one instrumentor, ``instrument(capture_content=...)``.

The environment is read on every call, cached on its raw values, so a variable changed at run time counts too.
"""

from __future__ import annotations

import os
import traceback
from typing import Any

from respan_auto import config

_ENV = ("RESPAN_TRACE_CONTENT", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")

_code: bool | None = None  # Respan(trace_content=...)
_env_seen: tuple[str | None, str | None] | None = None
_env_allows = True


def set_from_code(value: bool | None) -> None:
    """What ``Respan(trace_content=...)`` said; None leaves the previous word standing."""
    global _code
    if value is not None:
        _code = bool(value)


def reset() -> None:
    """Forget what code said (tests; ``Respan`` never unsays)."""
    global _code
    _code = None


def _environment_allows() -> bool:
    global _env_seen, _env_allows
    environ = os.environ
    seen = (environ.get(_ENV[0]), environ.get(_ENV[1]))
    if seen != _env_seen:
        _env_allows = config.capture_content({k: v for k, v in zip(_ENV, seen, strict=True) if v is not None})
        _env_seen = seen
    return _env_allows


def enabled(pinned: bool | None = None) -> bool:
    """Whether content may be recorded now; ``pinned`` is one instrumentor's own ``capture_content``."""
    if _code is False or pinned is False:
        return False
    return _environment_allows()


def record_exception(span: Any, error: BaseException, capture: bool) -> None:
    """The exception event; with content off, its message is left out of both the message and the stacktrace
    (SDK and app errors can quote prompts, responses or request bodies)."""
    if capture:
        span.record_exception(error, escaped=True)
        return
    frames = "".join(traceback.format_tb(error.__traceback__)) if error.__traceback__ is not None else ""
    hidden = "(not recorded: content capture is off)"
    stack = f"Traceback (most recent call last):\n{frames}{type(error).__qualname__}: {hidden}"
    span.record_exception(error, {"exception.message": hidden, "exception.stacktrace": stack}, escaped=True)
