"""OTLP/HTTP (protobuf, gzip) to Respan or any OTLP endpoint, with one clear line per kind of failure.

Writes the standard OTLP protobuf (``encoding.py``) and uses the stdlib HTTP client, so that failures are
reported once in plain words (a rejected key, an unreachable endpoint) instead of a log line
or a stack trace per batch; so that each request is bounded by a timeout; and so that the
batch processor learns whether a failure is worth retrying (connection errors, 429, 5xx,
with the server's ``Retry-After``) or not (400, 401).
"""

from __future__ import annotations

import email.utils
import gzip
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from respan_auto.export.encoding import encode_request

logger = logging.getLogger("respan_auto")


def parse_headers(raw: str | None) -> dict[str, str]:
    """``OTEL_EXPORTER_OTLP_HEADERS`` syntax: comma-separated ``key=value``, values URL-encoded."""
    headers: dict[str, str] = {}
    for item in (raw or "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            headers[key.strip().lower()] = unquote(value.strip())
    return headers


def otlp_target(environ: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """Endpoint and headers from the standard OTEL_EXPORTER_OTLP_* variables."""
    url = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if not url:
        url = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").rstrip("/") + "/v1/traces"
    headers = parse_headers(environ.get("OTEL_EXPORTER_OTLP_HEADERS"))
    headers.update(parse_headers(environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS")))
    return url, headers


@dataclass(frozen=True)
class Outcome:
    """What became of a send: delivered, worth retrying (maybe after a delay), or hopeless."""

    ok: bool
    retry: bool = False
    retry_after: float | None = None


DELIVERED = Outcome(ok=True)
HOPELESS = Outcome(ok=False)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class OtlpHttpExporter(SpanExporter):
    def __init__(
        self, url: str, headers: Mapping[str, str], timeout: float = 10.0, max_request_bytes: int = 4_000_000
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.max_request_bytes = max_request_bytes
        self._headers = {
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "gzip",
            "User-Agent": "respan-auto",
            **headers,
        }
        self._reported: set[str] = set()
        self._failing = False
        self.oversized = 0  # single spans too large to send even alone

    def _say_once(self, kind: str, message: str, *args: object) -> None:
        if kind not in self._reported:
            self._reported.add(kind)
            logger.warning(message, *args)

    def encode(self, spans: Sequence[ReadableSpan]) -> list[bytes]:
        """gzip request bodies, the batch split in halves until each stays under ``max_request_bytes``."""
        raw = encode_request(spans)
        if len(raw) <= self.max_request_bytes:
            return [gzip.compress(raw, compresslevel=1)]  # level 1: most of the saving at a third of the cost
        if len(spans) == 1:
            self.oversized += 1
            return []
        middle = len(spans) // 2
        return self.encode(spans[:middle]) + self.encode(spans[middle:])

    def post(self, body: bytes) -> Outcome:
        """Send one encoded request and classify the answer."""
        request = urllib.request.Request(self.url, data=body, headers=self._headers, method="POST")
        retry_after = None
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
            retry_after = _retry_after(error.headers.get("Retry-After") if error.headers else None)
        except (OSError, ValueError) as error:  # refused, DNS, TLS, timeout
            self._failing = True
            self._say_once(
                "unreachable",
                "respan_auto: cannot reach %s (%s); spans are kept and retried, not yet delivered",
                self.url,
                type(getattr(error, "reason", error)).__name__,
            )
            return Outcome(ok=False, retry=True)
        if 200 <= status < 300:
            if self._failing:
                self._failing = False
                logger.info("respan_auto: export to %s works again", self.url)
            return DELIVERED
        self._failing = True
        if status in (401, 403):
            self._say_once(
                "auth",
                "respan_auto: %s rejected the API key (HTTP %s); check RESPAN_API_KEY. Spans are not being delivered",
                self.url,
                status,
            )
            return HOPELESS
        if status == 429 or status >= 500:
            self._say_once(
                f"http-{status}", "respan_auto: %s answered HTTP %s; spans are kept and retried", self.url, status
            )
            return Outcome(ok=False, retry=True, retry_after=retry_after)
        self._say_once(f"http-{status}", "respan_auto: %s refused a span export (HTTP %s)", self.url, status)
        return HOPELESS

    def send(self, spans: Sequence[ReadableSpan]) -> Outcome:
        outcome = DELIVERED
        for body in self.encode(spans):
            outcome = self.post(body)
            if not outcome.ok:
                return outcome
        return outcome

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS if self.send(spans).ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
