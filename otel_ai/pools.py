"""Process-pool tasks under ``otel-ai run`` (or the AI-Scientist instrumentor).

A task submitted to a ``ProcessPoolExecutor`` carries the submitter's trace context (and
what the task hooks add, e.g. the stage it was submitted in) to the worker. The worker
records what the task handed off, then hands its telemetry to the exporters in the
background once the task returns (what goes over OTLP and is not delivered yet is
written to its spool first), and flushes what is left when it exits or is killed with
SIGTERM (as a pool's workers are when a stage ends), without waiting out a slow
collector: what it has not taken after :data:`EXIT_GRACE_S` stays spooled.

Nothing here imports OpenTelemetry at import time: the bootstrap of every Python child
imports this module when it imports ``concurrent.futures.process``; the OpenTelemetry API
is imported where a pool task first needs it, by which time the process uses it anyway.

A ``multiprocessing`` child of a pool that is not instrumented flushes the same way at
its exit and SIGTERM once it builds a pipeline (:func:`flush_in_multiprocessing_child`).

What must happen before a worker's last flush (ending the spans still open) is a hook
registered by the layer that owns those spans (:func:`add_exit_hook`).
"""

from __future__ import annotations

import contextvars
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .propagation import CHANNEL_ENV, WORKER_FLUSH_TIMEOUT_ENV, drain_at_exit


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


# the same, in the OpenTelemetry context of the task: it follows the task's calls to the
# threads that record them under the caller's context (the EventEmitter's handoff)
TASK_CARRIER_KEY = "otel_ai.task_carrier"


def task_carrier() -> Mapping[str, str]:
    """What the running pool task was submitted with (empty outside a pool task)."""
    carrier = _task_carrier.get()
    if carrier is None and "opentelemetry.context" in sys.modules:
        from opentelemetry import context

        value = context.get_value(TASK_CARRIER_KEY)
        carrier = value if isinstance(value, Mapping) else None
    return carrier or {}


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

            extracted = TraceContextTextMapPropagator().extract(carrier)
            token = context.attach(context.set_value(TASK_CARRIER_KEY, carrier, extracted))
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
    the network: the events it handed off are recorded first. The pool may kill this worker as soon as the stage ends (SIGTERM, or
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
        handoff = sys.modules.get("otel_ai.export.handoff")
        if handoff is not None:
            # the task's events recorded (what the stage's owner counts when the
            # results are in): none are waiting unless it called the EventEmitter
            handoff.drain(timeout)
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


# how long a leaving worker waits for the collector to take what it spooled
EXIT_GRACE_S = 0.5

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
        drain_at_exit()


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
        pipeline = providers.current_pipeline()
        if pipeline is None or pipeline.local:
            providers.force_flush(timeout)  # files: written within the flush timeout
            return
        # over OTLP: on disk first (what the collector has not taken yet, in this
        # worker's spool), without waiting on the network; then a short grace for the
        # collector. What it did not take stays spooled, for ``otel-ai run`` (or, without
        # it, the process that outlives this worker, at its exit) to deliver once this
        # worker is gone. A pool's shutdown joins its workers: a slow collector must not
        # hold them, nor the interpreter's exit after this (a spawned worker's atexit).
        providers.secure(timeout)
        grace = min(timeout, EXIT_GRACE_S)
        providers.limit_exit_wait(grace)
        providers.force_flush(grace)
        providers.spool_undelivered()
    except Exception:  # noqa: BLE001
        pass


class _WorkerFlusher:
    """One per worker process: a daemon thread that flushes after each task, the exit
    finalizer and the SIGTERM handler that flush what is left."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._wake = threading.Event()
        self._flushing = threading.Lock()  # held by the thread while it flushes
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="otel_ai-worker-flush", daemon=True)
        self._thread.start()
        # a pool worker has imported it; importing it here would cost other processes ~10 ms
        util = sys.modules.get("multiprocessing.util")
        try:
            if util is not None:
                util.Finalize(None, self.at_exit, exitpriority=100)  # before the pool's own (<= 10)
        except Exception:  # noqa: BLE001
            pass
        # Python 3.12+ runs the finalizers from an atexit handler registered before the
        # pipeline's own: the pipeline's shutdown comes first there, and must find this
        # thread's flushing over (a flusher exists only once the pipeline does)
        providers = sys.modules.get("otel_ai.export.providers")
        if providers is not None:
            providers.before_shutdown(self.before_shutdown)
        flush_on_sigterm()

    def nudge(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._flushing:
                if self._closed:
                    return
                providers = sys.modules.get("otel_ai.export.providers")
                if providers is None:
                    continue
                try:
                    if getattr(providers.current_pipeline(), "local", False):
                        # files: one signal after the other, on this thread (it may wait)
                        providers.flush_in_turn(_flush_timeout())
                    else:
                        # over OTLP: each signal's delivery waited for in parallel
                        providers.force_flush(_flush_timeout())
                except Exception:  # noqa: BLE001
                    pass

    def close(self, wait: float) -> None:
        """No flush of this thread from now on, and the one under way finished (within
        ``wait``): the exporters are shut down after a worker's last flush, and an export
        of this thread still writing then found them closed (its metrics counted as lost,
        "Exporter already shutdown" on stderr)."""
        self._closed = True
        if self._flushing.acquire(timeout=max(wait, 0.0)):
            self._flushing.release()

    def at_exit(self) -> None:
        if self.pid == os.getpid():
            self.close(EXIT_GRACE_S)
            _flush_now(_flush_timeout())

    def before_shutdown(self) -> None:
        if self.pid == os.getpid():
            self.close(EXIT_GRACE_S)


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


def flush_in_multiprocessing_child() -> None:
    """In a ``multiprocessing`` child, flush as a pool worker does at its exit and at
    SIGTERM (within OTEL_AI_WORKER_FLUSH_TIMEOUT, spooling what the collector has not
    taken): such a child leaves by ``os._exit``, and atexit never runs there. For pools
    that are not instrumented (outside ``otel-ai run``); called when its pipeline is built."""
    process = sys.modules.get("multiprocessing.process")
    if process is not None and process.parent_process() is not None:
        _worker_flusher()


_sigterm_pid = 0


def _reset_after_fork() -> None:
    global _flusher_lock
    _flusher_lock = threading.Lock()  # another thread may have held it at the fork
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
