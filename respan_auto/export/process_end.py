"""Deliver at every kind of process end: the pipeline's exit flush runs once per process, however it ends.

How a process can end, and what runs the flush then:

- it returns, calls ``sys.exit`` or dies of an exception (also gunicorn workers, ``os.fork`` children
  that exit so, spawn children): ``atexit``;
- it receives SIGTERM and nobody handles it (``SIG_DFL``): our handler flushes, restores ``SIG_DFL``
  and re-delivers the signal, so the process still dies of SIGTERM;
- it sends itself a terminating signal left at ``SIG_DFL``, as uvicorn does after its graceful
  shutdown (it restores the handler it found, then ``signal.raise_signal``): ``signal.raise_signal``
  and ``os.kill`` are wrapped to flush first;
- it is a multiprocessing child, which leaves through ``os._exit`` past atexit (fork, forkserver):
  a ``multiprocessing.util.Finalize``, run by the child's own exit sequence.

"Once" is counted per process id, so a forked child flushes its own spans. Nothing can run at
``os._exit`` outside multiprocessing, SIGKILL or a crash.
"""

from __future__ import annotations

import _thread
import atexit
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType, ModuleType
from typing import Any

from respan_auto._guard import report_once

logger = logging.getLogger("respan_auto")

DEFAULT_EXIT_SECONDS = 2.0  # RESPAN_EXIT_TIMEOUT's default, as the settings read it
MAX_EXIT_SECONDS = 600.0
WAIT_MARGIN_SECONDS = 2.0  # past the flush's own deadline: time to spool or report what is left
MULTIPROCESSING_EXIT_PRIORITY = 0  # after the app's own finalizers (Pool 15, Queue 10), before children are joined
# Signals a process may send itself, whose default action is to terminate it.
SELF_SIGNALS = frozenset(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))

_flushes: list[Callable[[], None]] = []
_install_lock = threading.Lock()
_installed = False
_flushed_pid: int | None = None  # the process that ran (or is running) the flush
_finalizer_pid: int | None = None  # the multiprocessing child that registered its Finalize
_real_raise_signal = signal.raise_signal
_real_kill = os.kill
_pending_calls: list[Any] = []  # ctypes callbacks handed to Py_AddPendingCall must outlive the call


class _Anchor:
    """``register_after_fork`` holds its object weakly: this one lives as long as the module."""


_ANCHOR = _Anchor()


def install(flush: Callable[[], None]) -> None:
    """Have ``flush`` run once when this process ends, and once in each child forked from it.

    Cheap, never raises. Safe from any thread: only the main thread may set a signal handler, so
    from another one the SIGTERM handler is left to the main thread (see ``_call_in_main_thread``).
    """
    global _installed
    with _install_lock:
        _flushes.append(flush)
        first, _installed = not _installed, True
    if not first:
        return
    atexit.register(_flush_once)
    _wrap_self_signals()
    _watch_multiprocessing()
    if threading.current_thread() is threading.main_thread():
        _take_sigterm()
    elif not _call_in_main_thread(_take_sigterm):
        logger.debug("respan_auto: tracing started off the main thread; spans are flushed at exit, not on SIGTERM")


def _flush_once() -> None:
    """Run every registered flush, once per process id."""
    global _flushed_pid
    pid = os.getpid()
    if _flushed_pid == pid:
        return
    _flushed_pid = pid
    for flush in tuple(_flushes):
        try:
            flush()
        except Exception as exc:  # noqa: BLE001 - the app's exit must go on
            report_once("exit flush", exc)


def _wait_seconds() -> float:
    """How long a dying process waits for the flush: the flush keeps to RESPAN_EXIT_TIMEOUT, plus a margin."""
    try:
        seconds = float(os.environ.get("RESPAN_EXIT_TIMEOUT", DEFAULT_EXIT_SECONDS))
    except ValueError:
        seconds = DEFAULT_EXIT_SECONDS
    if not 0 <= seconds <= MAX_EXIT_SECONDS:  # NaN too
        seconds = DEFAULT_EXIT_SECONDS
    return seconds + WAIT_MARGIN_SECONDS


def _flush_before_dying() -> None:
    """Flush from a helper thread and wait for it, boundedly, before a signal kills the process.

    The code a signal interrupts may hold a lock the flush needs (a span processor's queue lock,
    the logging lock); flushing inline could then deadlock a process that should be dying. The
    helper thread comes from ``_thread``, so that starting it takes no lock of ``threading``'s.
    """
    if _flushed_pid == os.getpid() or not _flushes:
        return
    done = _thread.allocate_lock()
    done.acquire()

    def run() -> None:
        try:
            _flush_once()
        finally:
            done.release()

    try:
        _thread.start_new_thread(run, ())
    except RuntimeError:  # no new threads at interpreter shutdown
        return
    done.acquire(timeout=_wait_seconds())


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM that nobody else handles: flush, then die of SIGTERM exactly as ``SIG_DFL`` would.

    Installed only over ``SIG_DFL``, so "the handler that was there before" is always the default
    action: restore it and re-deliver the signal (same exit status, -15). A second SIGTERM during
    the flush re-enters here, finds the flush under way, and kills at once.

    When we are no longer the disposition, a handler that replaced ours is calling us as "the
    previous handler": without us it would have found ``SIG_DFL``, which it cannot call, so we do
    nothing and let it end the process its own way (its exit runs the flush).
    """
    if signal.getsignal(signum) is not _on_sigterm:
        return
    try:
        _flush_before_dying()
    finally:
        signal.signal(signum, signal.SIG_DFL)
        _real_raise_signal(signum)


def _take_sigterm() -> None:
    """Handle SIGTERM where nobody does (``SIG_DFL``), and leave every other disposition alone.

    - ``SIG_IGN``: the app ignores SIGTERM and keeps doing so (exec'd children inherit that too).
    - A handler set outside Python (``None``): we could not chain to it.
    - A Python handler: the app owns SIGTERM and decides how the process ends, and each way is
      covered without us wrapping it: it returns and the app exits later (gunicorn workers, Celery)
      or it calls ``sys.exit``: atexit flushes; it restores ``SIG_DFL`` and re-raises (uvicorn):
      the self-signal wrappers flush. Flushing at the signal instead would spend the
      once-per-process exit flush too early, and lose the spans of the requests a graceful
      shutdown still finishes. The one way left uncovered is a handler that ends in ``os._exit``.
    """
    try:
        current = signal.getsignal(signal.SIGTERM)
        if current is _on_sigterm:
            return
        if current == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
        else:
            logger.debug("respan_auto: SIGTERM is the app's (%r); spans are flushed when the app exits", current)
    except Exception as exc:  # noqa: BLE001
        report_once("SIGTERM handler", exc)


def _call_in_main_thread(func: Callable[[], None]) -> bool:
    """Have the main thread run ``func`` between two bytecodes, as it runs signal handlers.

    ``Py_AddPendingCall`` is CPython's documented way for another thread to ask this. The main
    thread runs it the next time it executes Python code; one stuck in a long C call runs it later.
    """
    try:
        import ctypes

        def pending(_arg: object) -> int:
            func()  # never raises
            return 0

        callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)(pending)
        _pending_calls.append(callback)
        return ctypes.pythonapi.Py_AddPendingCall(callback, None) == 0
    except Exception as exc:  # noqa: BLE001 - not CPython, or no ctypes: no SIGTERM handler then
        report_once("main-thread call", exc)
        return False


def _before_self_signal(signum: int) -> None:
    """The process is sending itself ``signum``: if nothing handles it, it dies on arrival; flush first."""
    try:
        if signum in SELF_SIGNALS and signal.getsignal(signum) == signal.SIG_DFL:
            _flush_before_dying()
    except Exception as exc:  # noqa: BLE001 - a bad signal number is the real call's to reject
        report_once("self-signal flush", exc)


def _wrap_self_signals() -> None:
    """Wrap ``signal.raise_signal`` and ``os.kill`` (own pid only): same calls, a flush before a default death."""

    @functools.wraps(_real_raise_signal)
    def raise_signal(signalnum: int, /) -> None:
        _before_self_signal(signalnum)
        _real_raise_signal(signalnum)

    @functools.wraps(_real_kill)
    def kill(pid: int, signalnum: int, /) -> None:
        if pid == os.getpid():
            _before_self_signal(signalnum)
        _real_kill(pid, signalnum)

    signal.raise_signal = raise_signal
    os.kill = kill


def _watch_multiprocessing() -> None:
    """Arm multiprocessing children now if multiprocessing is loaded, else when it is.

    Importing ``multiprocessing.util`` costs some 20 ms (it loads socket, selectors, subprocess):
    a process that never uses multiprocessing should not pay it.
    """
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        _arm_multiprocessing(util)
        return
    try:
        import wrapt

        wrapt.register_post_import_hook(_arm_multiprocessing, "multiprocessing.util")
    except Exception as exc:  # noqa: BLE001
        report_once("multiprocessing hook", exc)


def _arm_multiprocessing(util: ModuleType) -> None:
    """Register a Finalize in every multiprocessing child, which ends in ``os._exit``.

    ``Process._bootstrap`` empties the finalizer registry it inherited, then runs the after-fork
    callbacks: registering through ``register_after_fork`` reaches children forked later (the
    registry is inherited) and spawn or forkserver children whose pipeline was created while they
    started (importing the main module). A child already running registers directly.
    """
    try:
        util.register_after_fork(_ANCHOR, _finalize_in_child)
        from multiprocessing import process

        if process.parent_process() is not None:
            _finalize_in_child(_ANCHOR)
    except Exception as exc:  # noqa: BLE001
        report_once("multiprocessing hook", exc)


def _finalize_in_child(_anchor: object) -> None:
    global _finalizer_pid
    pid = os.getpid()
    if _finalizer_pid == pid:
        return
    _finalizer_pid = pid
    from multiprocessing import util

    util.Finalize(None, _flush_once, exitpriority=MULTIPROCESSING_EXIT_PRIORITY)
