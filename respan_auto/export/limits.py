"""What every span goes through before it leaves the process.

Two steps: the ``Trimmer`` cuts and sizes a span when it ends (so queues are bounded in bytes),
and the ``Cleaner`` redacts and repairs its text on the export thread, before the standard encoder
sees it. A span is copied only when something in it changes; a cut span lists what was cut in
``respan.truncated``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan

from respan_auto._guard import report_once

TRUNCATED_ATTRIBUTE = "respan.truncated"
REDACTED = "[REDACTED]"

# Key-like tokens: bearer credentials, provider-style secret keys, cloud and chat-app tokens.
BUILTIN_PATTERNS = (
    r"\b(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}",
    r"\b(?:sk|rk|pk)-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_-]{16,}",
    r"\bAKIA[0-9A-Z]{16}\b",
    r"\bgh[pousr]_[A-Za-z0-9]{30,}\b",
    r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b",
)
# Literal pieces, lower case, at least one of which every built-in match contains once lower-cased (the bearer
# pattern ignores case): a cheap test on the lower-cased text before the regex. Each is one scan of the text.
BUILTIN_ANCHORS = ("earer", "k-", "akia", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xox")


def _may_hold_builtin(text: str) -> bool:
    lowered = text.lower()
    return any(anchor in lowered for anchor in BUILTIN_ANCHORS)


def _each_compiled(patterns: Sequence[str]) -> tuple[re.Pattern[str], ...]:
    """The user's regexes, each compiled on its own.

    Joined into one, a pattern's inline flags (``(?i)``) would no longer be at the start, its group
    numbers would shift, and a verbose pattern's comment could swallow the join. The settings have
    reported (and left out) any that does not compile alone; one that still fails here is skipped.
    """
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except Exception as exc:  # noqa: BLE001 - a bad pattern costs only itself, never the app or the export
            report_once("redaction pattern", exc)
    return tuple(compiled)


class Redactor:
    """Removes secrets from text: the process's own keys verbatim, then patterns, then the user's hook."""

    def __init__(
        self,
        secrets: Iterable[str | None] = (),
        patterns: Sequence[str] = (),
        builtin: bool = True,
        hook: Callable[[str], str] | None = None,
    ) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True)
        self.builtin = re.compile("|".join(f"(?:{p})" for p in BUILTIN_PATTERNS)) if builtin else None
        self.patterns = _each_compiled(patterns)
        self.hook = hook

    def __call__(self, text: str) -> str:
        # Runs on every string of every span: the regexes only run where a cheap substring test says they might match.
        if len(text) >= 8:
            for secret in self.secrets:
                if secret in text:
                    text = text.replace(secret, REDACTED)
            if self.builtin is not None and _may_hold_builtin(text):
                text = self.builtin.sub(REDACTED, text)
            for pattern in self.patterns:
                text = pattern.sub(REDACTED, text)
        if self.hook is not None:
            try:
                result = self.hook(text)
                text = result if isinstance(result, str) else text
            except Exception as exc:  # noqa: BLE001 - a broken hook must not stop export; the text stays redacted above
                report_once("redaction hook", exc)
        return text

    def might_change(self, text: str) -> bool:
        """Whether redaction could change ``text``: one cheap scan, used on a whole span's strings at once."""
        if self.patterns or self.hook is not None:
            return True
        if any(secret in text for secret in self.secrets):
            return True
        return self.builtin is not None and _may_hold_builtin(text)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: protobuf would refuse the whole request
        return False
    return True


def _repair(text: str) -> str:
    return text if text.isascii() or _encodable(text) else text.encode("utf-8", "replace").decode("utf-8")


def _strings(span: ReadableSpan) -> list[str]:
    found = [span.name]
    for mapping in (span.attributes, *(event.attributes for event in span.events)):
        if not mapping:
            continue
        copy = getattr(mapping, "copy", None)  # at C speed, as in ``_estimate``
        for value in (copy() if copy is not None else mapping).values():
            if type(value) is str:
                found.append(value)
            elif type(value) is tuple:
                found += [v for v in value if type(v) is str]
    return found


def _value_size(value: Any) -> int:
    """An upper bound of the value's encoded size: UTF-8 takes at most 4 bytes a character."""
    if type(value) is str:
        return len(value) if value.isascii() else 4 * len(value)
    if isinstance(value, (tuple, list)):
        return sum(_value_size(v) + 4 for v in value)
    return 12


def _exact_size(value: Any) -> int:
    if type(value) is str:
        return len(value.encode("utf-8", "replace"))
    if isinstance(value, (tuple, list)):
        return sum(_exact_size(v) + 4 for v in value)
    return 12


SPAN_OVERHEAD = 160  # ids, times, kind, status, scope: what a span costs with no attributes


def _estimate(mapping: Any) -> int:
    """``span_size``'s estimate of one mapping, at C speed: it runs on the app's thread.

    ``str`` of every value is never shorter than its encoding's payload (an int's digits against its
    varint, a tuple's repr against its elements), so joining them gives an upper bound in one step.
    """
    copy = getattr(mapping, "copy", None)  # the SDK's attributes copy to a dict at C speed; items() is Python-level
    attributes = copy() if copy is not None else dict(mapping)
    text = "".join(attributes) + "".join(map(str, attributes.values()))
    return (len(text) if text.isascii() else 4 * len(text)) + 16 * len(attributes)


def _measured(mapping: Any, measure: Callable[[Any], int]) -> int:
    return sum(measure(key) + measure(value) + 8 for key, value in mapping.items())


def span_size(span: ReadableSpan, exact: bool = False) -> int:
    """About how many bytes the span takes encoded (never less): for the byte bounds and request splitting.

    The estimate counts 4 bytes for each character of non-ASCII text; ``exact`` encodes it instead.
    """
    measure = _exact_size if exact else _value_size
    size = SPAN_OVERHEAD + measure(span.name) + measure(span.status.description or "")
    links = span.links or ()
    for mapping in (span.attributes, *(e.attributes for e in span.events), *(link.attributes for link in links)):
        if mapping:
            size += _measured(mapping, measure) if exact else _estimate(mapping)
    size += sum(measure(e.name) + 24 for e in span.events)
    return size + 64 * len(links)


def _rebuild(span: ReadableSpan, attributes: Any, events: Sequence[Event], name: str | None = None) -> ReadableSpan:
    return ReadableSpan(
        name=span.name if name is None else name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _map_values(span: ReadableSpan, change: Callable[[str, str], str]) -> tuple[ReadableSpan, bool]:
    """The span with ``change(key, text)`` applied to every string; the same object when nothing changed."""

    def mapped(attributes: Any) -> tuple[Any, bool]:
        out = None
        for key, value in (attributes or {}).items():
            if type(value) is str:
                new: Any = change(key, value)
            elif type(value) is tuple and any(type(v) is str for v in value):
                new = tuple(change(key, v) if type(v) is str else v for v in value)
            else:
                continue
            if new != value:
                if out is None:
                    out = dict(attributes)
                out[key] = new
        return (attributes, False) if out is None else (out, True)

    attributes, changed = mapped(span.attributes)
    events = []
    for event in span.events:
        event_attributes, event_changed = mapped(event.attributes)
        changed = changed or event_changed
        events.append(Event(event.name, event_attributes, event.timestamp) if event_changed else event)
    name = change("", span.name)
    if not changed and name == span.name:
        return span, False
    return _rebuild(span, attributes, events, name), True


class Trimmer:
    """At span end, on the app's thread: cut long values (marked) and size the span, cheaply.

    Cutting here, not at export, keeps every queue bounded in bytes whatever the app records.
    """

    def __init__(self, max_length: int, max_span_bytes: int) -> None:
        self.max_length = max_length
        self.max_span_bytes = max_span_bytes

    def _cut(self, span: ReadableSpan) -> ReadableSpan:
        cut: list[str] = []

        def change(key: str, text: str) -> str:
            if not key or len(text) <= self.max_length:
                return text  # the span's name (no key) is never cut
            cut.append(key)
            return text[: self.max_length] + "…[truncated]"

        trimmed, _ = _map_values(span, change)
        attributes = {**(trimmed.attributes or {}), TRUNCATED_ATTRIBUTE: tuple(dict.fromkeys(cut))}
        return _rebuild(trimmed, attributes, trimmed.events)

    def __call__(self, span: ReadableSpan) -> tuple[ReadableSpan | None, int]:
        """The span to queue (the same object unless cut) and its size; None when it cannot fit a request."""
        size = span_size(span)
        if size > self.max_length and any(len(text) > self.max_length for text in _strings(span)):
            span = self._cut(span)
            size = span_size(span)
        if size > self.max_span_bytes:
            size = span_size(span, exact=True)
            if size > self.max_span_bytes:
                return None, size
        return span, size


class Cleaner:
    """Before encoding, on the export thread: redaction, and repair of text protobuf cannot encode."""

    def __init__(self, redactor: Redactor | None) -> None:
        self.redactor = redactor

    def _needs_work(self, span: ReadableSpan) -> bool:
        strings = _strings(span)
        joined = "\x00".join(strings)
        if self.redactor is not None and self.redactor.might_change(joined):
            return True
        return not joined.isascii() and not all(text.isascii() or _encodable(text) for text in strings)

    def _clean(self, key: str, text: str) -> str:
        text = _repair(text)
        return self.redactor(text) if self.redactor is not None and key else text

    def __call__(self, span: ReadableSpan) -> ReadableSpan:
        if not self._needs_work(span):
            return span  # the common case: nothing to redact or repair, no copy
        return _map_values(span, self._clean)[0]
