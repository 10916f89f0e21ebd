"""What every span goes through before it leaves the process: redaction, then truncation.

Runs on the export thread, never on the app's. A span is copied only when something in it
changes; the copy lists what was cut in ``respan.truncated``.
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
# literal pieces at least one of which every built-in match contains: a cheap test before the regex
BUILTIN_ANCHORS = ("earer", "EARER", "sk-", "rk-", "pk-", "AKIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xox")


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
        self.patterns = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
        self.hook = hook

    def __call__(self, text: str) -> str:
        # Runs on every string of every span: the regexes only run where a cheap substring test says they might match.
        if len(text) >= 8:
            for secret in self.secrets:
                if secret in text:
                    text = text.replace(secret, REDACTED)
            if self.builtin is not None and any(anchor in text for anchor in BUILTIN_ANCHORS):
                text = self.builtin.sub(REDACTED, text)
            if self.patterns is not None:
                text = self.patterns.sub(REDACTED, text)
        if self.hook is not None:
            try:
                result = self.hook(text)
                text = result if isinstance(result, str) else text
            except Exception as exc:  # noqa: BLE001 - a broken hook must not stop export; the text stays redacted above
                report_once("redaction hook", exc)
        return text

    def might_change(self, text: str) -> bool:
        """Whether redaction could change ``text``: one cheap scan, used on a whole span's strings at once."""
        if self.patterns is not None or self.hook is not None:
            return True
        if any(secret in text for secret in self.secrets):
            return True
        return self.builtin is not None and any(anchor in text for anchor in BUILTIN_ANCHORS)


class SpanPreparer:
    def __init__(self, redactor: Redactor | None, max_length: int) -> None:
        self.redactor = redactor
        self.max_length = max_length

    def _value(self, key: str, value: Any, cut: list[str]) -> Any:
        if isinstance(value, str):
            new = self.redactor(value) if self.redactor is not None else value
            if len(new) > self.max_length:
                cut.append(key)
                new = new[: self.max_length] + "…[truncated]"
            return new
        if isinstance(value, tuple) and value and isinstance(value[0], str):
            return tuple(self._value(key, v, cut) for v in value)
        return value

    def _attributes(self, attributes: Any, cut: list[str]) -> tuple[Any, bool]:
        """The attributes with values redacted and cut; the very same mapping when nothing changed."""
        out = None
        for key, value in (attributes or {}).items():
            new = self._value(key, value, cut)
            if new is not value and new != value:
                if out is None:
                    out = dict(attributes)
                out[key] = new
        return (attributes, False) if out is None else (out, True)

    def _needs_work(self, span: ReadableSpan) -> bool:
        strings: list[str] = []
        for mapping in (span.attributes, *(event.attributes for event in span.events)):
            for value in (mapping or {}).values():
                if type(value) is str:
                    strings.append(value)
                elif type(value) is tuple:
                    strings += [v for v in value if type(v) is str]
        if any(len(text) > self.max_length for text in strings):
            return True
        return self.redactor is not None and self.redactor.might_change("\x00".join(strings))

    def __call__(self, span: ReadableSpan) -> ReadableSpan:
        try:
            if not self._needs_work(span):
                return span  # the common case: nothing to redact or cut, no copy
            cut: list[str] = []
            attributes, changed = self._attributes(span.attributes, cut)
            events = []
            for event in span.events:
                event_attributes, event_changed = self._attributes(event.attributes, cut)
                changed = changed or event_changed
                events.append(Event(event.name, event_attributes, event.timestamp) if event_changed else event)
            if not changed:
                return span
            if cut:
                attributes = {**attributes, TRUNCATED_ATTRIBUTE: tuple(dict.fromkeys(cut))}
            return ReadableSpan(
                name=span.name,
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
        except Exception as exc:  # noqa: BLE001 - an unpreparable span is dropped rather than sent raw
            report_once("span preparation", exc)
            return None  # type: ignore[return-value]
