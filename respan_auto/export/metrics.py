"""The GenAI client metrics' pipeline: the SDK's ``MeterProvider`` and the standard OTLP metric exporter.

Metrics go where an OTLP endpoint is configured (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``), over the protocol the ``OTEL_*`` variables name; Respan's ingest and the
local store take spans only. The instrumentors get a ``FollowingMeterProvider``: each measurement goes to the app's
own ``MeterProvider`` (the SDK's, logfire's) once the app has set one as the global provider, before or after we
started, and to ours until then, as spans follow the app's ``TracerProvider``. Ours is never the global one, so an
app can still set its own, and it does not hook the exit itself: the pipeline flushes it with the spans, at every
kind of process end. An ``OTEL_METRICS_EXPORTER`` without ``otlp`` turns ours off (the app's still gets everything).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import requests
from opentelemetry import metrics as metrics_api

from respan_auto._guard import report_once, warn_once

logger = logging.getLogger("respan_auto")


class _CertificateFirst(requests.Session):
    """The HTTP metric exporter's session: ``OTEL_EXPORTER_OTLP_[METRICS_]CERTIFICATE`` wins over
    ``REQUESTS_CA_BUNDLE``. Recent exporters set the certificate on the session and pass none per request, and
    requests then prefers the variable; older ones pass it per request, which this leaves alone."""

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("verify") in (None, True) and isinstance(self.verify, str):
            kwargs["verify"] = self.verify
        return super().request(method, url, *args, **kwargs)


def _first(environ: Mapping[str, str], *names: str) -> str:
    return next((environ[name] for name in names if environ.get(name)), "")


def wanted(environ: Mapping[str, str]) -> bool:
    if not _first(environ, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    exporters = {e.strip().lower() for e in environ.get("OTEL_METRICS_EXPORTER", "otlp").split(",")}
    return "otlp" in exporters  # "none", or only exporters of other kinds (console, prometheus): not ours to build


def _exporter(environ: Mapping[str, str]) -> Any:
    protocol = _first(environ, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL").strip().lower()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter
        except ImportError:
            warn_once(  # the same line as the spans' (destinations.py), said once for both
                "grpc-missing",
                "respan_auto: OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the gRPC exporter: pip install "
                "'respan-auto[grpc]'. Until then neither spans nor metrics are sent to the OTLP endpoint",
            )
            return None
        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(session=_CertificateFirst())


def build(environ: Mapping[str, str], resource: Any) -> Any:
    """Our ``MeterProvider`` (exporting to the OTLP endpoint), or None: no endpoint, or metrics turned off."""
    if not wanted(environ):
        return None
    exporter = _exporter(environ)
    if exporter is None:
        return None
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    reader = PeriodicExportingMetricReader(exporter)  # OTEL_METRIC_EXPORT_INTERVAL / _TIMEOUT
    return MeterProvider(metric_readers=[reader], resource=resource, shutdown_on_exit=False)


def _apps() -> Any:
    """The provider the app set as the global one (the SDK's, logfire's, any), else None: the API's own default
    (a proxy until one is set) and its no-op do not count."""
    provider = metrics_api.get_meter_provider()
    return None if type(provider).__module__.startswith("opentelemetry.metrics") else provider


class _FollowingInstrument:
    """One synchronous instrument, made in the current target provider's meter (once per target) at each use."""

    def __init__(self, owner: FollowingMeterProvider, meter: tuple[tuple, dict], make: str, args: tuple, kwargs: dict):
        self._owner, self._meter, self._make, self._args, self._kwargs = owner, meter, make, args, kwargs
        self._pair: tuple[Any, Any] | None = None  # (target, its instrument): one attribute, swapped whole

    def _instrument(self) -> Any:
        target = self._owner.target()
        pair = self._pair
        if pair is None or pair[0] is not target:
            meter = target.get_meter(*self._meter[0], **self._meter[1])
            pair = self._pair = (target, getattr(meter, self._make)(*self._args, **self._kwargs))
        return pair[1]

    def _use(self, method: str, *args: Any, **kwargs: Any) -> None:
        try:
            getattr(self._instrument(), method)(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a measurement must never break the call it measures
            report_once("metric record", exc)

    def record(self, *args: Any, **kwargs: Any) -> None:
        self._use("record", *args, **kwargs)

    def add(self, *args: Any, **kwargs: Any) -> None:
        self._use("add", *args, **kwargs)

    def set(self, *args: Any, **kwargs: Any) -> None:
        self._use("set", *args, **kwargs)


class _FollowingMeter:
    """Makes following instruments; observable ones (asynchronous, with callbacks) are made once, in the target of
    the moment."""

    def __init__(self, owner: FollowingMeterProvider, args: tuple, kwargs: dict) -> None:
        self._owner, self._args, self._kwargs = owner, args, kwargs

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("create_"):
            raise AttributeError(name)
        if name.startswith("create_observable_"):
            return getattr(self._owner.target().get_meter(*self._args, **self._kwargs), name)

        def create(*args: Any, **kwargs: Any) -> _FollowingInstrument:
            return _FollowingInstrument(self._owner, (self._args, self._kwargs), name, args, kwargs)

        return create


class FollowingMeterProvider(metrics_api.MeterProvider):
    """What the instrumentors get: the app's global SDK provider when it has one, else ours."""

    def __init__(self, ours: Any) -> None:
        self.ours = ours

    def target(self) -> Any:
        return _apps() or self.ours

    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        return _FollowingMeter(self, args, kwargs)
