"""One pipeline per process: the destinations, the provider they hang on, and the bounded exit.

At exit (or SIGTERM, or a multiprocessing child's end: ``process_end.py``) every destination
gets what is left of ``RESPAN_EXIT_TIMEOUT``: its batch processor encodes what is queued, its
sender delivers what it can, and what is still undelivered is spooled (with ``RESPAN_SPOOL_DIR``)
or reported. The report is one line per fact, counted by cause, with the time really waited.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.resources import Resource

from respan_auto._guard import report_once
from respan_auto.config import Settings
from respan_auto.context import ContextAttributesProcessor
from respan_auto.export import destinations, metrics, process_end, provider
from respan_auto.export.destinations import Destination
from respan_auto.export.limits import Redactor
from respan_auto.export.sender import Leftovers, Outcome, Payload
from respan_auto.export.spool import Spool

logger = logging.getLogger("respan_auto")


def make_redactor(
    settings: Settings, environ: Mapping[str, str], redact: Callable[[str], str] | None = None
) -> Redactor:
    secrets = (settings.api_key, environ.get("RESPAN_API_KEY"), environ.get("MISTRAL_API_KEY"))
    return Redactor(secrets, settings.redact_patterns, builtin=settings.redact_keys, hook=redact)


def _plural(count: int, word: str = "span") -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _was(count: int) -> str:
    return "was" if count == 1 else "were"


def _counted(*causes: tuple[int, str], separator: str = ", ") -> str:
    """``3 refused by the endpoint (HTTP 401); 1 larger than ...``: each cause with its count, none with 0."""
    return separator.join(f"{count} {cause}" for count, cause in causes if count)


def spool_for(settings: Settings, destination: Destination) -> Spool | None:
    if not settings.spool_dir or destination.transport is None:
        return None
    return Spool(settings.spool_dir, destination.tag, settings.spool_max_bytes)


def spool_sender(destination: Destination) -> Callable[[bytes, int], Outcome]:
    """Send one spooled request straight through the destination's transport, untraced."""
    transport = destination.transport
    assert transport is not None

    def send(raw: bytes, spans: int) -> Outcome:
        with suppress_instrumentation():
            return transport.send(transport.from_raw(raw, spans))

    return send


METRICS_EXIT_FLOOR = 0.5  # seconds


def _meter_provider(environ: Mapping[str, str], resource: Resource) -> Any:
    try:
        ours = metrics.build(environ, resource)
    except Exception as exc:  # noqa: BLE001 - spans still go out
        report_once("metrics pipeline", exc)
        return None
    return None if ours is None else metrics.FollowingMeterProvider(ours)


class Pipeline:
    """The destinations respan_auto exports to, on the app's provider or its own."""

    def __init__(
        self,
        settings: Settings,
        environ: Mapping[str, str] | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.settings = settings
        self.destinations = destinations.build(settings, env, make_redactor(settings, env, redact))
        self.destination = " and ".join(d.name for d in self.destinations) or "nowhere"
        resource = Resource.create({"service.name": settings.app_name} if settings.app_name else {})
        processors = [ContextAttributesProcessor(), *(d.processor for d in self.destinations)]
        handle = provider.install(processors, resource)
        self.provider, self.joined = handle.provider, handle.joined
        self.meter_provider = _meter_provider(env, resource)
        self._exit_lock = threading.Lock()
        self._exited_pid: int | None = None
        process_end.install(self.exit_flush)
        if settings.spool_dir and any(d.transport is not None for d in self.destinations):
            threading.Thread(target=self.deliver_spool, name="respan-spool", daemon=True).start()

    def deliver_spool(self) -> int:
        """Send what earlier runs left in the spool; the spans delivered."""
        delivered = 0
        for destination in self.destinations:
            spool = spool_for(self.settings, destination)
            if spool is not None:
                delivered += spool.deliver(spool_sender(destination)).delivered
        return delivered

    def flush(self, timeout: float = 5.0) -> bool:
        """Deliver everything ended so far within ``timeout`` seconds; True if it all arrived."""
        deadline = time.monotonic() + timeout
        return all([d.flush(max(0.0, deadline - time.monotonic())) for d in self.destinations])

    def exit_flush(self) -> None:
        """At process end: deliver within the deadline; spool or report the rest, once per process."""
        with self._exit_lock:
            if self._exited_pid == os.getpid():
                return
            self._exited_pid = os.getpid()
        started = time.monotonic()
        deadline = started + self.settings.exit_timeout
        for destination in self.destinations:
            destination.encode_queued(deadline)
        for destination in self.destinations:
            unencoded = destination.waiting.spans
            leftovers = Leftovers([], None)
            if destination.sender is not None:
                leftovers = destination.sender.finish(max(0.0, deadline - time.monotonic()))
            self._report_undelivered(destination, leftovers, unencoded, time.monotonic() - started)
            self._report_lost(destination)
        if self.meter_provider is not None:
            try:
                # at least half a second of its own: spans that took the whole exit budget must not cost the metrics
                left = max(METRICS_EXIT_FLOOR, deadline - time.monotonic())
                self.meter_provider.ours.force_flush(timeout_millis=int(left * 1000))
            except Exception as exc:  # noqa: BLE001
                report_once("metrics flush", exc)

    def _report_undelivered(self, destination: Destination, left: Leftovers, unencoded: int, waited: float) -> None:
        waited_for = f"the exit waited {waited:.1f} s of RESPAN_EXIT_TIMEOUT={self.settings.exit_timeout:g}"
        if left.in_doubt is not None:
            spans = left.in_doubt.spans
            logger.warning(
                "respan_auto: %s %s sent to %s but not answered before exit (%s); not spooled, since the endpoint "
                "has answered before and may still be storing %s",
                _plural(spans),
                _was(spans),
                destination.name,
                waited_for,
                "it" if spans == 1 else "them",
            )
        unanswered = left.unanswered.spans if left.unanswered is not None else 0
        queued = sum(p.spans for p in left.queued)
        count = queued + unanswered + unencoded
        if not count:
            return
        where = f"{_plural(count)} did not reach {destination.name} before exit"
        spool = spool_for(self.settings, destination)
        payloads = left.queued + ([left.unanswered] if left.unanswered is not None else [])
        if spool is None or not payloads:
            causes = _counted(
                (queued, "waiting to be sent"), (unanswered, "sent but not answered"), (unencoded, "not yet encoded")
            )
            hint = "" if spool is not None else ". Set RESPAN_SPOOL_DIR to keep such spans for the next run"
            logger.warning("respan_auto: %s (%s); %s%s", where, causes, waited_for, hint)
            return
        transport = destination.transport
        assert transport is not None
        paths, error = spool.write((transport.raw(p), p.spans) for p in payloads)
        spooled = sum(p.spans for p in payloads[: len(paths)])
        all_spooled = len(paths) == len(payloads)
        if left.unanswered is not None and all_spooled:
            self._forget_if_answered(destination, left.unanswered, paths[-1])
        parts = []
        if spooled:
            parts.append(f"{_plural(spooled)} spooled to {self.settings.spool_dir} ({_plural(len(paths), 'file')})")
        if error is not None:
            parts.append(f"{_plural(count - spooled - unencoded)} could not be spooled ({error})")
        if unencoded:
            parts.append(f"{_plural(unencoded)} not yet encoded {_was(unencoded)} lost")
        if unanswered and all_spooled:
            parts.append(
                f"{_plural(unanswered)} {_was(unanswered)} sent but not yet answered: the endpoint may get "
                f"{'it' if unanswered == 1 else 'them'} twice"
            )
        if spool.evicted_spans:
            parts.append(
                f"{_plural(spool.evicted_spans)} spooled earlier {_was(spool.evicted_spans)} removed to keep the "
                "folder under RESPAN_SPOOL_MAX_BYTES"
            )
        logger.warning("respan_auto: %s; %s: %s", where, waited_for, "; ".join(parts))

    @staticmethod
    def _forget_if_answered(destination: Destination, payload: Payload, path: str) -> None:
        sender = destination.sender
        if sender is not None:
            sender.on_late_delivery = lambda delivered: Spool.forget(path) if delivered is payload else None

    @staticmethod
    def _report_lost(destination: Destination) -> None:
        sender = destination.sender
        queue_full = destination.waiting.dropped + (sender.counts.dropped if sender else 0)
        causes = [
            (queue_full, "because the export queue was full (RESPAN_MAX_QUEUE_SIZE, RESPAN_MAX_QUEUE_BYTES)"),
            (destination.waiting.oversize, "larger than a request may be (RESPAN_MAX_EXPORT_BYTES)"),
        ]
        if sender is not None:
            refused = dict(sender.counts.refused_causes).items()  # a late answer may still add to it
            causes += [(spans, f"refused by the endpoint ({cause})") for cause, spans in refused]
        total = sum(spans for spans, _ in causes)
        if total:
            logger.warning(
                "respan_auto: %s %s dropped on the way to %s: %s",
                _plural(total),
                _was(total),
                destination.name,
                _counted(*causes, separator="; "),
            )

    def shutdown(self) -> None:
        self.exit_flush()
        for destination in self.destinations:
            destination.processor.shutdown()
        if self.meter_provider is not None:
            try:
                self.meter_provider.ours.shutdown()
            except Exception as exc:  # noqa: BLE001
                report_once("metrics shutdown", exc)
