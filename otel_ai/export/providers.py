"""Tracer, logger and meter providers: built once per process by :func:`configure`.

With an OTLP endpoint configured (OTEL_EXPORTER_OTLP_ENDPOINT or a per-signal variant)
data goes over OTLP/gRPC or OTLP/HTTP; without one it goes to the embedded default
(:mod:`otel_ai.export.files`). OTEL_TRACES_EXPORTER / OTEL_LOGS_EXPORTER /
OTEL_METRICS_EXPORTER=none turn a signal off (nothing exported, spooled or written for
it), ``console`` prints it on stdout with the SDK's console exporter. Every span and log exporter is wrapped so secrets are
redacted before export. :func:`shutdown` spends one deadline across all providers.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from opentelemetry._logs import Logger, NoOpLogger
from opentelemetry.metrics import Meter, NoOpMeter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import NoOpTracer, Tracer

from .. import semconv
from .._internal import report_internal_error
from ..config import SIGNALS, Settings, resolve
from ..metrics import start as start_metrics
from ..metrics.genai import TokenUsageProcessor
from ..metrics.gpu import detect_gpus
from ..metrics.instruments import use_meter
from ..pools import flush_in_multiprocessing_child
from ..propagation import CHANNEL_ENV, wrapped_run
from ..version import __version__
from . import handoff
from .delivering import (
    DeliveringBatchLogRecordProcessor,
    DeliveringBatchSpanProcessor,
    schedule_delay_millis,
)
from .files import JsonlLogExporter, JsonlMetricExporter, JsonlSpanExporter
from .forked import ProcessLoggerProvider, ProcessMeterProvider, ProcessMetricReader
from .global_providers import forget_globals, install_globals
from .ids import id_generator
from .live import LiveRunMarker
from .losses import unreported_losses
from .redacting import RedactingLogExporter, RedactingSpanExporter
from .resource import build_resource, forked_resource, resource_environment
from .sanitize import RedactingMetricExporter
from .tracers import ProcessTracerProvider

if TYPE_CHECKING:
    from .outbox import Outbox

logger = logging.getLogger("otel_ai")

DEFAULT_SHUTDOWN_TIMEOUT_S = 10.0
# Our spans keep at most 16 event names x (8 first + 64 latest) events themselves
# (otel_ai.model.spans); the SDK limit sits above that so it never drops silently.
SPAN_EVENT_LIMIT = 2048
SPAN_LINK_LIMIT = 1024


@dataclass
class Pipeline:
    """What :func:`configure` built for this process."""

    settings: Settings
    resource: Resource | None
    tracer_provider: TracerProvider | None
    logger_provider: LoggerProvider | None
    meter_provider: MeterProvider | None
    tracer: Tracer
    logger: Logger
    meter: Meter
    # what :func:`secure` hands over and writes down: the batch processors, the metric
    # readers, the OTLP signals' deliveries (None: no signal goes over OTLP)
    batching: tuple[DeliveringBatchSpanProcessor | DeliveringBatchLogRecordProcessor, ...] = ()
    readers: tuple[PeriodicExportingMetricReader, ...] = ()
    outbox: Outbox | None = None
    pid: int = field(default_factory=os.getpid)  # the process it was built in
    # the resource's variables when it was built (a forked child reuses it while unchanged)
    resource_env: tuple[str | None, ...] = field(default_factory=resource_environment)

    @property
    def disabled(self) -> bool:
        return self.tracer_provider is None

    @property
    def local(self) -> bool:
        """No signal goes over the network (the embedded default's files, the console,
        off): a flush never waits for a collector."""
        return self.outbox is None


_lock = threading.RLock()
_pipeline: Pipeline | None = None
_before_shutdown: list[Callable[[], None]] = []
_atexit_registered = False
# in a forked child that has not emitted yet: the parent's pipeline, built anew on first use
_forked_from: Pipeline | None = None


def configure(**settings: Any) -> Pipeline:
    """Set up telemetry for this process (see :mod:`otel_ai.config` for the settings).

    Calling it again is harmless: the first configuration stays, and a warning says so
    when the new arguments differ.
    """
    global _pipeline, _atexit_registered
    with _lock:
        if _pipeline is None and _forked_from is not None:
            _build_after_fork()
            _shutdown_at_child_exit()
        if _pipeline is not None:
            if settings and resolve(**settings) != _pipeline.settings:
                logger.warning("otel_ai.configure() called again with other settings; keeping the first")
            return _pipeline
        resolved = resolve(**settings)
        _pipeline = _build(resolved)
        if resolved.system_metrics and not _pipeline.disabled and resolved.metrics_exporter != "none":
            # here, not in _build: a forked child does not sample its parent's tree again
            start_metrics(_pipeline.meter)
        if not _atexit_registered:
            atexit.register(_shutdown_at_exit)
            _atexit_registered = True
        _shutdown_at_child_exit()
        return _pipeline


def get_pipeline() -> Pipeline:
    """The process's pipeline, configured from the environment on first use."""
    pipeline = _pipeline
    return pipeline if pipeline is not None else configure()


def current_pipeline() -> Pipeline | None:
    """The pipeline built so far; None also in a forked child that has emitted nothing
    yet (it has nothing to flush)."""
    return _pipeline


# the metric instruments of otel_ai.metrics are made on this process's meter
use_meter(lambda: get_pipeline().meter)


def _own_telemetry() -> tuple[Meter, Logger] | None:
    """The meter and logger the delivery reports its losses on (none once shut down)."""
    pipeline = _pipeline
    if pipeline is None or pipeline.disabled:
        return None
    return pipeline.meter, pipeline.logger


def before_shutdown(hook: Callable[[], None]) -> None:
    """Run ``hook`` (once per registration) before the providers flush at shutdown."""
    with _lock:
        if hook not in _before_shutdown:
            _before_shutdown.append(hook)


def _build(settings: Settings, previous: Pipeline | None = None) -> Pipeline:
    if settings.disabled:
        return _disabled(settings)
    resource = None
    if (
        previous is not None
        and previous.resource is not None
        and previous.resource_env == resource_environment()
    ):
        resource = forked_resource(previous.resource, previous.pid)
    if resource is None:
        resource = build_resource(settings, detect_gpus())
    outbox = _otlp(settings)
    span_exporter, log_exporter, metric_exporter = _exporters(settings, outbox)
    wrapped = wrapped_run()
    tracer_provider = ProcessTracerProvider(
        resource=resource,
        shutdown_on_exit=False,  # our atexit hook ends open runs first, then flushes
        span_limits=SpanLimits(max_events=SPAN_EVENT_LIMIT, max_links=SPAN_LINK_LIMIT),
        # ids from os.urandom: experiments seed `random`, which the SDK's default draws from
        id_generator=id_generator(settings.id_generator),
        # under `otel-ai run`, a span with no parent, in any thread, joins the run
        default_parent=wrapped[1] if wrapped is not None else None,
    )
    # force_flush waits for delivery too; export every second (see otel_ai.export.durable)
    batching: list[DeliveringBatchSpanProcessor | DeliveringBatchLogRecordProcessor] = []
    if span_exporter is not None:  # None: OTEL_TRACES_EXPORTER=none
        span_processor = DeliveringBatchSpanProcessor(
            RedactingSpanExporter(span_exporter),
            max_queue_size=_queue_size(settings, "OTEL_BSP_MAX_QUEUE_SIZE"),
            schedule_delay_millis=schedule_delay_millis("OTEL_BSP_SCHEDULE_DELAY"),
        )
        tracer_provider.add_span_processor(span_processor)
        batching.append(span_processor)
    if outbox is not None and "traces" in outbox.deliveries:  # spans over OTLP
        tracer_provider.add_span_processor(LiveRunMarker(tracer_provider))  # runs in progress, in Jaeger
    tracer_provider.add_span_processor(TokenUsageProcessor())  # gen_ai.usage.* of any span: metric, totals
    logger_provider = ProcessLoggerProvider(resource=resource, shutdown_on_exit=False)
    if log_exporter is not None:
        log_processor = DeliveringBatchLogRecordProcessor(
            RedactingLogExporter(log_exporter),
            max_queue_size=_queue_size(settings, "OTEL_BLRP_MAX_QUEUE_SIZE"),
            schedule_delay_millis=schedule_delay_millis("OTEL_BLRP_SCHEDULE_DELAY"),
        )
        logger_provider.add_log_record_processor(log_processor)
        batching.append(log_processor)
    readers: list[PeriodicExportingMetricReader] = []
    if metric_exporter is not None:
        readers.append(
            ProcessMetricReader(
                RedactingMetricExporter(metric_exporter),
                export_interval_millis=settings.metric_export_interval,
            )
        )
    meter_provider = ProcessMeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)
    pipeline = Pipeline(
        settings=settings,
        resource=resource,
        tracer_provider=tracer_provider,
        logger_provider=logger_provider,
        meter_provider=meter_provider,
        tracer=tracer_provider.get_tracer(semconv.SCOPE_NAME, __version__),
        logger=logger_provider.get_logger(semconv.SCOPE_NAME, __version__),
        meter=meter_provider.get_meter(semconv.SCOPE_NAME, __version__),
        batching=tuple(batching),
        readers=tuple(readers),
        outbox=outbox,
    )
    install_globals(
        pipeline.tracer_provider,
        pipeline.logger_provider,
        pipeline.meter_provider,
        replacing=None
        if previous is None
        else (previous.tracer_provider, previous.logger_provider, previous.meter_provider),
    )
    return pipeline


def _after_fork_in_child() -> None:
    """A forked child is a process of its own: its own providers, resource (its pid),
    worker threads and files. Spans it inherited stay the parent's to end.

    Built on the child's first use (:func:`get_pipeline`, a span of a tracer taken before
    the fork), not here: a pool worker that emits nothing pays nothing, and one that does
    pays once, off the fork's path."""
    global _pipeline, _lock, _forked_from
    _lock = threading.RLock()  # another thread may have held it at the fork
    previous = _pipeline if _pipeline is not None else _forked_from
    if previous is None or previous.disabled:
        return
    _pipeline = None
    _forked_from = previous
    if isinstance(previous.tracer_provider, ProcessTracerProvider):
        # tracers taken before the fork (module-level ones) build the child's on their next span
        previous.tracer_provider.succeeded_lazily(_successor_tracer_provider)


def _successor_tracer_provider() -> TracerProvider | None:
    return get_pipeline().tracer_provider


def _build_after_fork() -> None:
    """The forked child's own pipeline, from the settings it inherited (under ``_lock``)."""
    global _pipeline, _forked_from
    previous = _forked_from
    if previous is None:
        return
    _forked_from = None
    try:
        _pipeline = _build(previous.settings, previous)
        if (
            isinstance(previous.tracer_provider, ProcessTracerProvider)
            and _pipeline.tracer_provider is not None
        ):
            # tracers taken before the fork (module-level ones) move to the child's provider
            previous.tracer_provider.succeeded_by(_pipeline.tracer_provider)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - the child must go on without telemetry
        logger.warning("otel_ai: could not set up telemetry in a forked child: %s", exc)
        _pipeline = _disabled(previous.settings)


os.register_at_fork(after_in_child=_after_fork_in_child)


def _disabled(settings: Settings) -> Pipeline:
    return Pipeline(
        settings, None, None, None, None, NoOpTracer(), NoOpLogger("otel_ai"), NoOpMeter("otel_ai")
    )


def _queue_size(settings: Settings, sdk_variable: str) -> int | None:
    # the SDK's own variable wins when set; else our (larger) default
    return None if os.environ.get(sdk_variable) else settings.queue_size


def _exporters(
    settings: Settings, outbox: Outbox | None
) -> tuple[SpanExporter | None, LogRecordExporter | None, MetricExporter | None]:
    """Each signal's exporter: durable OTLP, the embedded default's files, the SDK's
    console exporter, or None when the signal is off (OTEL_{SIGNAL}_EXPORTER=none)."""
    directory = settings.data_dir
    files = {"traces": JsonlSpanExporter, "logs": JsonlLogExporter, "metrics": JsonlMetricExporter}
    chosen: dict[str, Any] = {}
    for signal in ("traces", "logs", "metrics"):
        kind = settings.signal_exporter(signal)
        if kind == "none":
            chosen[signal] = None
        elif kind == "console":
            chosen[signal] = _console(signal)
        else:
            chosen[signal] = (outbox and outbox.exporter(signal)) or files[signal](directory)
    return chosen["traces"], chosen["logs"], chosen["metrics"]


def _console(signal: str) -> Any:
    exporters = {"traces": ConsoleSpanExporter, "logs": ConsoleLogRecordExporter}
    return exporters.get(signal, ConsoleMetricExporter)()


def _otlp(settings: Settings) -> Outbox | None:
    """Durable OTLP delivery (spooled, never blocking) for the signals with an endpoint;
    None when no signal has one."""
    if not any(settings.over_otlp(signal) for signal in SIGNALS):
        return None  # the embedded default: its transport, spool and protobuf never loaded
    from .outbox import Outbox

    return Outbox.for_settings(settings, _own_telemetry, lambda: os.environ.get(CHANNEL_ENV))


def force_flush(timeout: float = DEFAULT_SHUTDOWN_TIMEOUT_S) -> bool:
    """Export everything buffered so far, within ``timeout`` seconds in all (each
    provider on a thread of its own: one stuck on a slow collector or disk does not hold
    the caller past the deadline)."""
    return _flush(timeout, in_turn=False)


def flush_in_turn(timeout: float) -> bool:
    """:func:`force_flush`, one provider after the other on the calling thread (for one
    that may wait, writing locally, where three threads cost more than the flush)."""
    return _flush(timeout, in_turn=True)


def _flush(timeout: float, *, in_turn: bool) -> bool:
    deadline = time.monotonic() + max(timeout, 0.0)
    handoff.drain(timeout)  # the events the front doors handed off first
    pipeline = _pipeline
    if pipeline is None or pipeline.disabled:
        return True
    return _with_deadline(pipeline, max(deadline - time.monotonic(), 0.0), shutdown=False, in_turn=in_turn)


def secure(timeout: float = DEFAULT_SHUTDOWN_TIMEOUT_S) -> bool:
    """Make everything emitted so far outlive this process, without waiting on the
    network: handed to the exporters (files are written then), and what goes over OTLP
    and is not yet delivered written to the spool, which the delivery threads go on
    sending. A process killed afterwards leaves it for ``otel-ai run`` (or
    ``otel-ai recover``) to deliver. Bounded by ``timeout`` (False when it ran out)."""
    deadline = time.monotonic() + max(timeout, 0.0)
    handoff.drain(timeout)  # the events the front doors handed off first
    pipeline = _pipeline
    if pipeline is None or pipeline.disabled:
        return True

    def left() -> int:
        return int(max(deadline - time.monotonic(), 0.0) * 1000)

    ok = True
    for processor in pipeline.batching:
        try:
            ok = processor.hand_over(left()) and ok
        except Exception as exc:  # noqa: BLE001 - never fail the caller for telemetry
            report_internal_error("otel_ai.export.providers.secure", exc)
            ok = False
    for reader in pipeline.readers:
        try:
            reader.collect(timeout_millis=left())
        except Exception as exc:  # noqa: BLE001
            report_internal_error("otel_ai.export.providers.secure", exc)
            ok = False
    spool_undelivered()
    return ok and time.monotonic() <= deadline


def spool_undelivered() -> None:
    """Write what the OTLP signals hold undelivered in memory to the spool, without
    waiting on the network (a process about to die keeps it for a recoverer)."""
    pipeline = _pipeline
    if pipeline is not None and pipeline.outbox is not None:
        pipeline.outbox.secure()


def shutdown(timeout: float = DEFAULT_SHUTDOWN_TIMEOUT_S) -> bool:
    """End open runs, flush and close every provider, all within ``timeout`` seconds.

    Returns False when something could not be flushed in time. A later emit
    re-configures nothing: telemetry after shutdown is dropped.
    """
    global _pipeline
    handoff.drain(timeout)  # the events the front doors handed off, before runs end
    with _lock:
        pipeline = _pipeline
        if pipeline is None:
            return True
        hooks = list(_before_shutdown)
    for hook in hooks:
        try:
            hook()
        except Exception as exc:  # noqa: BLE001 - shutdown must go on
            logger.warning("otel_ai: error while ending open runs at shutdown: %s", exc)
    ok = True if pipeline.disabled else _with_deadline(pipeline, timeout, shutdown=True)
    with _lock:
        if _pipeline is pipeline:
            _pipeline = _disabled(pipeline.settings)
    _say_losses()
    handoff.say_drops()
    return ok


def _say_losses() -> None:
    """One stderr line at exit with the number of items lost, if any were (a full or
    read-only data directory, the spool bound...): never silently."""
    line = unreported_losses()
    if line is None:
        return
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed stderr
        pass


def _with_deadline(pipeline: Pipeline, timeout: float, *, shutdown: bool, in_turn: bool = False) -> bool:
    """Flush (and close) the three providers in parallel (``in_turn``: one after another
    on this thread), all bound by one deadline."""
    deadline = time.monotonic() + max(timeout, 0.0)
    results: dict[str, bool] = {}

    def work(name: str, provider: Any) -> None:
        millis = int(max(deadline - time.monotonic(), 0.0) * 1000)
        try:
            flushed = provider.force_flush(timeout_millis=millis)
            if shutdown:
                if name == "metrics":
                    provider.shutdown(timeout_millis=max(deadline - time.monotonic(), 0.0) * 1000)
                else:
                    provider.shutdown()
            results[name] = flushed is not False
        except Exception as exc:  # noqa: BLE001
            logger.warning("otel_ai: %s flush failed: %s", name, exc)
            results[name] = False

    threads = []
    for name, provider in (
        ("traces", pipeline.tracer_provider),
        ("logs", pipeline.logger_provider),
        ("metrics", pipeline.meter_provider),
    ):
        if provider is None:
            continue
        if in_turn:
            work(name, provider)
            continue
        thread = threading.Thread(
            target=work, args=(name, provider), name=f"otel_ai-flush-{name}", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:
            # at exit, Python 3.12+ starts no new thread ("can't create new thread at
            # interpreter shutdown"): one after another here, within the same deadline
            work(name, provider)
            continue
        threads.append(thread)
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.0))
    done = all(not thread.is_alive() for thread in threads)
    if not done:
        logger.warning("otel_ai: telemetry not fully flushed within %.1f s", timeout)
    return done and all(results.values())


def _shutdown_at_child_exit() -> None:
    """In a ``multiprocessing`` child (a pool worker, fork or spawn), the flush of a pool
    worker at its exit and at SIGTERM (:func:`otel_ai.pools.flush_in_multiprocessing_child`):
    such a child leaves by ``os._exit``, where atexit never runs, so what its last tasks
    emitted was lost when nothing flushed after each task (a pool outside ``otel-ai run``)."""
    try:
        flush_in_multiprocessing_child()
    except Exception as exc:  # noqa: BLE001 - never fail the child for telemetry
        report_internal_error("otel_ai.export.providers.child_exit", exc)


# how long the interpreter's exit may still wait for the collector, once a pool worker's
# exit flush put everything on disk (None: the shutdown deadline)
_exit_wait_s: float | None = None


def limit_exit_wait(seconds: float) -> None:
    """Everything emitted so far is on disk (:func:`secure`): the shutdown at this
    process's exit waits at most ``seconds`` more for the collector."""
    global _exit_wait_s
    _exit_wait_s = max(seconds, 0.0)


def _shutdown_at_exit() -> None:
    timeout = DEFAULT_SHUTDOWN_TIMEOUT_S
    raw = os.environ.get("OTEL_AI_SHUTDOWN_TIMEOUT")
    if raw:
        try:
            timeout = float(raw)
        except ValueError:
            logger.warning("otel_ai: OTEL_AI_SHUTDOWN_TIMEOUT=%r is not a number; using %s", raw, timeout)
    pipeline = _pipeline
    if _exit_wait_s is not None and pipeline is not None and not pipeline.local:
        timeout = min(timeout, _exit_wait_s)
    orphans = _deliver_orphans(time.monotonic() + timeout)
    shutdown(timeout)
    if orphans is not None:
        orphans.join(timeout)


def _deliver_orphans(deadline: float) -> threading.Thread | None:
    """Without ``otel-ai run``, the process that outlives its pool's workers delivers at
    its exit what they left spooled (a worker leaves without waiting out a slow
    collector), alongside its own flush and within the same deadline; a collector that
    refuses is not tried again: the files stay for the next run or ``otel-ai recover``.
    Under ``otel-ai run`` the wrapper does it, and a ``multiprocessing`` child leaves it
    to its parent."""
    pipeline = _pipeline
    if pipeline is None or pipeline.local or wrapped_run() is not None:
        return None
    process = sys.modules.get("multiprocessing.process")
    if process is not None and process.parent_process() is not None:
        return None
    from .spool import deliver_pending  # an OTLP pipeline: loaded with its outbox

    settings = pipeline.settings
    thread = threading.Thread(
        target=partial(deliver_pending, patient=False),
        args=(settings.data_dir, settings, deadline),
        name="otel_ai-spool-orphans",
        daemon=True,
    )
    try:
        thread.start()
    except RuntimeError:  # Python 3.12+ starts no thread at exit: next run, or recover
        return None
    return thread


def reset_for_tests() -> None:
    """Shut down and forget the pipeline and the OTel globals (tests only)."""
    global _pipeline, _exit_wait_s
    shutdown(5.0)
    with _lock:
        _pipeline = None
    _exit_wait_s = None
    forget_globals("traces", "logs", "metrics")


def log_backlog() -> float:
    """How full the log export queue is, 0..1 (0 when unknown): for producers of our own
    (the wrapper's output lines) that may wait for the exporter instead of dropping."""
    pipeline = _pipeline
    if pipeline is None or pipeline.logger_provider is None:
        return 0.0
    try:
        multi = pipeline.logger_provider._multi_log_record_processor
        fill = 0.0
        for processor in multi._log_record_processors:
            batch = getattr(processor, "_batch_processor", None)
            if batch is not None and batch._max_queue_size:
                fill = max(fill, len(batch._queue) / batch._max_queue_size)
        return fill
    except AttributeError:  # another SDK version: no back-pressure, the bound still holds
        return 0.0


def export_ended_span(span: Any) -> None:
    """Send a span built elsewhere (``otel-ai recover`` rebuilds the run span of a dead
    wrapper) through this process's span pipeline: redaction, batching, export."""
    pipeline = get_pipeline()
    if pipeline.tracer_provider is not None:
        pipeline.tracer_provider._active_span_processor.on_end(span)
