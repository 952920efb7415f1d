"""Two event front doors: :class:`EventEmitter` and :func:`event_callback`.

``EventEmitter`` is a drop-in for the seed pod worker's ``CloudEventEmitter``: the same
constructor and methods with the same positional arguments, each returning True and never
raising; nothing is POSTed anywhere, the events become spans and log records exported by
OpenTelemetry. ``event_callback`` takes the ``(event_type, data)`` dicts that
AI-Scientist-v2 hands to its ``event_callback``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import semconv
from ._internal import never_raise
from .export.providers import force_flush, get_pipeline
from .model.events import set_seq
from .model.vocabulary import dispatch, find_run, start_run


class EventEmitter:
    """The seed's ``CloudEventEmitter`` API on OpenTelemetry.

    Args:
        control_plane_url: accepted for compatibility and ignored; telemetry goes where
            the OTEL_EXPORTER_OTLP_* variables say (or to the embedded default).
        source_id: the pod's id; the ``ai.pod.id`` of runs that do not name one.
        image: the container image reported as ``container.image.name``.

    Each run started with :meth:`run_started` is its own trace; several runs one after
    another in one process are several traces.
    """

    def __init__(self, control_plane_url: str | None = None, source_id: str | None = None, *, image: str | None = None) -> None:
        self.control_plane_url = control_plane_url
        self.source_id = source_id
        self.image = image

    @never_raise(default=True)
    def set_seq_counter(self, seq: int) -> None:
        """Continue ``ai.event.seq`` after ``seq`` (the next event gets ``seq + 1``)."""
        set_seq(int(seq))

    @never_raise(default=True)
    def emit(self, event_type: str, run_id: str, data: Mapping[str, Any] | None = None) -> bool:
        """Any event by type name; unknown types are recorded as given."""
        dispatch(event_type, run_id, data)
        return True

    @never_raise(default=True)
    def flush(self, timeout: float = 5.0) -> bool:
        """Export what is buffered now (bounded by ``timeout`` seconds)."""
        force_flush(timeout)
        return True

    # Each named method calls the model directly (the hot path skips the dict
    # translation of emit()); tests check both produce the same telemetry.

    # -- run lifecycle ----------------------------------------------------------------
    @never_raise(default=True)
    def run_started(self, run_id: str, pod_id: str | None = None, gpu: str | None = None, region: str | None = None) -> bool:
        start_run(run_id, pod_id=self.source_id if pod_id is None else pod_id, gpu=gpu, region=region, image=self.image)
        return True

    @never_raise(default=True)
    def run_heartbeat(self, run_id: str) -> bool:
        find_run(run_id).heartbeat()
        return True

    @never_raise(default=True)
    def run_completed(self, run_id: str, total_duration_s: float | None = None) -> bool:
        find_run(run_id).complete(total_duration_s)
        return True

    @never_raise(default=True)
    def run_failed(
        self, run_id: str, stage: str | None, code: str | None, message: str | None, traceback: str | None,
        retryable: bool = False,
    ) -> bool:
        find_run(run_id).fail(stage=stage, error_type=code, message=message, stacktrace=traceback, retryable=retryable)
        return True

    @never_raise(default=True)
    def run_canceled(self, run_id: str, reason: str | None = None, stage: str | None = None) -> bool:
        return self.emit(semconv.RUN_CANCELED, run_id, {"reason": reason, "stage": stage})

    # -- stages -----------------------------------------------------------------------
    @never_raise(default=True)
    def stage_started(self, run_id: str, stage: str, desc: str | None = None) -> bool:
        find_run(run_id).stage(stage, desc)
        return True

    @never_raise(default=True)
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
        find_run(run_id)._get_stage(stage).progress(
            iteration, max_iterations, good_nodes, buggy_nodes, total_nodes, best_metric, eta_s, progress
        )
        return True

    @never_raise(default=True)
    def stage_completed(self, run_id: str, stage: str, duration_s: float | None = None) -> bool:
        find_run(run_id)._get_stage(stage).complete(duration_s)
        return True

    @never_raise(default=True)
    def metric_computed(self, run_id: str, stage: str, name: str, value: Any) -> bool:
        find_run(run_id)._get_stage(stage).metric(name, value)
        return True

    # -- nodes ------------------------------------------------------------------------
    @never_raise(default=True)
    def node_created(self, run_id: str, stage: str, node_id: str, parent_id: str | None = None, kind: str | None = None) -> bool:
        find_run(run_id)._get_stage(stage).node(node_id, parent_id, kind)
        return True

    @never_raise(default=True)
    def node_code_generated(self, run_id: str, stage: str, node_id: str, code_size: int | None = None, code: str | None = None) -> bool:
        find_run(run_id)._get_stage(stage)._get_node(node_id).code_generated(code, size_bytes=code_size)
        return True

    @never_raise(default=True)
    def node_executing(self, run_id: str, stage: str, node_id: str) -> bool:
        find_run(run_id)._get_stage(stage)._get_node(node_id).executing()
        return True

    @never_raise(default=True)
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
        find_run(run_id)._get_stage(stage)._get_node(node_id).completed(is_buggy, metric, exec_time_s, exc_type)
        return True

    @never_raise(default=True)
    def node_selected_best(self, run_id: str, stage: str, node_id: str, metric: Any = None) -> bool:
        find_run(run_id)._get_stage(stage).selected_best(node_id, metric)
        return True

    # -- logs and artifacts -----------------------------------------------------------
    @never_raise(default=True)
    def log(self, run_id: str, message: str, level: str = "info", source: str | None = None) -> bool:
        find_run(run_id).log(message, level, source)
        return True

    @never_raise(default=True)
    def artifact_detected(self, run_id: str, path: str, type: str | None = None, size_bytes: int | None = None) -> bool:
        find_run(run_id).artifact_detected(path, type, size_bytes)
        return True

    @never_raise(default=True)
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
    @never_raise(default=True)
    def paper_started(self, run_id: str) -> bool:
        find_run(run_id).paper()
        return True

    def paper_generated(self, run_id: str, artifact_key: str | None = None) -> bool:
        return self.emit(semconv.PAPER_GENERATED, run_id, {"artifact_key": artifact_key})

    @never_raise(default=True)
    def validation_auto_started(self, run_id: str, model: str | None = None) -> bool:
        find_run(run_id).validation(model)
        return True

    def validation_auto_completed(self, run_id: str, verdict: Any = None, scores: Mapping[str, Any] | None = None, notes: Any = None) -> bool:
        return self.emit(semconv.VALIDATION_COMPLETED, run_id, {"verdict": verdict, "scores": scores, "notes": notes})


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
