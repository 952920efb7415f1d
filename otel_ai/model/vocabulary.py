"""Dict events (the seed's CloudEvents ``data``, AI-Scientist-v2's ``event_callback``)
onto the model.

:func:`dispatch` is the one place that reads the seed's field names (``stage``, ``desc``,
``node_id``, ``code_size_bytes``, ``traceback``...). The :class:`otel_ai.EventEmitter`
methods and :func:`otel_ai.event_callback` both go through it, so the two front doors
produce the same telemetry as the context managers they drive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.trace import SpanContext

from .. import semconv
from ..export import handoff
from ..propagation import wrapped_run
from .coerce import identifier, safe_str
from .phases import Paper, Validation
from .pooled import carried_run, publish_run, published_run
from .registry import registry
from .run import Run

_Handler = Callable[[Run, dict[str, Any]], None]


def _pop(data: dict[str, Any], *names: str) -> Any:
    """The first of ``names`` present in ``data`` (removed from it), else None."""
    found = None
    for name in names:
        if name in data:
            value = data.pop(name)
            if found is None:
                found = value
    return found


def _stage_name(data: dict[str, Any]) -> str | None:
    return identifier(_pop(data, "stage", "stage_name", semconv.STAGE_NAME))


def wrapper_run(run_id: str | None) -> Run | None:
    """Under ``otel-ai run``, the wrapper's run (attached once per process) when
    ``run_id`` names it or names nothing."""
    wrapped = wrapped_run()
    run_id = identifier(run_id)
    if wrapped is None or (run_id and run_id != wrapped[0]):
        return None
    handoff.drain()  # outside the lock: a handed-off call may need it
    with _attach_lock:
        run = registry.lookup(wrapped[0])
        if run is None or not run.attached:
            run = Run(wrapped[0], attach=wrapped[1])
        return run


_attach_lock = threading.Lock()


def open_run(
    run_id: str | None,
    *,
    pod_id: Any = None,
    gpu: Any = None,
    region: Any = None,
    image: Any = None,
    attributes: Mapping[str, Any] | None = None,
) -> Run:
    """A new run for the context-manager front door (the wrapper's, when wrapped)."""
    wrapper = wrapper_run(run_id)
    if wrapper is not None:
        return wrapper
    run = Run(run_id, pod_id=pod_id, gpu=gpu, region=region, image=image, attributes=attributes)
    publish_run(run)
    return run


def find_run(run_id: str | None, *, pod_id: str | None = None) -> Run:
    """The run of that id (or the current one); started implicitly when unknown, so an
    event for a run never started is still recorded, under a synthesized run span."""
    wrapper = wrapper_run(run_id)
    if wrapper is not None:
        return wrapper
    run_id = identifier(run_id)
    if run_id:
        run = registry.get(run_id)
        if run is not None:
            return run
    else:
        run = registry.current()
        if run is not None:
            return run
    # a pool task's: the run it was submitted in; else the run a parent process named
    # for the processes it starts (a spawned worker inherits nothing else)
    carried = carried_run(run_id) or published_run(run_id)
    if carried is not None:
        return attach_run(*carried)
    return Run(run_id, pod_id=pod_id, synthesized=True)


def attach_run(run_id: str, context: SpanContext) -> Run:
    """The run of that id another process owns, attached here once (again once the
    attached one ended here)."""
    handoff.drain()  # outside the lock: a handed-off call may need it
    with _attach_lock:
        run = registry.lookup(run_id)
        if run is None or run.ended:
            run = Run(run_id, attach=context)
        return run


def start_run(
    run_id: str | None,
    *,
    pod_id: Any = None,
    gpu: Any = None,
    region: Any = None,
    image: Any = None,
    attributes: Mapping[str, Any] | None = None,
) -> Run:
    """``ai.run.started`` by id: a new run, or a duplicate recorded on the open one."""
    wrapper = wrapper_run(run_id)
    if wrapper is not None:
        return wrapper
    run_id = identifier(run_id)
    existing = registry.get(run_id) if run_id else None
    if existing is not None and not existing.ended:
        existing._duplicate(semconv.RUN_STARTED, attributes)
        return existing
    run = Run(run_id, pod_id=pod_id, gpu=gpu, region=region, image=image, attributes=attributes)
    publish_run(run)
    return run


# --- handlers: one per event type; ``data`` is a private copy they may consume -----------
def _run_heartbeat(run: Run, data: dict[str, Any]) -> None:
    run.heartbeat()


def _run_completed(run: Run, data: dict[str, Any]) -> None:
    run.complete(_pop(data, "total_duration_s", "duration_s", semconv.RUN_DURATION_S))


def _run_failed(run: Run, data: dict[str, Any]) -> None:
    run.fail(
        stage=_stage_name(data),
        error_type=_pop(data, "code", "error_type", "type", semconv.ERROR_TYPE),
        message=_pop(data, "message", "error", semconv.EXCEPTION_MESSAGE),
        stacktrace=_pop(data, "traceback", "stacktrace", semconv.EXCEPTION_STACKTRACE),
        retryable=_pop(data, "retryable", semconv.RUN_RETRYABLE),
    )


def _run_canceled(run: Run, data: dict[str, Any]) -> None:
    stage = _stage_name(data)
    run.cancel(_pop(data, "reason", "cancel_reason", semconv.RUN_CANCEL_REASON), stage=stage)


def _stage_started(run: Run, data: dict[str, Any]) -> None:
    run.stage(_stage_name(data), _pop(data, "desc", "description", semconv.STAGE_DESCRIPTION), **data)
    data.clear()


def _stage_progress(run: Run, data: dict[str, Any]) -> None:
    stage = run.find_stage(_stage_name(data))
    stage.progress(
        iteration=_pop(data, "iteration", semconv.STAGE_ITERATION),
        max_iterations=_pop(data, "max_iterations", semconv.STAGE_MAX_ITERATIONS),
        good_nodes=_pop(data, "good_nodes", semconv.STAGE_NODES_GOOD),
        buggy_nodes=_pop(data, "buggy_nodes", semconv.STAGE_NODES_BUGGY),
        total_nodes=_pop(data, "total_nodes", semconv.STAGE_NODES_TOTAL),
        best_metric=_pop(data, "best_metric", semconv.STAGE_BEST_METRIC),
        eta_s=_pop(data, "eta_s", semconv.STAGE_ETA_S),
        progress=_pop(data, "progress", semconv.STAGE_PROGRESS_VALUE),
        **data,
    )
    data.clear()


def _stage_metric(run: Run, data: dict[str, Any]) -> None:
    stage = run.find_stage(_stage_name(data))
    stage.metric(
        str(_pop(data, "name", semconv.METRIC_NAME)), _pop(data, "value", semconv.METRIC_VALUE), **data
    )
    data.clear()


def _stage_completed(run: Run, data: dict[str, Any]) -> None:
    run.find_stage(_stage_name(data)).complete(_pop(data, "duration_s", semconv.STAGE_DURATION_S))


def _node(run: Run, data: dict[str, Any]) -> Any:
    stage = run.find_stage(_stage_name(data))
    return stage.find_node(_pop(data, "node_id", "id", semconv.NODE_ID))


def _node_created(run: Run, data: dict[str, Any]) -> None:
    stage = run.find_stage(_stage_name(data))
    stage.node(
        _pop(data, "node_id", "id", semconv.NODE_ID),
        parent_id=_pop(data, "parent_id", semconv.NODE_PARENT_ID),
        kind=_pop(data, "kind", "node_type", semconv.NODE_KIND),
        **data,
    )
    data.clear()


def _node_code_generated(run: Run, data: dict[str, Any]) -> None:
    node = _node(run, data)
    node.code_generated(
        _pop(data, "code"),
        size_bytes=_pop(data, "code_size_bytes", "code_size", semconv.NODE_CODE_SIZE),
        sha256=_pop(data, "sha256", "code_sha256", semconv.NODE_CODE_SHA256),
        **data,
    )
    data.clear()


def _node_executing(run: Run, data: dict[str, Any]) -> None:
    _node(run, data).executing(_pop(data, "purpose", semconv.NODE_EXEC_PURPOSE), **data)
    data.clear()


def _node_completed(run: Run, data: dict[str, Any]) -> None:
    node = _node(run, data)
    summary = _pop(data, "summary")
    if isinstance(summary, Mapping):
        # AI-Scientist-v2's node summary: carry what it says about the node's outcome
        for key in ("is_buggy", "metric", "exec_time_s", "exc_type"):
            if key in summary and key not in data:
                data[key] = summary[key]
    if summary is not None:
        data[semconv.NODE_SUMMARY] = summary
    node.completed(
        is_buggy=_pop(data, "is_buggy", semconv.NODE_IS_BUGGY),
        metric=_pop(data, "metric", semconv.NODE_METRIC),
        exec_time_s=_pop(data, "exec_time_s", "exec_time", semconv.NODE_EXEC_TIME_S),
        exc_type=_pop(data, "exc_type", semconv.NODE_EXC_TYPE),
        **data,
    )
    data.clear()


def _node_selected_best(run: Run, data: dict[str, Any]) -> None:
    stage = run.find_stage(_stage_name(data))
    stage.selected_best(
        str(_pop(data, "node_id", "id", semconv.NODE_ID)), _pop(data, "metric", semconv.NODE_METRIC), **data
    )
    data.clear()


def _run_log(run: Run, data: dict[str, Any]) -> None:
    message = _pop(data, "message", "msg", "line", "body")
    level = _pop(data, "level", "severity")
    source = _pop(data, "source", semconv.LOG_SOURCE)
    run.log("" if message is None else message, level, source, **data)
    data.clear()


def _artifact_detected(run: Run, data: dict[str, Any]) -> None:
    run.artifact_detected(
        str(_pop(data, "path", semconv.ARTIFACT_PATH)),
        _pop(data, "type", semconv.ARTIFACT_TYPE),
        _pop(data, "size_bytes", "bytes", semconv.ARTIFACT_SIZE),
        **data,
    )
    data.clear()


def _artifact_registered(run: Run, data: dict[str, Any]) -> None:
    run.artifact_registered(
        str(_pop(data, "key", semconv.ARTIFACT_KEY)),
        size_bytes=_pop(data, "bytes", "size_bytes", semconv.ARTIFACT_SIZE),
        sha256=_pop(data, "sha256", semconv.ARTIFACT_SHA256),
        content_type=_pop(data, "content_type", semconv.ARTIFACT_CONTENT_TYPE),
        kind=_pop(data, "kind", semconv.ARTIFACT_KIND),
        uri=_pop(data, "uri", semconv.ARTIFACT_URI),
        **data,
    )
    data.clear()


def _paper_started(run: Run, data: dict[str, Any]) -> None:
    run.paper()


def _paper_generated(run: Run, data: dict[str, Any]) -> None:
    paper = run.open_child(Paper) or run.paper()
    paper.generated(_pop(data, "artifact_key", semconv.ARTIFACT_KEY), **data)
    data.clear()


def _validation_started(run: Run, data: dict[str, Any]) -> None:
    run.validation(
        _pop(data, "model", semconv.VALIDATION_MODEL),
        **_rename(data, {"rubric_version": semconv.VALIDATION_RUBRIC_VERSION}),
    )
    data.clear()


def _validation_completed(run: Run, data: dict[str, Any]) -> None:
    validation = run.open_child(Validation) or run.validation(_pop(data, "model", semconv.VALIDATION_MODEL))
    validation.completed(
        _pop(data, "verdict", semconv.VALIDATION_VERDICT),
        _pop(data, "scores"),
        _pop(data, "notes", semconv.VALIDATION_NOTES),
        **data,
    )
    data.clear()


def _rename(data: dict[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    return {names.get(key, key): value for key, value in data.items()}


HANDLERS: dict[str, _Handler] = {
    semconv.RUN_HEARTBEAT: _run_heartbeat,
    semconv.RUN_COMPLETED: _run_completed,
    semconv.RUN_FAILED: _run_failed,
    semconv.RUN_CANCELED: _run_canceled,
    semconv.STAGE_STARTED: _stage_started,
    semconv.STAGE_PROGRESS: _stage_progress,
    semconv.STAGE_METRIC: _stage_metric,
    semconv.STAGE_COMPLETED: _stage_completed,
    semconv.NODE_CREATED: _node_created,
    semconv.NODE_CODE_GENERATED: _node_code_generated,
    semconv.NODE_EXECUTING: _node_executing,
    semconv.NODE_COMPLETED: _node_completed,
    semconv.NODE_SELECTED_BEST: _node_selected_best,
    semconv.RUN_LOG: _run_log,
    semconv.ARTIFACT_DETECTED: _artifact_detected,
    semconv.ARTIFACT_REGISTERED: _artifact_registered,
    semconv.PAPER_STARTED: _paper_started,
    semconv.PAPER_GENERATED: _paper_generated,
    semconv.VALIDATION_STARTED: _validation_started,
    semconv.VALIDATION_COMPLETED: _validation_completed,
}


def dispatch(event_type: str, run_id: str | None, data: Mapping[str, Any] | None) -> Run:
    """Apply one dict event to the model; returns the run it concerned."""
    payload: dict[str, Any] = (
        dict(data) if isinstance(data, Mapping) else ({} if data is None else {"data": data})
    )
    run_id = identifier(run_id) or identifier(payload.pop("run_id", None))
    payload.pop("run_id", None)
    event_type = event_type if type(event_type) is str else safe_str(event_type)
    if event_type == semconv.RUN_STARTED:
        return start_run(
            run_id,
            pod_id=_pop(payload, "pod_id", semconv.POD_ID),
            gpu=_pop(payload, "gpu", "gpu_name", semconv.GPU_NAME),
            region=_pop(payload, "region", semconv.CLOUD_REGION),
            image=_pop(payload, "image", semconv.CONTAINER_IMAGE_NAME),
            attributes=payload,
        )
    run = find_run(run_id)
    if event_type == semconv.EXPERIMENT_NODE_COMPLETED and payload.get("node_id") is not None:
        event_type = semconv.NODE_COMPLETED
    handler = HANDLERS.get(event_type)
    if handler is None:
        run.event(event_type, payload, payload.pop("level", "info") if "level" in payload else "info")
    else:
        handler(run, payload)
    return run
