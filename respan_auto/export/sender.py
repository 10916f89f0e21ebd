"""The network stage: encoded export requests wait here, in order, until their endpoint accepts them.

The standard exporter encodes a batch and hands the request to its transport; our transport
(``transport.py``) puts it here instead of sending it on the batch processor's thread. One daemon
thread sends, in order. A failure worth retrying (connection errors, 429, 5xx, gRPC UNAVAILABLE...)
keeps the request at the head and tries again with exponential backoff and jitter, or after the
server's ``Retry-After``. The queue is bounded in spans and in bytes: past either bound the oldest
requests go, and their spans are counted. At exit, ``finish`` waits at most until the deadline, then
hands back what is left so that it can be spooled; nothing is both handed back and sent again.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry.instrumentation.utils import suppress_instrumentation

from respan_auto._guard import report_once
from respan_auto.export.fork import reset_in_child

MAX_BACKOFF_SECONDS = 30.0
MAX_RETRY_AFTER_SECONDS = 120.0


@dataclass
class Payload:
    """One export request as the exporter encoded it, and how many spans it carries."""

    body: bytes
    spans: int
    meta: dict[str, Any] = field(default_factory=dict)  # what the transport needs to send it again


@dataclass(frozen=True)
class Outcome:
    """What became of one send."""

    ok: bool
    retry: bool = False
    retry_after: float | None = None
    cause: str = ""  # for a refusal: the answer, in a few words ("HTTP 401")
    answered: bool = True  # False when no answer came at all (refused connection, timeout)


DELIVERED = Outcome(ok=True)


class Transport(Protocol):
    target: str

    def send(self, payload: Payload) -> Outcome: ...

    def raw(self, payload: Payload) -> bytes:
        """The uncompressed protobuf request, for the spool."""
        ...

    def from_raw(self, raw: bytes, spans: int) -> Payload:
        """A payload for a spooled protobuf request."""
        ...


def backoff(attempt: int, retry_after: float | None) -> float:
    """Seconds before the next try: the server's word when it gave one, else exponential with jitter."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER_SECONDS)
    ceiling = min(MAX_BACKOFF_SECONDS, 0.5 * 2**attempt)
    return ceiling / 2 + random.random() * ceiling / 2


@dataclass
class Leftovers:
    """What ``finish`` hands back.

    ``queued`` were never sent, or failed: safe to spool. The request on the wire at the deadline
    is ``unanswered`` (spool it: the endpoint has never answered, so it is most likely down) or
    ``in_doubt`` (the endpoint has answered before and may be working on it: spooling it could
    deliver it twice, so it is only reported).
    """

    queued: list[Payload]
    unanswered: Payload | None = None
    in_doubt: Payload | None = None


class Counts:
    """Spans by fate, for the exit report."""

    __slots__ = ("delivered", "dropped", "refused", "refused_causes")

    def __init__(self) -> None:
        self.delivered = 0
        self.dropped = 0  # pushed out of a full queue
        self.refused = 0  # refused by the endpoint (400, 401...)
        self.refused_causes: dict[str, int] = {}


class Sender:
    def __init__(self, transport: Transport, max_spans: int, max_bytes: int) -> None:
        self.transport = transport
        self.max_spans = max(1, max_spans)
        self.max_bytes = max(1, max_bytes)
        self.on_late_delivery: Callable[[Payload], None] | None = None
        self._start()
        reset_in_child(self, "_start")

    def _start(self) -> None:
        self._queue: deque[Payload] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        self._closed = False
        self._inflight: Payload | None = None
        self._handed_back: Payload | None = None  # unanswered at exit: spooled, unless its answer still comes
        self.ever_answered = False
        self.queued_spans = 0
        self.queued_bytes = 0
        self.peak_spans = 0
        self.counts = Counts()
        # started now, not at the first request: at interpreter shutdown (Python 3.12+) no thread may start
        self._thread = threading.Thread(target=self._work, name="respan-send", daemon=True)
        self._thread.start()

    def submit(self, payload: Payload) -> None:
        """Queue one request (called on the batch processor's thread); the oldest go past the bounds."""
        with self._cond:
            if self._closed:
                return
            self._queue.append(payload)
            self.queued_spans += payload.spans
            self.queued_bytes += len(payload.body)
            while len(self._queue) > 1 and (self.queued_spans > self.max_spans or self.queued_bytes > self.max_bytes):
                self.counts.dropped += self._forget(self._queue.popleft())
            self.peak_spans = max(self.peak_spans, self.queued_spans)
            self._cond.notify()

    def _forget(self, payload: Payload) -> int:
        self.queued_spans -= payload.spans
        self.queued_bytes -= len(payload.body)
        return payload.spans

    def _next(self) -> Payload | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            payload = self._queue.popleft()
            self._forget(payload)
            self._inflight = payload
            return payload

    def _requeue(self, payload: Payload) -> bool:
        """Put a request back at the head after a retryable failure; False once closed."""
        with self._cond:
            self._inflight = None
            if self._closed:
                return False
            self._queue.appendleft(payload)
            self.queued_spans += payload.spans
            self.queued_bytes += len(payload.body)
            self._cond.notify_all()
            return True

    def _settle(self, payload: Payload, outcome: Outcome) -> None:
        with self._cond:
            late = payload is self._handed_back
            self._inflight = None
            if outcome.ok:
                self.counts.delivered += payload.spans
            else:
                self.counts.refused += payload.spans
                causes = self.counts.refused_causes
                causes[outcome.cause] = causes.get(outcome.cause, 0) + payload.spans
            self._cond.notify_all()
        if late and outcome.ok and self.on_late_delivery is not None:
            self.on_late_delivery(payload)

    def _send(self, payload: Payload) -> Outcome:
        try:
            with suppress_instrumentation():  # our own HTTP or gRPC call must not be traced
                outcome = self.transport.send(payload)
            self.ever_answered = self.ever_answered or outcome.answered
            return outcome
        except Exception as exc:  # noqa: BLE001 - a transport bug must not kill the send thread
            report_once("span export", exc)
            return Outcome(ok=False, retry=True, answered=False)

    def _work(self) -> None:
        attempt = 0
        while (payload := self._next()) is not None:
            while True:
                outcome = self._send(payload)
                if outcome.ok or not outcome.retry:
                    self._settle(payload, outcome)
                    attempt = 0
                    break
                if not self._requeue(payload):
                    break
                if self._wake.wait(backoff(attempt, outcome.retry_after)):
                    return  # closed while waiting
                attempt += 1
                payload = self._next()  # type: ignore[assignment]
                if payload is None:
                    return

    @property
    def idle(self) -> bool:
        with self._cond:
            return not self._queue and self._inflight is None

    def wait_idle(self, timeout: float) -> bool:
        """Wait until everything queued has been settled, at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._inflight is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                # a retry backoff may be sleeping: it is woken only by close; poll so the deadline holds
                self._cond.wait(min(left, 0.05))
            return True

    def finish(self, timeout: float) -> Leftovers:
        """Deliver within ``timeout``, then stop sending and hand back what is left."""
        self.wait_idle(timeout)
        with self._cond:
            self._closed = True
            queued = list(self._queue)
            self._queue.clear()
            self.queued_spans = self.queued_bytes = 0
            inflight = self._inflight
            if not self.ever_answered:
                self._handed_back = inflight
            self._cond.notify_all()
        self._wake.set()
        if self.ever_answered:
            return Leftovers(queued, in_doubt=inflight)
        return Leftovers(queued, unanswered=inflight)
