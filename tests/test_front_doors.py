"""Every row of SPEC section 2 through each of the three front doors, asserted on what
crossed the wire; and the three doors produce the same telemetry."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Wire

import otel_ai
from otel_ai import semconv
from otel_ai.read import LogRecordData, SpanRecord

STAGE = "1_initial_implementation"
CODE = "import torch\nprint('training')\n"
PLOT_KEY = "runs/{run}/figures/loss.png"


def via_context_managers(run_id: str) -> None:
    with otel_ai.run(run_id, pod_id="pod-7", gpu="NVIDIA H100", region="EU-RO-1") as run:
        run.heartbeat()
        with run.stage(STAGE, description="Initial implementation") as stage:
            with stage.node("n1", kind="draft") as node:
                node.code_generated(CODE)
                with node.executing():
                    pass
                node.completed(is_buggy=False, metric="0.8", exec_time_s=1.5)
            with stage.node("n2", parent_id="n1", kind="debug") as node:
                node.code_generated(CODE)
                with node.executing():
                    pass
                node.completed(is_buggy=True, metric=None, exec_time_s=0.5, exc_type="ValueError")
            stage.progress(2, 10, 1, 1, 2, best_metric="0.8", eta_s=30)
            stage.metric("val_loss", 0.25)
            stage.selected_best("n1", "0.8")
            run.log("hello world", "warning", "experiment.log")
            run.artifact_detected("figures/loss.png", "plot", 2048)
            run.artifact_registered(
                PLOT_KEY.format(run=run_id),
                2048,
                "ab" * 32,
                "image/png",
                "plot",
                uri=f"s3://bucket/{PLOT_KEY.format(run=run_id)}",
            )
        with run.paper() as paper:
            paper.generated(f"runs/{run_id}/paper.pdf")
        with run.validation("gpt-4o-2024-11-20") as review:
            review.completed("pass", {"overall": 0.75, "soundness": 3}, "clear and sound")


def via_event_emitter(run_id: str) -> None:
    e = otel_ai.EventEmitter("http://control-plane.invalid", "pod-7")
    assert e.run_started(run_id, "pod-7", "NVIDIA H100", "EU-RO-1") is True
    assert e.run_heartbeat(run_id) is True
    e.stage_started(run_id, STAGE, "Initial implementation")
    e.node_created(run_id, STAGE, "n1", None, kind="draft")
    e.node_code_generated(run_id, STAGE, "n1", code=CODE)
    e.node_executing(run_id, STAGE, "n1")
    e.node_completed(run_id, STAGE, "n1", False, "0.8", 1.5)
    e.node_created(run_id, STAGE, "n2", "n1", kind="debug")
    e.node_code_generated(run_id, STAGE, "n2", code=CODE)
    e.node_executing(run_id, STAGE, "n2")
    e.node_completed(run_id, STAGE, "n2", True, None, 0.5, "ValueError")
    e.stage_progress(run_id, STAGE, None, 2, 10, 1, 1, 2, "0.8", 30)
    e.metric_computed(run_id, STAGE, "val_loss", 0.25)
    e.node_selected_best(run_id, STAGE, "n1", "0.8")
    e.log(run_id, "hello world", "warning", "experiment.log")
    e.artifact_detected(run_id, "figures/loss.png", "plot", 2048)
    key = PLOT_KEY.format(run=run_id)
    e.artifact_registered(run_id, key, 2048, "ab" * 32, "image/png", "plot", f"s3://bucket/{key}")
    e.stage_completed(run_id, STAGE)
    e.paper_started(run_id)
    e.paper_generated(run_id, f"runs/{run_id}/paper.pdf")
    e.validation_auto_started(run_id, "gpt-4o-2024-11-20")
    e.validation_auto_completed(run_id, "pass", {"overall": 0.75, "soundness": 3}, "clear and sound")
    assert e.run_completed(run_id) is True


def via_event_callback(run_id: str) -> None:
    cb = otel_ai.event_callback
    r = {"run_id": run_id}
    cb("ai.run.started", {**r, "pod_id": "pod-7", "gpu": "NVIDIA H100", "region": "EU-RO-1"})
    cb("ai.run.heartbeat", r)
    cb("ai.run.stage_started", {**r, "stage": STAGE, "desc": "Initial implementation"})
    cb("ai.node.created", {**r, "stage": STAGE, "node_id": "n1", "parent_id": None, "kind": "draft"})
    cb("ai.node.code_generated", {**r, "stage": STAGE, "node_id": "n1", "code": CODE})
    cb("ai.node.executing", {**r, "stage": STAGE, "node_id": "n1"})
    cb(
        "ai.node.completed",
        {**r, "stage": STAGE, "node_id": "n1", "is_buggy": False, "metric": "0.8", "exec_time_s": 1.5},
    )
    cb("ai.node.created", {**r, "stage": STAGE, "node_id": "n2", "parent_id": "n1", "kind": "debug"})
    cb("ai.node.code_generated", {**r, "stage": STAGE, "node_id": "n2", "code": CODE})
    cb("ai.node.executing", {**r, "stage": STAGE, "node_id": "n2"})
    cb(
        "ai.node.completed",
        {
            **r,
            "stage": STAGE,
            "node_id": "n2",
            "is_buggy": True,
            "metric": None,
            "exec_time_s": 0.5,
            "exc_type": "ValueError",
        },
    )
    cb(
        "ai.run.stage_progress",
        {
            **r,
            "stage": STAGE,
            "iteration": 2,
            "max_iterations": 10,
            "good_nodes": 1,
            "buggy_nodes": 1,
            "total_nodes": 2,
            "best_metric": "0.8",
            "eta_s": 30,
        },
    )
    cb("ai.run.stage_metric", {**r, "stage": STAGE, "name": "val_loss", "value": 0.25})
    cb("ai.node.selected_best", {**r, "stage": STAGE, "node_id": "n1", "metric": "0.8"})
    cb("ai.run.log", {**r, "message": "hello world", "level": "warning", "source": "experiment.log"})
    cb("ai.artifact.detected", {**r, "path": "figures/loss.png", "type": "plot", "size_bytes": 2048})
    key = PLOT_KEY.format(run=run_id)
    cb(
        "ai.artifact.registered",
        {
            **r,
            "key": key,
            "bytes": 2048,
            "sha256": "ab" * 32,
            "content_type": "image/png",
            "kind": "plot",
            "uri": f"s3://bucket/{key}",
        },
    )
    cb("ai.run.stage_completed", {**r, "stage": STAGE})
    cb("ai.paper.started", r)
    cb("ai.paper.generated", {**r, "artifact_key": f"runs/{run_id}/paper.pdf"})
    cb("ai.validation.auto_started", {**r, "model": "gpt-4o-2024-11-20"})
    cb(
        "ai.validation.auto_completed",
        {**r, "verdict": "pass", "scores": {"overall": 0.75, "soundness": 3}, "notes": "clear and sound"},
    )
    cb("ai.run.completed", r)


DOORS: dict[str, Callable[[str], None]] = {
    "context_managers": via_context_managers,
    "event_emitter": via_event_emitter,
    "event_callback": via_event_callback,
}

EXPECTED_EVENTS = [
    "ai.run.started",
    "ai.run.heartbeat",
    "ai.run.stage_started",
    "ai.node.created",
    "ai.node.code_generated",
    "ai.node.executing",
    "ai.node.completed",
    "ai.node.created",
    "ai.node.code_generated",
    "ai.node.executing",
    "ai.node.completed",
    "ai.run.stage_progress",
    "ai.run.stage_metric",
    "ai.node.selected_best",
    "ai.artifact.detected",
    "ai.artifact.registered",
    "ai.run.stage_completed",
    "ai.paper.started",
    "ai.paper.generated",
    "ai.validation.auto_started",
    "ai.validation.auto_completed",
    "ai.run.completed",
]


def _by_name(spans: list[SpanRecord]) -> dict[str, list[SpanRecord]]:
    result: dict[str, list[SpanRecord]] = {}
    for span in spans:
        result.setdefault(span.name, []).append(span)
    return result


def _node_span(spans: list[SpanRecord], node_id: str) -> SpanRecord:
    (span,) = [
        s for s in spans if s.name.startswith("ai.node ") and s.attributes.get(semconv.NODE_ID) == node_id
    ]
    return span


@pytest.mark.parametrize("door", DOORS)
def test_every_spec_row_through_each_door(door: str, wire: Wire) -> None:
    run_id = f"run-{door}"
    DOORS[door](run_id)
    spans = wire.spans()
    logs = wire.logs()
    names = _by_name(spans)

    # --- the trace: one run, one stage, two nodes, executions, paper, review --------
    assert Counter(s.name for s in spans) == Counter(
        {
            "ai.run": 1,
            f"ai.stage {STAGE}": 1,
            "ai.node draft": 1,
            "ai.node debug": 1,
            "ai.node.execute": 2,
            "ai.paper": 1,
            "ai.validation": 1,
        }
    )
    (run,) = names["ai.run"]
    (stage,) = names[f"ai.stage {STAGE}"]
    assert {s.trace_id for s in spans} == {run.trace_id}
    assert run.parent_span_id is None
    assert stage.parent_span_id == run.span_id
    n1, n2 = _node_span(spans, "n1"), _node_span(spans, "n2")
    assert n1.parent_span_id == n2.parent_span_id == stage.span_id
    assert {e.parent_span_id for e in names["ai.node.execute"]} == {n1.span_id, n2.span_id}
    assert names["ai.paper"][0].parent_span_id == run.span_id
    assert names["ai.validation"][0].parent_span_id == run.span_id
    assert all(s.attributes[semconv.RUN_ID] == run_id for s in spans)

    # ai.run.started / completed
    assert run.attributes[semconv.POD_ID] == "pod-7"
    assert run.attributes[semconv.GPU_NAME] == "NVIDIA H100"
    assert run.attributes[semconv.CLOUD_REGION] == "EU-RO-1"
    assert run.attributes[semconv.RUN_OUTCOME] == "completed"
    assert run.attributes[semconv.RUN_DURATION_S] >= 0
    assert run.status_code == "OK"
    assert run.events[-1].name == "ai.run.completed"

    # ai.run.stage_started / completed
    assert stage.attributes[semconv.STAGE_NAME] == STAGE
    assert stage.attributes[semconv.STAGE_DESCRIPTION] == "Initial implementation"
    assert stage.attributes[semconv.STAGE_BEST_NODE_ID] == "n1"
    assert (
        stage.attributes[semconv.STAGE_NODES_GOOD],
        stage.attributes[semconv.STAGE_NODES_BUGGY],
        stage.attributes[semconv.STAGE_NODES_TOTAL],
    ) == (1, 1, 2)
    assert stage.attributes[semconv.STAGE_DURATION_S] >= 0

    # stage span events: progress, metric, selected best, artifacts
    stage_events = {e.name: e for e in stage.events}
    progress = stage_events["ai.run.stage_progress"].attributes
    assert progress[semconv.STAGE_PROGRESS_VALUE] == pytest.approx(0.2)
    assert (progress[semconv.STAGE_ITERATION], progress[semconv.STAGE_MAX_ITERATIONS]) == (2, 10)
    assert (
        progress[semconv.STAGE_NODES_GOOD],
        progress[semconv.STAGE_NODES_BUGGY],
        progress[semconv.STAGE_NODES_TOTAL],
    ) == (1, 1, 2)
    assert progress[semconv.STAGE_BEST_METRIC] == "0.8"
    assert progress[semconv.STAGE_ETA_S] == 30
    metric = stage_events["ai.run.stage_metric"].attributes
    assert (metric[semconv.METRIC_NAME], metric[semconv.METRIC_VALUE]) == ("val_loss", 0.25)
    best = stage_events["ai.node.selected_best"].attributes
    assert (best[semconv.NODE_ID], best[semconv.NODE_METRIC]) == ("n1", "0.8")
    assert any(link.span_id == n1.span_id for link in stage.links), "selected best links the node span"
    detected = stage_events["ai.artifact.detected"].attributes
    assert detected == {
        semconv.ARTIFACT_PATH: "figures/loss.png",
        semconv.ARTIFACT_TYPE: "plot",
        semconv.ARTIFACT_SIZE: 2048,
    }
    registered = stage_events["ai.artifact.registered"].attributes
    key = PLOT_KEY.format(run=run_id)
    assert registered == {
        semconv.ARTIFACT_KEY: key,
        semconv.ARTIFACT_URI: f"s3://bucket/{key}",
        semconv.ARTIFACT_SIZE: 2048,
        semconv.ARTIFACT_SHA256: "ab" * 32,
        semconv.ARTIFACT_CONTENT_TYPE: "image/png",
        semconv.ARTIFACT_KIND: "plot",
    }

    # nodes: created, code_generated, completed; parent link; buggy -> ERROR
    assert n1.attributes[semconv.NODE_KIND] == "draft" and semconv.NODE_PARENT_ID not in n1.attributes
    assert n2.attributes[semconv.NODE_PARENT_ID] == "n1"
    assert [(link.trace_id, link.span_id) for link in n2.links] == [(n1.trace_id, n1.span_id)]
    code_event = next(e for e in n1.events if e.name == "ai.node.code_generated")
    assert code_event.attributes[semconv.NODE_CODE_SIZE] == len(CODE.encode())
    assert code_event.attributes[semconv.NODE_CODE_SHA256] == hashlib.sha256(CODE.encode()).hexdigest()
    assert n1.attributes[semconv.NODE_IS_BUGGY] is False
    assert n1.attributes[semconv.NODE_METRIC] == "0.8"
    assert n1.attributes[semconv.NODE_METRIC_VALUE] == 0.8
    assert n1.attributes[semconv.NODE_EXEC_TIME_S] == 1.5
    assert n1.status_code != "ERROR"
    assert n2.attributes[semconv.NODE_IS_BUGGY] is True
    assert n2.attributes[semconv.NODE_EXC_TYPE] == "ValueError"
    assert semconv.NODE_METRIC not in n2.attributes
    assert n2.status_code == "ERROR"

    # paper and validation
    paper = names["ai.paper"][0]
    assert paper.attributes[semconv.ARTIFACT_KEY] == f"runs/{run_id}/paper.pdf"
    review = names["ai.validation"][0]
    assert review.attributes[semconv.VALIDATION_MODEL] == "gpt-4o-2024-11-20"
    assert review.attributes[semconv.VALIDATION_VERDICT] == "pass"
    assert review.attributes["ai.validation.score.overall"] == 0.75
    assert review.attributes["ai.validation.score.soundness"] == 3.0
    assert isinstance(review.attributes["ai.validation.score.soundness"], float)
    assert review.attributes[semconv.VALIDATION_NOTES] == "clear and sound"

    # --- the log-based events ----------------------------------------------------------
    events = [r for r in logs if r.event_name]
    assert [r.event_name for r in events] == EXPECTED_EVENTS
    seqs = [r.attributes[semconv.EVENT_SEQ] for r in logs]
    assert seqs == list(range(1, len(logs) + 1)), "ai.event.seq counts every record of the process"
    for record in events:
        assert record.attributes[semconv.EVENT_NAME] == record.event_name
        assert record.attributes[semconv.RUN_ID] == run_id
        assert record.trace_id == run.trace_id
    concerned = {
        "ai.run.started": run,
        "ai.run.heartbeat": run,
        "ai.run.completed": run,
        "ai.run.stage_started": stage,
        "ai.run.stage_progress": stage,
        "ai.run.stage_metric": stage,
        "ai.run.stage_completed": stage,
        "ai.node.selected_best": stage,
        "ai.artifact.detected": stage,
        "ai.paper.started": paper,
        "ai.paper.generated": paper,
        "ai.validation.auto_started": review,
        "ai.validation.auto_completed": review,
    }
    for record in events:
        if record.event_name in concerned:
            assert record.span_id == concerned[record.event_name].span_id, record.event_name
    node_events = [
        r
        for r in events
        if r.event_name in ("ai.node.created", "ai.node.code_generated", "ai.node.completed")
    ]
    assert [r.span_id for r in node_events] == [n1.span_id] * 3 + [n2.span_id] * 3
    executing = [r for r in events if r.event_name == "ai.node.executing"]
    assert {r.span_id for r in executing} == {s.span_id for s in names["ai.node.execute"]}
    started = events[0].attributes
    assert (started[semconv.POD_ID], started[semconv.GPU_NAME], started[semconv.CLOUD_REGION]) == (
        "pod-7",
        "NVIDIA H100",
        "EU-RO-1",
    )
    completed = events[-1].attributes
    assert completed[semconv.RUN_OUTCOME] == "completed" and completed[semconv.RUN_DURATION_S] >= 0
    assert events[-1].severity_text == "INFO"

    # ai.run.log: a plain record, severity from the level, correlated to the stage
    (plain,) = [r for r in logs if not r.event_name]
    assert plain.body == "hello world"
    assert (plain.severity_text, plain.severity_number) == ("WARN", 13)
    assert plain.attributes[semconv.LOG_SOURCE] == "experiment.log"
    assert plain.attributes[semconv.RUN_ID] == run_id
    assert (plain.trace_id, plain.span_id) == (run.trace_id, stage.span_id)

    # --- search metrics ------------------------------------------------------------
    metrics = wire.latest_metrics()
    nodes = {p.attributes[semconv.NODE_STATUS]: p.value for p in metrics if p.name == semconv.METRIC_NODES}
    assert nodes == {"good": 1, "buggy": 1}
    (gauge,) = [p for p in metrics if p.name == semconv.METRIC_STAGE_PROGRESS]
    assert gauge.value == pytest.approx(0.2)
    assert gauge.attributes == {semconv.RUN_ID: run_id, semconv.STAGE_NAME: STAGE}
    (exec_time,) = [p for p in metrics if p.name == semconv.METRIC_NODE_EXEC_TIME]
    assert (exec_time.count, exec_time.sum, exec_time.unit) == (2, 2.0, "s")
    (best_metric,) = [p for p in metrics if p.name == semconv.METRIC_STAGE_BEST_METRIC]
    assert best_metric.value == 0.8


_VOLATILE = {
    semconv.RUN_ID,
    semconv.RUN_DURATION_S,
    semconv.STAGE_DURATION_S,
    semconv.EVENT_SEQ,
    "ai.node.exec.duration_s",
}


def _shape(spans: list[SpanRecord], logs: list[LogRecordData], run_id: str) -> Any:
    """The run's telemetry with ids, times and durations taken out."""
    mine = [s for s in spans if s.attributes.get(semconv.RUN_ID) == run_id]
    by_id = {s.span_id: s for s in mine}

    def clean(attributes: dict[str, Any]) -> dict[str, Any]:
        return {
            k: (v.replace(run_id, "RUN") if isinstance(v, str) else v)
            for k, v in attributes.items()
            if k not in _VOLATILE
        }

    span_shape = sorted(
        (
            s.name,
            by_id[s.parent_span_id].name if s.parent_span_id in by_id else None,
            s.status_code,
            tuple(sorted(clean(s.attributes).items())),
            tuple((e.name, tuple(sorted(clean(e.attributes).items()))) for e in s.events),
            tuple(by_id[link.span_id].name for link in s.links if link.span_id in by_id),
        )
        for s in mine
    )
    log_shape = [
        (
            r.event_name,
            r.severity_text,
            r.body.replace(run_id, "RUN") if isinstance(r.body, str) else None,
            by_id[r.span_id].name if r.span_id in by_id else None,
            tuple(sorted(clean(r.attributes).items())),
        )
        for r in logs
        if r.attributes.get(semconv.RUN_ID) == run_id
    ]
    return span_shape, log_shape


def test_three_doors_produce_identical_telemetry(http_wire: Wire) -> None:
    for door, emit in DOORS.items():
        emit(f"same-{door}")
    spans, logs = http_wire.spans(), http_wire.logs()
    shapes = {door: _shape(spans, logs, f"same-{door}") for door in DOORS}
    reference = shapes["context_managers"]
    assert reference[0] and reference[1]
    for door, shape in shapes.items():
        assert shape[0] == reference[0], f"{door}: spans differ from the context managers'"
        assert shape[1] == reference[1], f"{door}: log records differ from the context managers'"
    assert len({s.trace_id for s in spans if s.name == "ai.run"}) == 3, "one trace per run"
