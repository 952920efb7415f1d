"""Joining the wrapper's trace: TRACEPARENT, process pools, the channel to the wrapper.

``otel-ai run`` starts the experiment with ``TRACEPARENT`` (its ``ai.run`` span),
``OTEL_AI_RUN_ID`` and ``OTEL_AI_CHANNEL`` (a local datagram socket). In such a child:

- the front doors attach to the wrapper's run instead of starting a second ``ai.run``;
- :func:`report` tells the wrapper what its status line and run span need (stage,
  progress, node counts, best metric, tokens, how the run ended), without ever blocking:
  a datagram the wrapper has no room for yet waits in a bounded queue of this process,
  sent by a thread of its own as room appears (lost only past that bound or when the
  wrapper is gone, counted and said on stderr at exit);
- a task submitted to a ``ProcessPoolExecutor`` carries the submitter's trace context to
  the worker, which hands its telemetry to the exporters in the background once the task
  returns, and flushes what is left when it exits or is killed with SIGTERM (as a pool's
  workers are when a stage ends).

Nothing here imports OpenTelemetry at import time: the bootstrap of every Python child
imports this module, and ``opentelemetry.trace`` alone costs a child ~50 ms of start-up
(``python -X importtime``). The OpenTelemetry API is imported where a pool task or a
trace context first needs it, by which time the process uses OpenTelemetry anyway.

What must happen before a worker's last flush (ending the spans still open) is a hook
registered by the layer that owns those spans (:func:`add_exit_hook`).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import contextvars
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
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


def _drain_at_exit() -> None:
    reporter = _reporter
    if reporter is not None:
        reporter.drain(_EXIT_DRAIN_S)


atexit.register(_drain_at_exit)


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


# --- process pools -----------------------------------------------------------------------
def _current_carrier() -> dict[str, str] | None:
    """The trace context of the submitting code, if OpenTelemetry is in use here."""
    if "opentelemetry.context" not in sys.modules:
        return None  # nothing traced in this process yet: the worker inherits TRACEPARENT
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier or None


TaskHook = Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any]], Mapping[str, str] | None]
_task_hooks: list[TaskHook] = []
_task_carrier: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "otel_ai_task_carrier", default=None
)


def add_task_hook(hook: TaskHook) -> None:
    """Carry more context with each pool task: ``hook(fn, args, kwargs)`` runs in the
    submitting process and returns entries (strings) that travel with the task, next
    to its ``traceparent``; the task reads them with :func:`task_carrier`. Registered
    once; a failing hook adds nothing."""
    if hook not in _task_hooks:
        _task_hooks.append(hook)


def remove_task_hook(hook: TaskHook) -> None:
    if hook in _task_hooks:
        _task_hooks.remove(hook)


def task_carrier() -> Mapping[str, str]:
    """What the running pool task was submitted with (empty outside a pool task)."""
    return _task_carrier.get() or {}


def _with_task_context(
    carrier: dict[str, str] | None, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, str] | None:
    for hook in list(_task_hooks):
        try:
            extra = hook(fn, args, kwargs)
        except Exception:  # noqa: BLE001 - the task is submitted regardless
            continue
        if extra:
            carrier = {**(carrier or {}), **{str(k): str(v) for k, v in extra.items()}}
    return carrier


def call_in_context(
    carrier: dict[str, str] | None, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Run a pool task in the worker under the submitter's trace context; its telemetry
    is flushed in the background once it returns.

    A module-level function, so it pickles for spawn workers as well as fork ones.
    """
    token = None
    flush_on_sigterm()
    if carrier:
        try:
            from opentelemetry import context
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

            token = context.attach(TraceContextTextMapPropagator().extract(carrier))
        except Exception:  # noqa: BLE001 - the task runs regardless
            token = None
    carried = _task_carrier.set(carrier)
    try:
        return fn(*args, **kwargs)
    finally:
        _task_carrier.reset(carried)
        if token is not None:
            from opentelemetry import context

            context.detach(token)
        _flush_worker()


def _flush_worker() -> None:
    """Make what the task emitted safe before its result goes back, without waiting on
    the network. The pool may kill this worker as soon as the stage ends (SIGTERM, or
    SIGKILL after a short wait), so what goes over OTLP and is not delivered yet is
    written to this worker's spool (bounded by OTEL_AI_WORKER_FLUSH_TIMEOUT; its
    delivery threads go on sending it, and ``otel-ai run`` delivers what a killed worker
    left). With 0, or when nothing goes over the network (the embedded default's files), a
    background thread of this worker hands it over instead and the task returns at
    once: what is still buffered is written when the worker ends, at its normal exit
    (multiprocessing's exit finalizers, fork and spawn alike) or when the pool kills it
    with SIGTERM (open spans ended as closed by shutdown first).
    """
    providers = sys.modules.get("otel_ai.export.providers")
    pipeline = providers.current_pipeline() if providers is not None else None
    if providers is None or pipeline is None:
        return  # this worker emitted nothing
    try:
        _worker_flusher()  # the exit finalizer and the SIGTERM handler
        timeout = _flush_timeout()
        if timeout > 0 and not getattr(pipeline, "local", False):
            providers.secure(timeout)
        else:
            _worker_flusher().nudge()
    except Exception:  # noqa: BLE001 - never fail the task for telemetry
        pass


def _flush_timeout() -> float:
    try:
        return max(float(os.environ.get(WORKER_FLUSH_TIMEOUT_ENV, "5")), 0.0)
    except ValueError:
        return 5.0


_exit_hooks: list[Callable[[], None]] = []


def add_exit_hook(hook: Callable[[], None]) -> None:
    """Call ``hook()`` before a pool worker's last flush (at its exit, or when it is
    killed with SIGTERM), e.g. to end the spans it still has open. Registered once;
    a failing hook is skipped."""
    if hook not in _exit_hooks:
        _exit_hooks.append(hook)


def _flush_now(timeout: float) -> None:
    try:
        _flush_pipeline(timeout)
    finally:
        # a worker ends by os._exit (no atexit): the reports its last spans made, now
        _drain_at_exit()


def _flush_pipeline(timeout: float) -> None:
    # sys.modules, not an import: a worker that never configured telemetry has nothing
    # to flush and must not import the SDK now
    providers = sys.modules.get("otel_ai.export.providers")
    if providers is None or providers.current_pipeline() is None:
        return
    handoff = sys.modules.get("otel_ai.export.handoff")
    if handoff is not None:
        handoff.drain(timeout)  # the events handed off, before their spans are ended
    for hook in list(_exit_hooks):
        try:
            hook()
        except Exception:  # noqa: BLE001
            pass
    try:
        # delivered if the collector takes it in time; what it did not take yet goes to
        # the spool, for ``otel-ai run`` to deliver once this worker is gone
        providers.force_flush(timeout)
        providers.spool_undelivered()
    except Exception:  # noqa: BLE001
        pass


class _WorkerFlusher:
    """One per worker process: a daemon thread that flushes after each task, the exit
    finalizer and the SIGTERM handler that flush what is left."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="otel_ai-worker-flush", daemon=True)
        self._thread.start()
        # a pool worker has imported it; importing it here would cost other processes ~10 ms
        util = sys.modules.get("multiprocessing.util")
        try:
            if util is not None:
                util.Finalize(None, self.at_exit, exitpriority=100)  # before the pool's own (<= 10)
        except Exception:  # noqa: BLE001
            pass
        flush_on_sigterm()

    def nudge(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            providers = sys.modules.get("otel_ai.export.providers")
            if providers is None:
                continue
            try:
                providers.force_flush(_flush_timeout())
            except Exception:  # noqa: BLE001
                pass

    def at_exit(self) -> None:
        if self.pid == os.getpid():
            _flush_now(_flush_timeout())


_flusher: _WorkerFlusher | None = None
_flusher_lock = threading.Lock()


def _worker_flusher() -> _WorkerFlusher:
    global _flusher
    flusher = _flusher
    if flusher is None or flusher.pid != os.getpid():
        with _flusher_lock:
            flusher = _flusher
            if flusher is None or flusher.pid != os.getpid():
                flusher = _flusher = _WorkerFlusher()
    return flusher


_sigterm_pid = 0


def _reset_after_fork() -> None:
    global _flusher_lock
    _flusher_lock = threading.Lock()  # another thread may have held it at the fork
    if _reporter is not None:
        _reporter.after_fork()
    # A process forked from a pool worker (AI-Scientist-v2's Interpreter runs each node's
    # code in one) is not a pool worker: it gets SIGTERM back as it was. Ours would make
    # it flush a pipeline it does not use, and a SIGTERM taken by one of its threads while
    # the main thread blocks in a read would never run the handler: the Interpreter then
    # waits 2 s and SIGKILLs it, for every node. A child that becomes a pool worker in
    # turn installs the handler again with its first task.
    try:
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except (ValueError, OSError):
        pass


os.register_at_fork(after_in_child=_reset_after_fork)


def flush_on_sigterm() -> None:
    """A stage's end kills its pool workers with SIGTERM (AI-Scientist-v2 terminates
    them). A worker ends its open spans (as closed by shutdown) and flushes, then dies
    by the signal as it would have. A worker that handles SIGTERM itself is left alone."""
    global _sigterm_pid
    if _sigterm_pid == os.getpid() or threading.current_thread() is not threading.main_thread():
        return
    _sigterm_pid = os.getpid()
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):
        return
    if previous not in (signal.SIG_DFL, None):
        return
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):
        pass


def _on_sigterm(signum: int, frame: Any) -> None:
    # the same bound as a task's flush: a worker killed in the middle of a task on a
    # busy machine still delivers what the task emitted so far
    timeout = max(_flush_timeout(), 2.0)
    thread = threading.Thread(target=_flush_now, args=(timeout,), name="otel_ai-sigterm-flush", daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def instrument_process_pool(module: Any) -> None:
    """Wrap ``ProcessPoolExecutor.submit`` of ``concurrent.futures.process`` (once)."""
    executor = getattr(module, "ProcessPoolExecutor", None)
    if executor is None or getattr(executor.submit, "_otel_ai_wrapped", False):
        return
    original = executor.submit

    def submit(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        try:
            carrier = _current_carrier()
        except Exception:  # noqa: BLE001
            carrier = None
        carrier = _with_task_context(carrier, fn, args, kwargs)
        if carrier is None and not os.environ.get(CHANNEL_ENV):
            return original(self, fn, *args, **kwargs)
        return original(self, call_in_context, carrier, fn, args, kwargs)

    submit._otel_ai_wrapped = True  # type: ignore[attr-defined]
    submit._otel_ai_original = original  # type: ignore[attr-defined]
    submit.__wrapped__ = original  # type: ignore[attr-defined]
    submit.__doc__ = original.__doc__
    executor.submit = submit


def uninstrument_process_pool(module: Any) -> None:
    executor = getattr(module, "ProcessPoolExecutor", None)
    original = getattr(getattr(executor, "submit", None), "_otel_ai_original", None)
    if executor is not None and original is not None:
        executor.submit = original
