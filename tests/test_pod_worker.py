"""The seed pod worker on otel_ai's drop-ins (issue 12, point 2).

``tests/pod_worker_program.py`` makes every call the agencyenterprise fork's
``pod_worker.py`` makes, in the same order and shapes, and runs the fake AI-Scientist's
tree search in its own process with spawned (or forked) pool workers; here it runs as a
real subprocess exporting over OTLP/HTTP to a receiver on 127.0.0.1, and what arrived is
checked. The unit tests below take each call shape of the seed's ``CloudEventEmitter`` and
batching ``EventEmitter`` one by one. ``tools/try_pod_worker.py`` runs the real fork's
pod worker the same way (docs/pod-worker.md).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from conftest import Wire
from otlp_receiver import OTLPReceiver

import otel_ai
from otel_ai import semconv
from otel_ai.read import LogRecordData, SpanRecord

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = ROOT / "tests" / "pod_worker_program.py"
WORKER_KINDS = {"draft", "debug", "improve", "hyperparam", "ablation", "seed"}


def _run_program(
    tmp_path: Path, receiver: OTLPReceiver, *args: str
) -> tuple[dict[str, Any], list[SpanRecord], list[LogRecordData]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACEPARENT", "PYTEST_"))}
    env.update(
        OTEL_AI_DATA_DIR=str(tmp_path / "runs"),
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.http_endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_AI_RAISE_INTERNAL_ERRORS="1",  # an internal error would reach the program: it must not happen
        OTEL_METRIC_EXPORT_INTERVAL="60000",
    )
    result = subprocess.run(
        [sys.executable, str(PROGRAM), "--workdir", str(tmp_path / "work"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report, receiver.spans(), receiver.logs()


def _check_one_trace_with_stages_and_nodes(
    spans: list[SpanRecord], start_method: str, own_stages: set[str]
) -> SpanRecord:
    by_id = {s.span_id: s for s in spans}
    (run,) = [s for s in spans if s.name == semconv.SPAN_RUN]
    assert {s.trace_id for s in spans} == {run.trace_id}, (
        "one trace: the search's stages and nodes joined the drop-in's run"
    )
    assert [s.name for s in spans if s.parent_span_id and s.parent_span_id not in by_id] == [], (
        "no parent missing"
    )
    stage_spans = [s for s in spans if s.name.startswith(semconv.SPAN_STAGE + " ")]
    stages = {s.attributes[semconv.STAGE_NAME]: s for s in stage_spans}
    assert len(stages) == len(stage_spans), (
        f"one span per stage: {sorted(s.attributes[semconv.STAGE_NAME] for s in stage_spans)}"
    )
    assert own_stages <= set(stages), "the pod worker's own stages"
    search = [name for name in stages if name[0].isdigit()]
    assert {name.split("_")[0] for name in search} == {"1", "2", "3", "4"}, "the tree search's stages"
    assert all(s.parent_span_id == run.span_id for s in stages.values())
    nodes = [s for s in spans if s.name.startswith(semconv.SPAN_NODE + " ")]
    assert len(nodes) >= 8
    main_pid = run.resource[semconv.PROCESS_PID]
    for node in nodes:
        stage = by_id[node.parent_span_id]
        assert stage.name == f"{semconv.SPAN_STAGE} {node.attributes[semconv.STAGE_NAME]}", (
            "each node under its search stage"
        )
        assert not node.attributes.get(semconv.SPAN_SYNTHESIZED), (
            "no second node span from the batched node_completed"
        )
        if node.attributes[semconv.NODE_KIND] in WORKER_KINDS:
            assert node.resource[semconv.PROCESS_PID] != main_pid, (
                f"{node.name} made in a {start_method}ed pool worker"
            )
    assert {n.attributes[semconv.NODE_KIND] for n in nodes} >= {"draft", "seed", "seed_agg"}
    return run


def _check_sequence(report: dict[str, Any], logs: list[LogRecordData], run: SpanRecord) -> None:
    by_pid: dict[int, list[int]] = defaultdict(list)
    for record in logs:
        by_pid[record.resource[semconv.PROCESS_PID]].append(record.attributes[semconv.EVENT_SEQ])
    main = sorted(by_pid[run.resource[semconv.PROCESS_PID]])
    # set_seq_counter was only ever called with the batching emitter's counter, behind
    # ours: nothing rewound (no number twice), nothing skipped
    assert main == list(range(1, len(main) + 1))
    for pid, seqs in by_pid.items():
        assert len(seqs) == len(set(seqs)), f"ai.event.seq repeated in process {pid}"
    reads = report["seq_reads"]
    assert reads and reads == sorted(reads) and len(set(reads)) == len(reads)
    assert all(1 <= value <= main[-1] for value in reads), "seq_counter reads the last ai.event.seq assigned"


def test_the_pod_worker_whose_paper_fails_is_one_failed_trace(
    tmp_path: Path, otlp_receiver: OTLPReceiver
) -> None:
    report, spans, logs = _run_program(
        tmp_path, otlp_receiver, "--outcome", "paper-failed", "--start-method", "spawn"
    )
    assert report["errors"] == [], "no exception reached the pod worker"
    assert report["search"]["stages"] >= 4
    run = _check_one_trace_with_stages_and_nodes(spans, "spawn", {"Stage_1", "Stage_2", "Stage_3"})
    # the two-argument run_failed(run_id, "Paper generation failed") ended the run as meant
    assert run.attributes[semconv.RUN_OUTCOME] == semconv.OUTCOME_FAILED
    assert run.attributes[semconv.RUN_FAILED_STAGE] == "Stage_3"
    assert run.status_code == "ERROR" and "Paper generation failed" in run.status_message
    (failed,) = [r for r in logs if r.event_name == semconv.RUN_FAILED]
    assert failed.attributes[semconv.EXCEPTION_MESSAGE] == "Paper generation failed"
    assert not [r for r in logs if r.event_name == semconv.RUN_ABANDONED]
    _check_sequence(report, logs, run)
    # the batching emitter's stream: progress on Stage_1, the node summaries as given
    progress = [r for r in logs if r.event_name == semconv.STAGE_PROGRESS]
    assert progress and {r.attributes[semconv.STAGE_NAME] for r in progress} >= {"Stage_1"}
    summaries = [r for r in logs if r.event_name == semconv.EXPERIMENT_NODE_COMPLETED]
    assert summaries and all(r.attributes[semconv.NODE_ID] for r in summaries)
    assert [r for r in logs if r.event_name == semconv.ARTIFACT_DETECTED]
    assert [r for r in logs if r.event_name == semconv.ARTIFACT_REGISTERED]


def test_the_pod_worker_that_crashes_in_stage_2_ends_failed_with_the_error(
    tmp_path: Path, otlp_receiver: OTLPReceiver
) -> None:
    report, spans, logs = _run_program(
        tmp_path, otlp_receiver, "--outcome", "crash", "--start-method", "fork"
    )
    assert report["errors"] == []
    run = _check_one_trace_with_stages_and_nodes(spans, "fork", {"Stage_1", "Stage_2"})
    assert run.attributes[semconv.RUN_OUTCOME] == semconv.OUTCOME_FAILED
    assert run.attributes[semconv.RUN_FAILED_STAGE] == "Stage_2"
    (failed,) = [r for r in logs if r.event_name == semconv.RUN_FAILED]
    assert failed.attributes[semconv.ERROR_TYPE] == "RuntimeError"
    assert (
        failed.attributes[semconv.EXCEPTION_MESSAGE] == "CUDA error: an illegal memory access was encountered"
    )
    assert "Traceback" in failed.attributes[semconv.EXCEPTION_STACKTRACE]
    _check_sequence(report, logs, run)


# --- each call shape, in process ---------------------------------------------------------
def test_seq_counter_reads_the_last_seq_and_only_moves_forward(http_wire: Wire) -> None:
    e = otel_ai.EventEmitter("http://control-plane.invalid", "pod-1")
    assert e.seq_counter == 0
    e.set_seq_counter(0)
    e.run_started("r1", "pod-1", "gpu", "region")
    assert e.seq_counter == 1
    e.log("r1", "one")
    e.set_seq_counter(1)  # behind: changes nothing
    assert e.seq_counter == 2
    e.log("r1", "two")
    e.set_seq_counter(40)  # ahead: the next event is 41
    e.log("r1", "three")
    e.seq_counter = 5  # assigning is set_seq_counter: never a rewind
    e.set_seq_counter("not a number")  # type: ignore[arg-type]
    e.log("r1", "four")
    assert e.seq_counter == 42
    e.run_completed("r1", 3)
    seqs = [r.attributes[semconv.EVENT_SEQ] for r in http_wire.logs()]
    assert sorted(seqs) == [1, 2, 3, 41, 42, 43]


def test_the_two_argument_run_failed_ends_the_run_failed_with_that_message(http_wire: Wire) -> None:
    e = otel_ai.EventEmitter("http://control-plane.invalid", "pod-1")
    e.run_started("r2", "pod-1", "gpu", "region")
    e.stage_started("r2", "Stage_3", "Research Agenda Execution")
    assert e.run_failed("r2", "Paper generation failed") is True
    run = http_wire.span(lambda s: s.name == semconv.SPAN_RUN)
    assert run.attributes[semconv.RUN_OUTCOME] == semconv.OUTCOME_FAILED
    assert run.attributes[semconv.RUN_FAILED_STAGE] == "Stage_3"
    (failed,) = http_wire.events(semconv.RUN_FAILED)
    assert failed.attributes[semconv.EXCEPTION_MESSAGE] == "Paper generation failed"


def test_a_second_argument_naming_a_stage_is_the_failed_stage(http_wire: Wire) -> None:
    e = otel_ai.EventEmitter()
    e.run_started("r3")
    e.stage_started("r3", "Stage_2")
    e.stage_started("r3", "Stage_3")
    e.run_failed("r3", "Stage_2")
    run = http_wire.span(lambda s: s.name == semconv.SPAN_RUN)
    assert run.attributes[semconv.RUN_FAILED_STAGE] == "Stage_2"
    assert semconv.EXCEPTION_MESSAGE not in http_wire.events(semconv.RUN_FAILED)[0].attributes


# The seed's CloudEventEmitter methods (agencyenterprise/AI-Scientist-v2, event_emitter.py)
# with the arguments pod_worker.py and the seed's tests pass, by name.
SEED_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("run_started", {"run_id": "r4", "pod_id": "pod-1", "gpu": "NVIDIA H100", "region": "EU-RO-1"}),
    ("run_heartbeat", {"run_id": "r4"}),
    ("stage_started", {"run_id": "r4", "stage": "Stage_1", "desc": "Preliminary Investigation"}),
    (
        "stage_progress",
        {
            "run_id": "r4",
            "stage": "Stage_1",
            "progress": 0.5,
            "iteration": 1,
            "max_iterations": 2,
            "good_nodes": 1,
            "buggy_nodes": 0,
            "total_nodes": 1,
            "best_metric": "0.9",
            "eta_s": 30,
        },
    ),
    ("node_created", {"run_id": "r4", "stage": "Stage_1", "node_id": "n1", "parent_id": None}),
    ("node_code_generated", {"run_id": "r4", "stage": "Stage_1", "node_id": "n1", "code_size": 120}),
    ("node_executing", {"run_id": "r4", "stage": "Stage_1", "node_id": "n1"}),
    (
        "node_completed",
        {
            "run_id": "r4",
            "stage": "Stage_1",
            "node_id": "n1",
            "is_buggy": False,
            "metric": "0.9",
            "exec_time_s": 1.5,
        },
    ),
    ("node_selected_best", {"run_id": "r4", "stage": "Stage_1", "node_id": "n1", "metric": "0.9"}),
    ("log", {"run_id": "r4", "message": "hello", "level": "warning", "source": "Stage_1"}),
    ("metric_computed", {"run_id": "r4", "stage": "Stage_1", "name": "val_loss", "value": 0.25}),
    ("artifact_detected", {"run_id": "r4", "path": "figures/loss.png", "type": "plot", "size_bytes": 2048}),
    (
        "artifact_registered",
        {
            "run_id": "r4",
            "key": "runs/r4/loss.png",
            "bytes": 2048,
            "sha256": "ab" * 32,
            "content_type": "image/png",
            "kind": "plot",
        },
    ),
    ("stage_completed", {"run_id": "r4", "stage": "Stage_1", "duration_s": 12}),
    ("paper_started", {"run_id": "r4"}),
    ("paper_generated", {"run_id": "r4", "artifact_key": "runs/r4/paper.pdf"}),
    ("validation_auto_started", {"run_id": "r4", "model": "gpt-4o-2024-11-20"}),
    (
        "validation_auto_completed",
        {"run_id": "r4", "verdict": "pass", "scores": {"overall": 0.75}, "notes": "ok"},
    ),
    ("emit", {"event_type": "ai.custom.thing", "run_id": "r4", "data": {"x": 1}}),
    (
        "run_failed",
        {
            "run_id": "r4",
            "stage": "Stage_1",
            "code": "ValueError",
            "message": "boom",
            "traceback": "Traceback...",
        },
    ),
]


@pytest.mark.parametrize("by", ["position", "name"])
def test_every_seed_call_shape_is_taken(http_wire: Wire, by: str) -> None:
    from otel_ai._internal import internal_error_counts

    e = otel_ai.EventEmitter("http://control-plane.invalid", "pod-1")
    before = sum(internal_error_counts().values())
    for method, arguments in SEED_CALLS:
        call = getattr(e, method)
        assert (call(*arguments.values()) if by == "position" else call(**arguments)) is True, method
    assert sum(internal_error_counts().values()) == before, "no call was refused"
    names = [r.event_name for r in http_wire.events()]
    assert names.count(semconv.RUN_STARTED) == 1 and names[-1] == semconv.RUN_FAILED
    for event in (
        semconv.NODE_COMPLETED,
        semconv.ARTIFACT_REGISTERED,
        semconv.VALIDATION_COMPLETED,
        "ai.custom.thing",
    ):
        assert event in names
    run = http_wire.span(lambda s: s.name == semconv.SPAN_RUN)
    assert run.attributes[semconv.RUN_OUTCOME] == semconv.OUTCOME_FAILED


def test_a_call_of_no_known_shape_is_warned_about_and_still_recorded(
    http_wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    e = otel_ai.EventEmitter()
    e.run_started("r5")
    with caplog.at_level(logging.WARNING, logger="otel_ai"):
        assert e.run_failed("r5", "Stage_9", "OOM", "out of memory", "tb", False, "one too many", 7) is True
        assert e.node_executing("r5") is True  # too few
    assert "unexpected shape" in caplog.text and "run_failed" in caplog.text
    run = http_wire.span(lambda s: s.name == semconv.SPAN_RUN)
    assert run.attributes[semconv.RUN_OUTCOME] == semconv.OUTCOME_FAILED, "the bad call still ended the run"
    (failed,) = http_wire.events(semconv.RUN_FAILED)
    assert failed.attributes[semconv.EXCEPTION_MESSAGE] == "out of memory"
    assert failed.attributes[semconv.ERROR_TYPE] == "OOM"


def test_the_batching_emitter_maps_the_tree_search_stream(http_wire: Wire) -> None:
    e = otel_ai.EventEmitter("http://control-plane.invalid", "pod-1", instrument=False)
    b = otel_ai.BatchEventEmitter("http://control-plane.invalid", "pod-1", instrument=False)
    e.run_started("r6", "pod-1", "gpu", "region")
    e.stage_started("r6", "Stage_1", "Preliminary Investigation")
    b.emit(
        "ai.run.stage_progress",
        {
            "stage": "Stage_1",
            "iteration": 1,
            "max_iterations": 4,
            "progress": 0.25,
            "total_nodes": 1,
            "buggy_nodes": 0,
            "good_nodes": 1,
            "best_metric": "0.9",
            "run_id": "r6",
        },
        "r6",
    )
    b.emit(
        "ai.run.log",
        {"message": "Found 1 working implementation(s), continuing...", "level": "info", "run_id": "r6"},
        "r6",
    )
    b.emit(
        "ai.experiment.node_completed",
        {"stage": "Stage_1", "node_id": "abc", "summary": {"is_buggy": False}, "run_id": "r6"},
        "r6",
    )
    b.emit("ai.experiment.something_new", {"x": 1}, "r6")
    b.emit("ai.run.stage_completed", {"stage": "Stage_1", "duration_s": 3}, "r6")
    b.flush()
    b.emit(
        "ai.run.failed",
        {
            "run_id": "r6",
            "stage": "Stage_1",
            "code": "KeyError",
            "message": "'x'",
            "traceback": "Traceback...",
            "retryable": False,
        },
        "r6",
    )
    assert b.batch == []
    stage = http_wire.span(lambda s: s.name == f"{semconv.SPAN_STAGE} Stage_1")
    node = http_wire.span(lambda s: s.name.startswith(semconv.SPAN_NODE))
    assert node.parent_span_id == stage.span_id and node.attributes[semconv.NODE_ID] == "abc"
    assert node.attributes[semconv.NODE_IS_BUGGY] is False
    names = [r.event_name for r in http_wire.events()]
    assert semconv.STAGE_PROGRESS in names and "ai.experiment.something_new" in names
    run = http_wire.span(lambda s: s.name == semconv.SPAN_RUN)
    assert run.attributes[semconv.RUN_OUTCOME] == semconv.OUTCOME_FAILED
    assert [r.body for r in http_wire.logs() if r.body == "Found 1 working implementation(s), continuing..."]
