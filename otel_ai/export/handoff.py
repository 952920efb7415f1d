"""Handing a front door's work to a thread of its own, so the caller's thread only enqueues.

An event through :class:`otel_ai.EventEmitter` costs coercion, redaction, gauges, a span
event and a log record: work that can wait a few microseconds, but not work the caller
should pay for. :func:`submit` puts ``(context, fn, args, kwargs, time)`` on a bounded deque and
returns; one daemon thread per process runs the calls in the order they were submitted,
each under the OpenTelemetry context the caller had (so "the current span" is the
caller's). The caller never sees an error (the front doors report their internal errors
themselves) and waits only when more than ``DEFAULT_CAPACITY`` calls are queued: then it
goes at the speed of recording them, as it would without the handoff, however slow the
machine. Only when the thread records nothing for ``FULL_WAIT_S`` (it is stuck) is the
call dropped and counted (:func:`dropped`, and one line on stderr at exit).

:func:`drain` waits until everything submitted so far has run: before a flush or
shutdown (:mod:`otel_ai.export.providers` calls it), before a fork (the child must not
run its parent's calls again, and its parent's runs must be in the state the caller
left them), and before a call that must run on the caller's thread, so order is kept.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import context as context_api

# calls waiting at most: ~100 bytes each, a few MB at worst, never a wait
DEFAULT_CAPACITY = 65536
_IDLE_WAIT_S = 1.0
# a caller finding the queue full waits while the thread records; when it records nothing
# for this long (stuck), the call is dropped and counted
FULL_WAIT_S = 1.0

_Call = tuple[context_api.Context, Callable[..., Any], tuple[Any, ...], dict[str, Any], int]

# While the handoff thread runs a call, the time it was made: the spans, span events and
# log records it creates carry the caller's moment, not the (slightly later) one at which
# the thread got to it.
_clock = threading.local()


def now_ns() -> int:
    """The time of the call being recorded: on the handoff thread, when the caller made
    it; anywhere else, now."""
    made = getattr(_clock, "ns", None)
    return time.time_ns() if made is None else int(made)


class Handoff:
    """One process's queue of deferred calls and the thread that runs them, in order."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self.dropped = 0
        self._recorded = 0  # calls run so far: a waiting caller watches it move
        self._queue: collections.deque[_Call] = collections.deque()
        self._wake = threading.Event()
        self._idle = True
        self._pid = os.getpid()
        self._thread: threading.Thread | None = None
        self._ident: int | None = None  # the handoff thread's
        self._start_lock = threading.Lock()

    # -- the caller's side: as little as possible -----------------------------------------
    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Queue ``fn(*args, **kwargs)``; False when it was dropped (no room in time)."""
        queue = self._queue
        if len(queue) >= self.capacity and not self._make_room():
            self.dropped += 1
            return False
        if self._thread is None or self._pid != os.getpid():
            self._start()  # before queueing: a thread that cannot start raises, nothing queued
        queue.append((context_api.get_current(), fn, args, kwargs, time.time_ns()))
        if self._idle:
            self._wake.set()
        return True

    def _make_room(self) -> bool:
        """A burst larger than the queue goes at the speed of recording it, as it would
        without the handoff: wait for the thread to catch up while it makes progress; drop
        and count only when it recorded nothing for FULL_WAIT_S (stuck)."""
        if threading.get_ident() == self._ident:
            return True  # a handed-off call handing off another: never wait for ourselves
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._start()
        deadline = time.monotonic() + FULL_WAIT_S
        seen = self._recorded
        room = self.capacity - self.capacity // 8
        pause = 0.0001
        while len(self._queue) >= room:
            self._wake.set()
            now = time.monotonic()
            if self._recorded != seen:  # slow, not stuck: keep waiting
                seen = self._recorded
                deadline = now + FULL_WAIT_S
            elif now >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.002)
        return True

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait (up to ``timeout`` s) until every call submitted so far has run. From the
        handoff thread itself (a call that flushes) it returns at once."""
        if not self._queue or threading.get_ident() == self._ident:
            return True
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._start()
        deadline = time.monotonic() + max(timeout, 0.0)
        pause = 0.00005
        while self._queue:
            self._wake.set()
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.002)
        return True

    def pending(self) -> int:
        return len(self._queue)

    # -- the handoff thread ---------------------------------------------------------------------
    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
                return
            self._pid = os.getpid()
            self._wake = threading.Event()
            self._idle = True
            thread = threading.Thread(target=self._run, name="otel_ai-handoff", daemon=True)
            thread.start()
            self._thread = thread

    def _run(self) -> None:
        self._ident = threading.get_ident()  # first: a call it runs may drain (returns at once)
        queue = self._queue
        while True:
            self._idle = True
            if not queue:  # checked after _idle is set: a submit in between wakes us
                self._wake.wait(_IDLE_WAIT_S)
                self._wake.clear()
                continue
            self._idle = False
            while queue:
                context, fn, args, kwargs, made = queue[0]  # stays queued while it runs: drain waits
                token = context_api.attach(context)
                _clock.ns = made
                try:
                    fn(*args, **kwargs)
                except BaseException:  # noqa: BLE001 - never let one call stop the rest
                    pass
                finally:
                    _clock.ns = None
                    context_api.detach(token)
                    queue.popleft()
                    self._recorded += 1

    def _after_fork_in_child(self) -> None:
        # drained before the fork (see _before_fork); anything left is the parent's
        self._queue.clear()
        self._thread = None
        self._ident = None
        self._start_lock = threading.Lock()
        self._pid = os.getpid()


_handoff = Handoff()


def submit(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Run ``fn(*args, **kwargs)`` on this process's handoff thread, after what came before."""
    return _handoff.submit(fn, args, kwargs)


def drain(timeout: float = 5.0) -> bool:
    """Wait until every call handed off so far has run (True), or ``timeout`` s passed."""
    return _handoff.drain(timeout)


def dropped() -> int:
    """Calls dropped because the queue was full (never silently: see :func:`say_drops`)."""
    return _handoff.dropped


def say_drops() -> None:
    """One stderr line when calls were dropped (the queue was full)."""
    if _handoff.dropped:
        try:
            sys.stderr.write(
                f"otel_ai: {_handoff.dropped} events dropped: more than {_handoff.capacity} waited "
                "to be recorded\n"
            )
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def _before_fork() -> None:
    if _handoff.pending():
        _handoff.drain(1.0)


os.register_at_fork(before=_before_fork, after_in_child=_handoff._after_fork_in_child)
