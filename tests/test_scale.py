"""A long run: events still land where they belong, and nothing is looked up by walking
what has ended (issue 15, point 2). Timing is the benchmark's business
(benchmarks/bench_scale.py); these tests check the behaviour that makes it flat."""

from __future__ import annotations

import os
from pathlib import Path

from opentelemetry import trace as trace_api

import otel_ai
from otel_ai import semconv
from otel_ai.model import ledger
from otel_ai.model.registry import registry

RUN = "scale-run"
STAGE = "2_baseline_tuning"


def _grow(emitter: otel_ai.EventEmitter, count: int, prefix: str = "n") -> None:
    for i in range(count):
        node_id = f"{prefix}{i}"
        emitter.node_created(RUN, STAGE, node_id, None, "improve")
        emitter.node_executing(RUN, STAGE, node_id)
        emitter.node_completed(RUN, STAGE, node_id, i % 3 == 0, 0.5, 1.0)


def test_pod_worker_events_after_many_ended_nodes_go_to_the_open_node(http_wire) -> None:
    emitter = otel_ai.EventEmitter("http://unused.invalid", "pod-1")
    emitter.run_started(RUN)
    emitter.stage_started(RUN, STAGE)
    _grow(emitter, 300)
    emitter.node_created(RUN, STAGE, "open-node", "n1", "debug")
    _grow(emitter, 50, prefix="late")  # ended after the open node was started
    assert not trace_api.get_current_span().get_span_context().is_valid  # as the pod worker calls it
    emitter.log(RUN, "still training", "info", "stdout")
    emitter.artifact_detected(RUN, "figures/loss.png", "figure", 10)

    run = registry.get(RUN)
    stage = run.stages[STAGE]
    # what a lookup walks: the open spans only, however many have ended
    assert list(stage._open_nodes) == [stage.nodes["open-node"]]
    assert [type(child).__name__ for child in run._open_children] == ["Stage", "Node"]
    ended = stage.nodes["n5"]
    assert ended.ended and not ended.span.is_recording()
    assert ended.span.get_span_context().span_id == ended.span_context.span_id  # its context kept

    emitter.node_completed(RUN, STAGE, "open-node", False, 0.9, 2.0)
    emitter.log(RUN, "between nodes")
    emitter.stage_completed(RUN, STAGE)
    emitter.run_completed(RUN)

    spans = http_wire.spans()
    nodes = {s.attributes[semconv.NODE_ID]: s for s in spans if s.name.startswith(semconv.SPAN_NODE + " ")}
    node_span = nodes["open-node"]
    stage_span = next(s for s in spans if s.name == f"{semconv.SPAN_STAGE} {STAGE}")
    ended_span = nodes["n5"]
    assert ended_span.attributes.get(semconv.NODE_IS_BUGGY) is False, ended_span.attributes  # exported whole
    logs = http_wire.logs()
    line = next(r for r in logs if r.body == "still training")
    assert line.span_id == node_span.span_id
    assert line.attributes[semconv.STAGE_NAME] == STAGE
    artifact = next(r for r in logs if r.event_name == semconv.ARTIFACT_DETECTED)
    assert artifact.span_id == node_span.span_id
    assert any(e.name == semconv.ARTIFACT_DETECTED for e in node_span.events)
    between = next(r for r in logs if r.body == "between nodes")
    assert between.span_id == stage_span.span_id  # no node open: the stage
    assert len(nodes) == 351


def test_the_ledger_reads_only_what_was_appended_since_the_last_lookup(tmp_path: Path) -> None:
    trace_id = 0xABC
    for i in range(200):
        ledger.append(
            trace_id, {"k": "node", "st": "s1", "id": f"n{i}", "sp": f"{i + 1:016x}"}, data_dir=tmp_path
        )
        ledger.append(
            trace_id, {"k": "llm", "s": "00000000000000aa", "n": None, "i": 10, "o": 2}, data_dir=tmp_path
        )
    assert ledger.find(trace_id, "node", "s1", "n7", data_dir=tmp_path) == (8, "s1")
    assert ledger.token_totals(trace_id, 0xAA, data_dir=tmp_path) == (2000, 400, 200)

    # scribble over what was already read (same file, same size): a lookup that re-read
    # the whole file would lose every answer; the index only reads the new tail
    path = ledger.path_for(tmp_path, trace_id)
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.write(b"x" * (size - 1))
    assert path.stat().st_size == size
    # another process appends, then a line is torn mid-way by a killed writer
    with open(path, "ab") as handle:
        handle.write(
            b'{"k":"node","st":"s2","id":"n7","sp":"00000000000003e8"}\n{"k":"llm","s":"00000000000000aa","i":5'
        )
    assert ledger.find(trace_id, "node", "s1", "n7", data_dir=tmp_path) == (8, "s1")
    assert ledger.find(trace_id, "node", None, "n7", data_dir=tmp_path) == (
        1000,
        "s2",
    )  # the latest, any stage
    assert ledger.find(trace_id, "node", "s2", None, data_dir=tmp_path) == (1000, "s2")
    assert ledger.token_totals(trace_id, 0xAA, data_dir=tmp_path) == (
        2000,
        400,
        200,
    )  # the torn line: not yet
    with open(path, "ab") as handle:
        handle.write(b',"o":1}\n')
    assert ledger.token_totals(trace_id, 0xAA, data_dir=tmp_path) == (2005, 401, 201)
    assert ledger.token_totals(trace_id, data_dir=tmp_path) == (2005, 401, 201)

    # a new file under the same name (a ledger removed and started again): read afresh
    fresh = tmp_path / "fresh.jsonl"
    fresh.write_bytes(b'{"k":"stage","st":"s9","sp":"0000000000000009"}\n')
    os.replace(fresh, path)
    assert ledger.find(trace_id, "stage", "s9", data_dir=tmp_path) == (9, "s9")
    assert ledger.find(trace_id, "node", "s1", "n7", data_dir=tmp_path) is None
