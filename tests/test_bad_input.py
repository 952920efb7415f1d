"""Events out of order, repeated or odd: recorded faithfully, never raised, nothing left open."""

from __future__ import annotations

import math
import threading
from collections import Counter
from typing import Any

import numpy as np
import pytest
from conftest import Wire

import otel_ai
from otel_ai import semconv


def test_node_completed_that_was_never_created_is_synthesized(http_wire: Wire) -> None:
    emitter = otel_ai.EventEmitter()
    emitter.run_started("run-ooo")
    assert emitter.node_completed("run-ooo", "Stage_9", "ghost", False, "0.5", 2.0) is True
    emitter.run_completed("run-ooo", 10)
    spans = http_wire.spans()
    (stage,) = [s for s in spans if s.name == "ai.stage Stage_9"]
    (node,) = [s for s in spans if s.name.startswith("ai.node ")]
    assert stage.attributes[semconv.SPAN_SYNTHESIZED] is True
    assert node.attributes[semconv.SPAN_SYNTHESIZED] is True
    assert node.attributes[semconv.NODE_ID] == "ghost"
    assert node.attributes[semconv.NODE_METRIC_VALUE] == 0.5
    assert node.parent_span_id == stage.span_id
    run = next(s for s in spans if s.name == "ai.run")
    assert run.attributes[semconv.RUN_DURATION_S] == 10


def test_progress_for_a_stage_never_started_and_repeated_completion(http_wire: Wire) -> None:
    emitter = otel_ai.EventEmitter()
    emitter.run_started("run-rep")
    emitter.stage_progress("run-rep", "Stage_1", 0.5, 5, 10, 3, 2, 5)
    emitter.node_created("run-rep", "Stage_1", "a", None)
    emitter.node_completed("run-rep", "Stage_1", "a", True, None, 1.0)
    emitter.node_completed("run-rep", "Stage_1", "a", False, "0.9", 1.0)
    emitter.stage_completed("run-rep", "Stage_1", 12)
    emitter.stage_completed("run-rep", "Stage_1", 12)
    emitter.stage_progress("run-rep", "Stage_1", 0.6, 6, 10, 3, 3, 6)
    emitter.run_completed("run-rep", 20)
    emitter.run_completed("run-rep", 20)
    emitter.run_started("run-rep", "pod", "gpu", "region")
    spans = http_wire.spans()
    counts = Counter(s.name for s in spans)
    assert counts == {"ai.run": 1, "ai.stage Stage_1": 1, "ai.node node": 1}, "each span exported once"
    node = next(s for s in spans if s.name == "ai.node node")
    assert node.attributes[semconv.NODE_IS_BUGGY] is True, "the first completion wins"
    completed = http_wire.events("ai.node.completed")
    assert [r.attributes.get(semconv.EVENT_DUPLICATE, False) for r in completed] == [False, True]
    assert completed[1].attributes[semconv.NODE_IS_BUGGY] is False, "the repeat is recorded as given"
    stage_done = http_wire.events("ai.run.stage_completed")
    assert [r.attributes.get(semconv.EVENT_DUPLICATE, False) for r in stage_done] == [False, True]
    late = http_wire.events("ai.run.stage_progress")[-1]
    assert (
        late.attributes[semconv.EVENT_LATE] is True and late.attributes[semconv.STAGE_PROGRESS_VALUE] == 0.6
    )
    run_done = http_wire.events("ai.run.completed")
    assert [r.attributes.get(semconv.EVENT_DUPLICATE, False) for r in run_done] == [False, True]
    stage = next(s for s in spans if s.name == "ai.stage Stage_1")
    assert stage.attributes[semconv.SPAN_SYNTHESIZED] is True
    assert stage.attributes[semconv.STAGE_DURATION_S] == 12


def test_children_of_ended_spans_are_closed_at_once_and_nothing_stays_open(http_wire: Wire) -> None:
    emitter = otel_ai.EventEmitter()
    emitter.run_started("run-late")
    emitter.run_completed("run-late")
    emitter.stage_started("run-late", "late_stage", "after the end")
    emitter.node_created("run-late", "late_stage", "n", None)
    with otel_ai.run("run-open") as run:
        stage = run.stage("left_open")
        node = stage.node("n1")
        node.executing()
    otel_ai.event_callback("ai.run.stage_started", {"run_id": "never-started", "stage": "s"})
    otel_ai.shutdown(5.0)
    spans = http_wire.receiver.spans()
    names = Counter((s.attributes[semconv.RUN_ID], s.name) for s in spans)
    assert names == {
        ("run-late", "ai.run"): 1,
        ("run-late", "ai.stage late_stage"): 1,
        ("run-late", "ai.node node"): 1,
        ("run-open", "ai.run"): 1,
        ("run-open", "ai.stage left_open"): 1,
        ("run-open", "ai.node node"): 1,
        ("run-open", "ai.node.execute"): 1,
        ("never-started", "ai.run"): 1,
        ("never-started", "ai.stage s"): 1,
    }
    late_stage = next(s for s in spans if s.name == "ai.stage late_stage")
    assert late_stage.attributes[semconv.EVENT_LATE] is True
    left_open = next(s for s in spans if s.name == "ai.stage left_open")
    assert left_open.attributes[semconv.SPAN_CLOSED_BY] == "parent_end"
    synthesized = next(
        s for s in spans if s.name == "ai.run" and s.attributes[semconv.RUN_ID] == "never-started"
    )
    assert synthesized.attributes[semconv.SPAN_SYNTHESIZED] is True
    assert synthesized.attributes[semconv.RUN_OUTCOME] == "abandoned"


def test_unknown_event_types_are_recorded_as_given(http_wire: Wire) -> None:
    otel_ai.event_callback("ai.run.started", {"run_id": "run-unk"})
    otel_ai.event_callback("ai.custom.thing", {"run_id": "run-unk", "answer": 42, "nested": {"a": [1, "b"]}})
    otel_ai.EventEmitter().emit("lab.gpu.swap", "run-unk", {"from": "0", "to": "1"})
    otel_ai.event_callback(
        "ai.experiment.node_completed", {"run_id": "run-unk", "stage": "Stage_1", "summary": "no id"}
    )
    otel_ai.event_callback("ai.run.completed", {"run_id": "run-unk"})
    (custom,) = http_wire.events("ai.custom.thing")
    assert custom.attributes["answer"] == 42
    assert custom.attributes["nested"] == '{"a": [1, "b"]}'
    assert custom.attributes[semconv.RUN_ID] == "run-unk"
    (swap,) = http_wire.events("lab.gpu.swap")
    assert (swap.attributes["from"], swap.attributes["to"]) == ("0", "1")
    (no_id,) = http_wire.events("ai.experiment.node_completed")
    assert no_id.attributes["summary"] == "no id"
    run = next(s for s in http_wire.spans() if s.name == "ai.run")
    assert {"ai.custom.thing", "lab.gpu.swap"} <= {e.name for e in run.events}


def test_ai_scientist_node_completed_with_a_node_id_becomes_ai_node_completed(http_wire: Wire) -> None:
    otel_ai.event_callback("ai.run.started", {"run_id": "run-sum"})
    summary = {"is_buggy": False, "metric": 0.71, "findings": "lr 3e-4 works best"}
    otel_ai.event_callback(
        "ai.experiment.node_completed",
        {"run_id": "run-sum", "stage": "Stage_1", "node_id": "abc", "summary": summary},
    )
    otel_ai.event_callback("ai.run.completed", {"run_id": "run-sum"})
    (record,) = http_wire.events("ai.node.completed")
    assert record.attributes[semconv.NODE_ID] == "abc"
    assert record.attributes[semconv.NODE_IS_BUGGY] is False
    assert record.attributes[semconv.NODE_METRIC_VALUE] == 0.71
    assert "lr 3e-4 works best" in record.attributes[semconv.NODE_SUMMARY]
    assert not http_wire.events("ai.experiment.node_completed")


def test_run_id_from_the_environment_for_event_callback(
    http_wire: Wire, monkeypatch: pytest.MonkeyPatch
) -> None:
    otel_ai.testing.reset()
    monkeypatch.setenv("OTEL_AI_RUN_ID", "run-from-env")
    otel_ai.configure(endpoint=http_wire.receiver.http_endpoint, protocol="http/protobuf")
    otel_ai.event_callback(
        "ai.run.stage_progress",
        {
            "stage": "Stage_1",
            "iteration": 1,
            "max_iterations": 4,
            "good_nodes": 1,
            "buggy_nodes": 0,
            "total_nodes": 1,
        },
    )
    otel_ai.shutdown(5.0)
    (progress,) = [r for r in http_wire.receiver.logs() if r.event_name == "ai.run.stage_progress"]
    assert progress.attributes[semconv.RUN_ID] == "run-from-env"
    assert progress.attributes[semconv.STAGE_PROGRESS_VALUE] == 0.25


def test_odd_attribute_types_are_coerced_faithfully(http_wire: Wire) -> None:
    with otel_ai.run(
        "run-odd",
        extra_dict={"lr": 3e-4},
        extra_none=None,
        extra_bytes=b"\xff\xfeok",
        extra_mixed=[1, "two", 3.0, None],
        extra_big=2**80,
    ) as run:
        with run.stage("s") as stage:
            stage.progress(
                np.int64(3),
                np.int32(10),
                np.int64(2),
                1,
                3,
                best_metric=np.float32(0.5),
                eta_s=np.float64(1.5),
            )
            stage.metric("loss", float("nan"))
            stage.metric("acc", {"top1": 0.9})
            with stage.node("n", kind="draft") as node:
                node.completed(np.bool_(False), np.float64(0.25), np.float32(1.0))
    spans = {s.name: s for s in http_wire.spans()}
    run_attrs = spans["ai.run"].attributes
    assert run_attrs["extra_dict"] == '{"lr": 0.0003}'
    assert "extra_none" not in run_attrs
    assert run_attrs["extra_bytes"] == "\ufffd\ufffdok"
    assert run_attrs["extra_mixed"] == ["1", "two", "3.0"]
    assert run_attrs["extra_big"] == str(2**80)
    progress = next(e for e in spans["ai.stage s"].events if e.name == "ai.run.stage_progress").attributes
    assert progress[semconv.STAGE_ITERATION] == 3 and progress[semconv.STAGE_MAX_ITERATIONS] == 10
    assert progress[semconv.STAGE_PROGRESS_VALUE] == pytest.approx(0.3)
    assert progress[semconv.STAGE_BEST_METRIC] == "0.5"
    assert progress[semconv.STAGE_ETA_S] == 1.5
    metrics = [e.attributes for e in spans["ai.stage s"].events if e.name == "ai.run.stage_metric"]
    assert math.isnan(metrics[0][semconv.METRIC_VALUE])
    assert metrics[1][semconv.METRIC_VALUE] == '{"top1": 0.9}'
    node = spans["ai.node draft"].attributes
    assert node[semconv.NODE_IS_BUGGY] is False and node[semconv.NODE_METRIC_VALUE] == 0.25
    assert node[semconv.NODE_EXEC_TIME_S] == 1.0


def test_huge_values_are_bounded_and_flagged(http_wire: Wire) -> None:
    with otel_ai.run("run-huge", note="x" * 100_000) as run:
        run.log("y" * 200_000, "info", "big.log")
    span = next(s for s in http_wire.spans() if s.name == "ai.run")
    assert len(span.attributes["note"]) <= 4096 and "…[truncated " in span.attributes["note"]
    (line,) = [r for r in http_wire.logs() if not r.event_name]
    assert len(line.body) <= 65536 and line.attributes[semconv.LOG_TRUNCATED] is True


def test_front_doors_are_thread_safe(http_wire: Wire) -> None:
    emitter = otel_ai.EventEmitter()
    emitter.run_started("run-threads")
    emitter.stage_started("run-threads", "s", "parallel")
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            for i in range(25):
                node_id = f"w{index}-{i}"
                emitter.node_created("run-threads", "s", node_id, None)
                emitter.node_executing("run-threads", "s", node_id)
                emitter.node_completed("run-threads", "s", node_id, i % 3 == 0, str(i), 0.01)
                emitter.stage_progress("run-threads", "s", None, i, 25, 0, 0, i)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    emitter.run_completed("run-threads")
    assert not errors
    spans = http_wire.spans()
    nodes = [s for s in spans if s.name.startswith("ai.node ")]
    assert len(nodes) == 200 and len({s.span_id for s in nodes}) == 200
    assert len([s for s in spans if s.name == "ai.node.execute"]) == 200
    seqs = [r.attributes[semconv.EVENT_SEQ] for r in http_wire.logs()]
    assert sorted(seqs) == list(range(1, len(seqs) + 1)), "no sequence number lost or repeated"


class _Unprintable:
    def __str__(self) -> str:
        raise ValueError("no str for you")

    __repr__ = __str__


def test_a_value_whose_str_raises_costs_only_its_own_attribute(http_wire: Wire) -> None:
    otel_ai.event_callback(
        "ai.custom.odd",
        {"run_id": "run-unprintable", "bad": _Unprintable(), "nested": {"b": _Unprintable()}, "good": 7},
    )
    with otel_ai.run("run-unprintable2", odd=_Unprintable()) as run:
        with run.stage("s") as stage:
            stage.metric("weird", _Unprintable())
        run.log("still here", "info")
    (odd,) = http_wire.events("ai.custom.odd")
    assert odd.attributes["good"] == 7
    assert odd.attributes["bad"] == "<unprintable _Unprintable>"
    assert "<unprintable _Unprintable>" in odd.attributes["nested"]
    spans = {s.name: s for s in http_wire.spans()}
    assert spans["ai.run"].attributes["odd"] == "<unprintable _Unprintable>"
    (metric,) = [e.attributes for e in spans["ai.stage s"].events if e.name == "ai.run.stage_metric"]
    assert metric[semconv.METRIC_VALUE] == "<unprintable _Unprintable>"
    assert any(r.body == "still here" for r in http_wire.logs())


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.arange(10_000_000, dtype=np.float64),
        lambda: np.zeros((1000, 10_000)),
        lambda: {f"key{i}": i for i in range(1_000_000)},
        lambda: {"outer": [list(range(1000)) for _ in range(1000)]},
        lambda: set(range(1_000_000)),
    ],
    ids=["array-10M", "array-2d", "dict-1M-keys", "nested-1M", "set-1M"],
)
def test_a_huge_attribute_is_cut_before_it_is_converted(http_wire: Wire, make: Any) -> None:
    """The work is bounded, not only the result: a value is never converted whole (which
    would allocate hundreds of MB and hold the experiment's thread for a second)."""
    import tracemalloc

    value = make()
    tracemalloc.start()
    try:
        otel_ai.event_callback("ai.custom.huge", {"run_id": "run-huge-attr", "value": value})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, f"converting the value allocated {peak} bytes"
    (event,) = http_wire.events("ai.custom.huge")
    recorded = event.attributes["value"]
    text = recorded if isinstance(recorded, str) else " ".join(map(str, recorded))
    assert 0 < len(text) <= 128 * 4096
    if not isinstance(value, np.ndarray):
        assert "more" in text, "what was left out is counted"


def test_unprintable_values_anywhere_at_the_front_doors(http_wire: Wire) -> None:
    """Names, ids, levels and event types whose __str__ (and __format__) raise: no
    exception, no internal error (they re-raise under pytest), everything recorded."""

    class Hostile(_Unprintable):
        def __format__(self, spec: str) -> str:
            raise ValueError("no format either")

    bad = Hostile()
    with otel_ai.run("run-hostile") as run:
        run.log(bad, bad)
        with run.stage(bad, description=bad) as stage:
            stage.metric(bad, bad)
            with stage.node(bad, kind=bad, parent_id=bad) as node:
                node.completed(bad, bad, bad)
    otel_ai.event_callback(bad, {"run_id": "run-hostile", "x": bad})
    emitter = otel_ai.EventEmitter()
    emitter.stage_started("run-hostile", bad, bad)
    emitter.node_completed("run-hostile", bad, bad, bad, bad, bad)
    spans = http_wire.spans()
    assert any(s.name == "ai.stage <unprintable Hostile>" for s in spans)
    assert any(r.event_name == "<unprintable Hostile>" for r in http_wire.logs())
