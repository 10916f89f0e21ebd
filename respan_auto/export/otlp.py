"""OTLP/HTTP (protobuf, gzip) to Respan or any OTLP endpoint, with one clear line per kind of failure.

Uses the standard OTLP protobuf encoding and the stdlib HTTP client, so that failures are
reported once in plain words (a rejected key, an unreachable endpoint) instead of a log line
or a stack trace per batch, and so that no request outlives its timeout.
"""

from __future__ import annotations

import gzip
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from urllib.parse import unquote

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

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


class OtlpHttpExporter(SpanExporter):
    def __init__(self, url: str, headers: Mapping[str, str], timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self._headers = {
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "gzip",
            "User-Agent": "respan-auto",
            **headers,
        }
        self._reported: set[str] = set()
        self._failing = False

    def _say_once(self, kind: str, message: str, *args: object) -> None:
        if kind not in self._reported:
            self._reported.add(kind)
            logger.warning(message, *args)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        body = gzip.compress(encode_spans(spans).SerializeToString(), compresslevel=5)
        request = urllib.request.Request(self.url, data=body, headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        except (OSError, ValueError) as error:  # refused, DNS, TLS, timeout
            self._failing = True
            self._say_once(
                "unreachable",
                "respan_auto: cannot reach %s (%s); spans are not being delivered",
                self.url,
                type(getattr(error, "reason", error)).__name__,
            )
            return SpanExportResult.FAILURE
        if 200 <= status < 300:
            if self._failing:
                self._failing = False
                logger.info("respan_auto: export to %s works again", self.url)
            return SpanExportResult.SUCCESS
        self._failing = True
        if status in (401, 403):
            self._say_once(
                "auth",
                "respan_auto: %s rejected the API key (HTTP %s); check RESPAN_API_KEY. Spans are not being delivered",
                self.url,
                status,
            )
        else:
            self._say_once(f"http-{status}", "respan_auto: %s answered HTTP %s to a span export", self.url, status)
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
