"""Three event front doors: :class:`EventEmitter`, :class:`BatchEventEmitter` and
:func:`event_callback`.

``EventEmitter`` is a drop-in for the seed pod worker's ``CloudEventEmitter``: the same
constructor, attributes (``seq_counter``) and methods, taking the same positional and
keyword arguments, each returning True and never raising; nothing is POSTed anywhere,
the events become spans and log records exported by OpenTelemetry. ``BatchEventEmitter``
is a drop-in for the pod worker's second, batching ``EventEmitter(control_plane_url,
pod_id)`` with ``emit(event_type, data, run_id)`` and ``flush()``, which carries the tree
search's events. ``event_callback`` takes the ``(event_type, data)`` dicts that
AI-Scientist-v2 hands to its ``event_callback``.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from . import semconv
from ._internal import handle_internal_errors, never_raise, report_internal_error
from .bootstrap.startup import instrument_ai_scientist_on_import
from .export import handoff
from .export.providers import force_flush, get_pipeline
from .model.events import last_seq, set_seq
from .model.pooled import publish_run
from .model.vocabulary import dispatch, find_run, start_run

_F = TypeVar("_F", bound=Callable[..., Any])


def _binds(signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        return False
    return True


def _seed_method(event_type: str, *, handed_off: bool = False) -> Callable[[_F], _F]:
    """A drop-in method: never raises into the caller (internal errors are reported, as
    :func:`otel_ai._internal.never_raise` does), and a call of a shape the method does not
    take is neither raised nor lost: it is warned about once a minute and recorded as
    ``event_type`` with the arguments it was given, named by position.

    ``handed_off``: the caller's thread only queues the call (:mod:`otel_ai.export.handoff`)
    and gets True at once; the handoff thread records it, in order. The other methods run
    on the caller's thread once what was handed off before them has run."""

    def decorate(fn: _F) -> _F:
        where = fn.__qualname__
        signature = inspect.signature(fn)
        names = [name for name in signature.parameters if name != "self"]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with handle_internal_errors(where):
                try:
                    return fn(*args, **kwargs)
                except TypeError as exc:
                    if not args or _binds(signature, args, kwargs):
                        raise  # a bug of ours, not the caller's call shape
                    # the seed's callers are many: a call of another shape is recorded
                    # faithfully (bounded), never raised into the experiment
                    report_internal_error(
                        f"{where} (a call of an unexpected shape, recorded as {event_type})", exc
                    )
                _record_bad_call(event_type, names, args[1:], kwargs)
            return True

        if handed_off:

            @functools.wraps(fn)
            def hand_off(*args: Any, **kwargs: Any) -> Any:
                try:
                    get_pipeline()  # configured here once: its exit flush is registered
                    handoff.submit(wrapper, args, kwargs)
                except Exception:  # noqa: BLE001 - no thread (interpreter exit): record it here
                    return wrapper(*args, **kwargs)
                return True

            return cast(_F, hand_off)

        @functools.wraps(fn)
        def in_order(*args: Any, **kwargs: Any) -> Any:
            handoff.drain()
            return wrapper(*args, **kwargs)

        return cast(_F, in_order)

    return decorate


@never_raise()
def _record_bad_call(
    event_type: str, names: list[str], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    data: dict[str, Any] = dict(zip(names, args, strict=False))
    if len(args) > len(names):
        data["args"] = [repr(value)[:1024] for value in args[len(names) :]]
    data.update(kwargs)
    event = data.pop("event_type", None) if event_type == "" else event_type
    run_id = data.pop("run_id", None)
    payload = data.pop("data", None) if event_type == "" else None
    if isinstance(payload, Mapping):
        data = {**payload, **data}
    dispatch(
        str(event or "unknown"), run_id if run_id is None or isinstance(run_id, str) else str(run_id), data
    )


def _instrumentor_active() -> bool:
    """Whether the AI-Scientist instrumentor makes the node spans in this process."""
    module = sys.modules.get("otel_ai.instrumentation")
    return bool(module is not None and module.AIScientistInstrumentor().is_instrumented_by_opentelemetry)


class EventEmitter:
    """The seed's ``CloudEventEmitter`` API on OpenTelemetry.

    Args:
        control_plane_url: accepted for compatibility and ignored; telemetry goes where
            the OTEL_EXPORTER_OTLP_* variables say (or to the embedded default).
        source_id: the pod's id; the ``ai.pod.id`` of runs that do not name one.
        image: the container image reported as ``container.image.name``.
        instrument: instrument AI-Scientist-v2 when this process imports ``ai_scientist``
            (the default), so that its tree search's stages and nodes, made in this
            process and its pool workers, join the run :meth:`run_started` began instead
            of starting a second one. False leaves ``ai_scientist`` alone.

    Each run started with :meth:`run_started` is its own trace; several runs one after
    another in one process are several traces. Every method takes the seed's arguments,
    by position or by name, returns True and never raises: a call of a shape no method
    takes is logged as a warning and still recorded as the method's event, with the
    arguments it was given.
    """

    def __init__(
        self,
        control_plane_url: str | None = None,
        source_id: str | None = None,
        *,
        image: str | None = None,
        instrument: bool = True,
    ) -> None:
        self.control_plane_url = control_plane_url
        self.source_id = source_id
        self.image = image
        self._instrument = instrument
        if instrument:
            instrument_ai_scientist_on_import()

    # -- the per-process event sequence -------------------------------------------------
    @property
    def seq_counter(self) -> int:
        """The ``ai.event.seq`` of the last event this process emitted (0 before the first).

        Assigning it is :meth:`set_seq_counter`: the sequence only moves forward."""
        handoff.drain()  # the events handed off so far have their numbers
        return last_seq()

    @seq_counter.setter
    def seq_counter(self, value: int) -> None:
        self.set_seq_counter(value)

    def set_seq_counter(self, seq: int) -> None:
        """Continue ``ai.event.seq`` after ``seq`` when ``seq`` is ahead of it (the next event
        gets ``seq + 1``). A ``seq`` behind the sequence changes nothing: ``ai.event.seq``
        never repeats in a process; read :attr:`seq_counter` for where it is."""
        try:
            handoff.drain()  # the events handed off before keep their numbers
            set_seq(int(seq))
        except (TypeError, ValueError, OverflowError) as exc:
            report_internal_error("EventEmitter.set_seq_counter (not a number, ignored)", exc)

    @_seed_method("")
    def emit(self, event_type: str, run_id: str | None = None, data: Mapping[str, Any] | None = None) -> bool:
        """Any event by type name; unknown types are recorded as given. The batching
        emitter's order ``emit(event_type, data, run_id)`` is understood too."""
        if isinstance(run_id, Mapping) and (data is None or isinstance(data, str)):
            run_id, data = data, run_id
        run = dispatch(event_type, run_id, data)
        if event_type == semconv.RUN_STARTED and self._instrument:
            publish_run(run)
        return True

    @never_raise(default=True)
    def flush(self, timeout: float = 5.0) -> bool:
        """Export what is buffered now (bounded by ``timeout`` seconds)."""
        force_flush(timeout)
        return True

    # Each named method calls the model directly (the hot path skips the dict
    # translation of emit()); tests check both produce the same telemetry.

    # -- run lifecycle ----------------------------------------------------------------
    @_seed_method(semconv.RUN_STARTED)
    def run_started(
        self, run_id: str, pod_id: str | None = None, gpu: str | None = None, region: str | None = None
    ) -> bool:
        run = start_run(
            run_id,
            pod_id=self.source_id if pod_id is None else pod_id,
            gpu=gpu,
            region=region,
            image=self.image,
        )
        if self._instrument:
            publish_run(run)
        return True

    @_seed_method(semconv.RUN_HEARTBEAT, handed_off=True)
    def run_heartbeat(self, run_id: str) -> bool:
        find_run(run_id).heartbeat()
        return True

    @_seed_method(semconv.RUN_COMPLETED)
    def run_completed(self, run_id: str, total_duration_s: float | None = None) -> bool:
        find_run(run_id).complete(total_duration_s)
        return True

    @_seed_method(semconv.RUN_FAILED)
    def run_failed(
        self,
        run_id: str,
        stage: str | None = None,
        code: str | None = None,
        message: str | None = None,
        traceback: str | None = None,
        retryable: bool = False,
    ) -> bool:
        """End the run as failed. The seed calls it as ``run_failed(run_id, stage, code,
        message, traceback)`` and as ``run_failed(run_id, "Paper generation failed")``: one
        argument after the run id that names no stage of the run is the message (the
        failed stage is then the current one)."""
        run = find_run(run_id)
        if (
            stage is not None
            and code is None
            and message is None
            and traceback is None
            and str(stage) not in run.stages
        ):
            stage, message = None, stage
        run.fail(stage=stage, error_type=code, message=message, stacktrace=traceback, retryable=retryable)
        return True

    @_seed_method(semconv.RUN_CANCELED)
    def run_canceled(self, run_id: str, reason: str | None = None, stage: str | None = None) -> bool:
        return self.emit(semconv.RUN_CANCELED, run_id, {"reason": reason, "stage": stage})

    # -- stages -----------------------------------------------------------------------
    @_seed_method(semconv.STAGE_STARTED)
    def stage_started(self, run_id: str, stage: str, desc: str | None = None) -> bool:
        find_run(run_id).stage(stage, desc)
        return True

    @_seed_method(semconv.STAGE_PROGRESS, handed_off=True)
    def stage_progress(
        self,
        run_id: str,
        stage: str,
        progress: float | None,
        iteration: int | None,
        max_iterations: int | None,
        good_nodes: int | None,
        buggy_nodes: int | None,
        total_nodes: int | None,
        best_metric: Any = None,
        eta_s: float | None = None,
    ) -> bool:
        find_run(run_id).find_stage(stage).progress(
            iteration, max_iterations, good_nodes, buggy_nodes, total_nodes, best_metric, eta_s, progress
        )
        return True

    @_seed_method(semconv.STAGE_COMPLETED)
    def stage_completed(self, run_id: str, stage: str, duration_s: float | None = None) -> bool:
        find_run(run_id).find_stage(stage).complete(duration_s)
        return True

    @_seed_method(semconv.STAGE_METRIC, handed_off=True)
    def metric_computed(self, run_id: str, stage: str, name: str, value: Any) -> bool:
        find_run(run_id).find_stage(stage).metric(name, value)
        return True

    # -- nodes ------------------------------------------------------------------------
    @_seed_method(semconv.NODE_CREATED, handed_off=True)
    def node_created(
        self, run_id: str, stage: str, node_id: str, parent_id: str | None = None, kind: str | None = None
    ) -> bool:
        find_run(run_id).find_stage(stage).node(node_id, parent_id, kind)
        return True

    @_seed_method(semconv.NODE_CODE_GENERATED, handed_off=True)
    def node_code_generated(
        self, run_id: str, stage: str, node_id: str, code_size: int | None = None, code: str | None = None
    ) -> bool:
        find_run(run_id).find_stage(stage).find_node(node_id).code_generated(code, size_bytes=code_size)
        return True

    @_seed_method(semconv.NODE_EXECUTING, handed_off=True)
    def node_executing(self, run_id: str, stage: str, node_id: str) -> bool:
        find_run(run_id).find_stage(stage).find_node(node_id).executing()
        return True

    @_seed_method(semconv.NODE_COMPLETED, handed_off=True)
    def node_completed(
        self,
        run_id: str,
        stage: str,
        node_id: str,
        is_buggy: bool | None,
        metric: Any,
        exec_time_s: float | None,
        exc_type: str | None = None,
    ) -> bool:
        find_run(run_id).find_stage(stage).find_node(node_id).completed(
            is_buggy, metric, exec_time_s, exc_type
        )
        return True

    @_seed_method(semconv.NODE_SELECTED_BEST, handed_off=True)
    def node_selected_best(self, run_id: str, stage: str, node_id: str, metric: Any = None) -> bool:
        find_run(run_id).find_stage(stage).selected_best(node_id, metric)
        return True

    # -- logs and artifacts -----------------------------------------------------------
    @_seed_method(semconv.RUN_LOG, handed_off=True)
    def log(self, run_id: str, message: str, level: str = "info", source: str | None = None) -> bool:
        find_run(run_id).log(message, level, source)
        return True

    @_seed_method(semconv.ARTIFACT_DETECTED, handed_off=True)
    def artifact_detected(
        self, run_id: str, path: str, type: str | None = None, size_bytes: int | None = None
    ) -> bool:
        find_run(run_id).artifact_detected(path, type, size_bytes)
        return True

    @_seed_method(semconv.ARTIFACT_REGISTERED, handed_off=True)
    def artifact_registered(
        self,
        run_id: str,
        key: str,
        bytes: int | None = None,
        sha256: str | None = None,
        content_type: str | None = None,
        kind: str | None = None,
        uri: str | None = None,
    ) -> bool:
        find_run(run_id).artifact_registered(key, bytes, sha256, content_type, kind, uri)
        return True

    # -- paper and review -------------------------------------------------------------
    @_seed_method(semconv.PAPER_STARTED)
    def paper_started(self, run_id: str) -> bool:
        find_run(run_id).paper()
        return True

    @_seed_method(semconv.PAPER_GENERATED)
    def paper_generated(self, run_id: str, artifact_key: str | None = None) -> bool:
        return self.emit(semconv.PAPER_GENERATED, run_id, {"artifact_key": artifact_key})

    @_seed_method(semconv.VALIDATION_STARTED)
    def validation_auto_started(self, run_id: str, model: str | None = None) -> bool:
        find_run(run_id).validation(model)
        return True

    @_seed_method(semconv.VALIDATION_COMPLETED)
    def validation_auto_completed(
        self, run_id: str, verdict: Any = None, scores: Mapping[str, Any] | None = None, notes: Any = None
    ) -> bool:
        return self.emit(
            semconv.VALIDATION_COMPLETED, run_id, {"verdict": verdict, "scores": scores, "notes": notes}
        )


class BatchEventEmitter:
    """The seed pod worker's second emitter, the batching ``EventEmitter(control_plane_url,
    pod_id)``, on OpenTelemetry: ``emit(event_type, data, run_id)`` and ``flush()``.

    The pod worker hands it the tree search's stream (what AI-Scientist-v2 passes to its
    ``event_callback``: ``ai.run.stage_progress``, ``ai.run.log``,
    ``ai.experiment.node_completed``...), the experiment monitor's events and its own
    ``ai.run.failed`` / ``ai.run.canceled``. Each event is applied at once to the run of
    that id, as :func:`event_callback` does: progress on the stage span, ``ai.run.failed``
    ends the run, ``ai.experiment.node_completed`` completes the node (a node span of its
    own, unless the AI-Scientist instrumentor made that node's span: then it is recorded
    as given on the stage), unknown types are recorded as given. Nothing is batched here
    or POSTed anywhere: OpenTelemetry's processors batch the export.

    Args:
        control_plane_url: accepted for compatibility and ignored.
        pod_id: the pod's id; the ``ai.pod.id`` of runs that do not name one.
        instrument: as for :class:`EventEmitter`.
    """

    batch_size = 50  # the seed's attribute; OpenTelemetry's processors batch the export

    def __init__(
        self, control_plane_url: str | None = None, pod_id: str | None = None, *, instrument: bool = True
    ) -> None:
        self.control_plane_url = control_plane_url
        self.pod_id = pod_id
        self.batch: list[Any] = []  # always empty: nothing waits here for flush()
        self._instrument = instrument
        if instrument:
            instrument_ai_scientist_on_import()

    @_seed_method("")
    def emit(self, event_type: str, data: Mapping[str, Any] | None = None, run_id: str | None = None) -> bool:
        """Apply one event; ``run_id`` defaults to ``data["run_id"]``, else the current run."""
        if isinstance(data, str) and (run_id is None or isinstance(run_id, Mapping)):
            data, run_id = run_id, data  # CloudEventEmitter's order: emit(event_type, run_id, data)
        event_type = str(event_type)
        if (
            event_type == semconv.EXPERIMENT_NODE_COMPLETED
            and isinstance(data, Mapping)
            and data.get("node_id") is not None
            and _instrumentor_active()
        ):
            # the instrumentor made this node's span (in a pool worker, under the search's
            # own stage): keep the summary, as given, rather than a second node span
            payload = {key: value for key, value in data.items() if key not in ("run_id", "node_id", "stage")}
            payload[semconv.NODE_ID] = data.get("node_id")
            payload[semconv.STAGE_NAME] = data.get("stage")
            run = find_run(run_id if run_id is not None else data.get("run_id"))
            run.event(event_type, payload)
            return True
        if run_id is None and isinstance(data, Mapping):
            run_id = data.get("run_id")
        run = dispatch(event_type, run_id if run_id is not None else get_pipeline().settings.run_id, data)
        if event_type == semconv.RUN_STARTED and self._instrument:
            publish_run(run)
        return True

    @never_raise(default=None)
    def flush(self, timeout: float | None = None) -> None:
        """Nothing waits here: every event was handed to OpenTelemetry by :meth:`emit`, and
        its processors export within a second or so, without blocking the caller (the pod
        worker calls this after every tree-search event). With ``timeout``, wait up to that
        many seconds for the export, like :func:`otel_ai.force_flush`."""
        if timeout is not None:
            force_flush(timeout)


@never_raise()
def event_callback(event_type: str, data: Mapping[str, Any] | None = None) -> None:
    """AI-Scientist-v2's ``event_callback(event_type, data)`` on OpenTelemetry.

    The run is ``data["run_id"]``, else OTEL_AI_RUN_ID, else the current run of this
    process. ``ai.experiment.node_completed`` with a ``node_id`` becomes
    ``ai.node.completed``; an unknown type becomes a log-based event of that name.
    Picklable (a module-level function), so it can be handed to process-pool workers.
    """
    run_id = data.get("run_id") if isinstance(data, Mapping) else None
    dispatch(event_type, get_pipeline().settings.run_id if run_id is None else run_id, data)
