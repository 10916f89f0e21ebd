"""Settings read from the environment, with one clear message per malformed value."""

from __future__ import annotations

import os
from collections.abc import Mapping

from respan_auto._guard import warn_once

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT also takes the newer enum values.
_GENAI_CONTENT_ON = frozenset({"span_only", "event_only", "span_and_event"})
_GENAI_CONTENT_OFF = frozenset({"no_content"})


def env_bool(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    """Read a boolean variable; an unreadable value keeps the default and is reported once."""
    env = os.environ if environ is None else environ
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    warn_once(
        f"env:{name}",
        "respan_auto: ignoring %s=%r: expected true or false; using %s",
        name,
        raw,
        "true" if default else "false",
    )
    return default


def capture_content(environ: Mapping[str, str] | None = None) -> bool:
    """Whether prompts, completions, tool arguments and chunk text may be recorded.

    Content is captured unless ``RESPAN_TRACE_CONTENT`` or
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` turns it off; either one saying
    "off" wins, so a user who disables content in one place is never overridden by the other.
    """
    env = os.environ if environ is None else environ
    if not env_bool("RESPAN_TRACE_CONTENT", True, env):
        return False
    raw = env.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").strip().lower()
    if raw in _GENAI_CONTENT_OFF:
        return False
    if raw in _GENAI_CONTENT_ON:
        return True
    return env_bool("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", True, env)
