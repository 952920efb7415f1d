"""Joining the wrapper's trace: TRACEPARENT, the channel to the wrapper.

``otel-ai run`` starts the experiment with ``TRACEPARENT`` (its ``ai.run`` span),
``OTEL_AI_RUN_ID`` and ``OTEL_AI_CHANNEL`` (a local datagram socket). In such a child:

- the front doors attach to the wrapper's run instead of starting a second ``ai.run``;
- :func:`report` tells the wrapper what its status line and run span need (stage,
  progress, node counts, best metric, tokens, how the run ended), without ever blocking:
  a datagram the wrapper has no room for yet waits in a bounded queue of this process,
  sent by a thread of its own as room appears (lost only past that bound or when the
  wrapper is gone, counted and said on stderr at exit);
- process-pool tasks carry the submitter's context to the worker (:mod:`otel_ai.pools`).

Nothing here imports OpenTelemetry at import time: the bootstrap of every Python child
imports this module, and ``opentelemetry.trace`` alone costs a child ~50 ms of start-up
(``python -X importtime``). The OpenTelemetry API is imported where a trace context first
needs it, by which time the process uses OpenTelemetry anyway.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

TRACEPARENT = "TRACEPARENT"
TRACESTATE = "TRACESTATE"
RUN_ID_ENV = "OTEL_AI_RUN_ID"
CHANNEL_ENV = "OTEL_AI_CHANNEL"
# how long a pool worker may spend flushing at the end of each task
WORKER_FLUSH_TIMEOUT_ENV = "OTEL_AI_WORKER_FLUSH_TIMEOUT"
# "RUN_ID TRACEPARENT": the run an instrumented AI-Scientist search reports to, for
# process-pool workers (spawned ones inherit it with the environment)
INSTRUMENTED_RUN_ENV = "OTEL_AI_INSTRUMENTED_RUN"
INSTRUMENTED_STAGE_ENV = "OTEL_AI_INSTRUMENTED_STAGE"
MAX_DATAGRAM = 8192

# message kinds, children -> wrapper
MSG_STAGE = "stage"
MSG_STAGE_END = "stage_end"
MSG_PROGRESS = "progress"
MSG_NODE = "node"
MSG_TOKENS = "tokens"
MSG_RUN_END = "run_end"
MSG_ACTIVITY = "activity"
MSG_RUN_IDEA = "run_idea"  # the idea the run pursues (its input in LLM backends)
MSG_BEST = "best"  # a stage's best node (the run's result so far)


def parse_traceparent(value: str | None) -> tuple[int, int, int] | None:
    """(trace id, span id, flags) of a W3C ``traceparent`` header, None if invalid."""
    if not value:
        return None
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or parts[0] == "ff":
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3][:2], 16)
    except ValueError:
        return None
    if trace_id == 0 or span_id == 0:
        return None
    return trace_id, span_id, flags


def format_traceparent(trace_id: int, span_id: int, sampled: bool = True) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


def valid_tracestate(header: str | None) -> str | None:
    """A W3C ``tracestate`` header as the SDK's propagator passes it on (the API's
    ``TraceState`` rules: an invalid header is dropped whole), None when empty."""
    if not header or not header.strip():
        return None
    from opentelemetry.trace import TraceState

    return TraceState.from_header([header]).to_header() or None


def parent_span_context(environ: Mapping[str, str] | None = None) -> Any:
    """The remote SpanContext named by TRACEPARENT (and TRACESTATE), or None."""
    env = os.environ if environ is None else environ
    parsed = parse_traceparent(env.get(TRACEPARENT))
    if parsed is None:
        return None
    from opentelemetry.trace import SpanContext, TraceFlags, TraceState

    trace_id, span_id, flags = parsed
    state = TraceState.from_header([env[TRACESTATE]]) if env.get(TRACESTATE) else None
    return SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags & 1), trace_state=state
    )


_UNSET: Any = object()
_wrapped: Any = _UNSET


def wrapped_run(environ: Mapping[str, str] | None = None) -> tuple[str, Any] | None:
    """(run id, the wrapper's run span context) when this process runs under
    ``otel-ai run``; None otherwise. Read once per process from the environment."""
    global _wrapped
    if environ is None:
        if _wrapped is _UNSET:
            _wrapped = _wrapped_run(os.environ)
        return _wrapped  # type: ignore[no-any-return]
    return _wrapped_run(environ)


def _wrapped_run(env: Mapping[str, str]) -> tuple[str, Any] | None:
    run_id = env.get(RUN_ID_ENV, "").strip()
    if not run_id or not env.get(CHANNEL_ENV):
        return None
    context = parent_span_context(env)
    return (run_id, context) if context is not None else None


# --- the channel to the wrapper (child side) ------------------------------------------
class _Reporter:
    """Datagrams to the wrapper, never waiting. The wrapper's socket takes only a few
    datagrams at a time (Linux's net.unix.max_dgram_qlen, 10 by default) and the wrapper
    runs at a lower priority: what it has no room for yet waits here, in order, and a
    thread of this process sends it as room appears. Dropped and counted only past
    ``_PENDING_MAX`` waiting or when the wrapper is gone; said on stderr at exit."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.dropped = 0
        self._pid = os.getpid()
        self._sock = self._open()
        self._pending: collections.deque[bytes] = collections.deque()
        self._lock = threading.Lock()
        self._retrying = False

    def _open(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        return sock

    def send(self, message: Mapping[str, Any]) -> None:
        try:
            data = json.dumps(message, default=str, separators=(",", ":")).encode()[:MAX_DATAGRAM]
        except Exception:  # noqa: BLE001 - a report never raises into the experiment
            self.dropped += 1
            return
        # bounded: a SIGTERM flush runs on another thread while the main thread, stopped
        # by the signal, may hold the lock
        if not self._lock.acquire(timeout=_LOCK_WAIT_S):
            self.dropped += 1
            return
        try:
            if self._pid != os.getpid():  # forked, and the at-fork reset did not run
                self._reset()
            self._pending.append(data)
            self._send_pending()
            if self._pending and not self._retrying:
                self._retrying = True
                threading.Thread(target=self._retry, name="otel_ai-channel-retry", daemon=True).start()
        finally:
            self._lock.release()

    def after_fork(self) -> None:
        """In a forked child: the parent's retry thread may have held the lock; the
        parent's waiting reports are the parent's to send."""
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        """A socket and a queue of this process's own."""
        self._pid = os.getpid()
        with contextlib.suppress(OSError):
            self._sock.close()  # the parent's copy; the parent's own stays open
        self._sock = self._open()
        self._pending.clear()
        self._retrying = False

    def _send_pending(self) -> None:
        """Send what waits, oldest first, until the socket is full (lock held)."""
        pending = self._pending
        while pending:
            try:
                self._sock.sendto(pending[0], self.path)
            except BlockingIOError:
                break  # no room yet
            except OSError:
                # the wrapper is gone: nothing will ever take these
                self.dropped += len(pending)
                pending.clear()
                break
            pending.popleft()
        while len(pending) > _PENDING_MAX:
            pending.popleft()
            self.dropped += 1

    def _retry(self) -> None:
        pause = 0.001
        while True:
            time.sleep(pause)
            with self._lock:
                if self._pid != os.getpid():
                    return
                left = len(self._pending)
                self._send_pending()
                if not self._pending:
                    self._retrying = False
                    return
                taken = len(self._pending) < left
            # soon again while the wrapper takes them; backing off while it does not
            pause = 0.001 if taken else min(pause * 2, 0.05)

    def drain(self, timeout: float) -> None:
        """At exit: send what still waits while the wrapper keeps taking it (given up
        after ``timeout`` s in which it took nothing); then say what was lost."""
        deadline = time.monotonic() + timeout
        left = len(self._pending)
        while self._pending and self._pid == os.getpid() and time.monotonic() < deadline:
            if not self._lock.acquire(timeout=_LOCK_WAIT_S):
                break
            try:
                self._send_pending()
            finally:
                self._lock.release()
            if len(self._pending) < left:  # taken: a slow wrapper, not a stuck one
                left = len(self._pending)
                deadline = time.monotonic() + timeout
            if self._pending:
                time.sleep(0.002)
        lost = self.dropped + (len(self._pending) if self._pid == os.getpid() else 0)
        self.dropped = 0
        self._pending.clear()
        if lost:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(f"otel_ai: {lost} reports to otel-ai run were lost (its channel was full)\n")


# reports waiting for room in the wrapper's socket, at most (a few hundred bytes each)
_PENDING_MAX = 10_000
# how long a report waits for another thread sending (microseconds, unless that thread
# was stopped by a signal whose handler flushes)
_LOCK_WAIT_S = 0.1
# how long a process's exit waits for the wrapper to take any of the reports still waiting
_EXIT_DRAIN_S = 1.0


def drain_at_exit() -> None:
    reporter = _reporter
    if reporter is not None:
        reporter.drain(_EXIT_DRAIN_S)


atexit.register(drain_at_exit)


_reporter: _Reporter | None = None
_reporter_checked = False
_reporter_lock = threading.Lock()


def report(kind: str, **fields: Any) -> None:
    """Tell the wrapper something (a no-op when this process is not wrapped)."""
    global _reporter, _reporter_checked
    if not _reporter_checked:
        with _reporter_lock:
            if not _reporter_checked:
                path = os.environ.get(CHANNEL_ENV)
                _reporter = _Reporter(path) if path else None
                _reporter_checked = True
    reporter = _reporter
    if reporter is not None:
        fields["kind"] = kind
        fields["pid"] = os.getpid()
        reporter.send(fields)


def reset() -> None:
    """Forget what was read from the environment (tests): the wrapper's run, the channel."""
    global _reporter, _reporter_checked, _wrapped
    with _reporter_lock:
        _reporter = None
        _reporter_checked = False
        _wrapped = _UNSET


def _reporter_after_fork() -> None:
    if _reporter is not None:
        _reporter.after_fork()


os.register_at_fork(after_in_child=_reporter_after_fork)
