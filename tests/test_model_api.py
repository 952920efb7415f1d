"""The model's public API for the front doors: find-or-create by id, span lookups, and
listeners that hear what the model does; asserted on what crossed the wire."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from conftest import Wire

import otel_ai
from otel_ai import semconv
from otel_ai._internal import internal_error_counts
from otel_ai.model import Node, Paper, Run, RunListener, Stage, Validation, add_listener, remove_listener


class Recorder(RunListener):
    def __init__(self) -> None:
        self.heard: list[tuple[Any, ...]] = []

    def stage_started(self, stage: Stage) -> None:
        self.heard.append(("stage_started", stage.name, stage.span_context.span_id))

    def stage_progress(
        self,
        stage: Stage,
        progress: float | None,
        good: int | None,
        buggy: int | None,
        total: int | None,
        best: Any,
    ) -> None:
        self.heard.append(("stage_progress", stage.name, progress, good, buggy, total, best))

    def stage_ended(self, stage: Stage) -> None:
        self.heard.append(("stage_ended", stage.name))

    def node_ended(self, node: Node, buggy: bool | None) -> None:
        self.heard.append(("node_ended", node.node_id, buggy))

    def run_idea(self, run: Run, idea: str) -> None:
        self.heard.append(("run_idea", run.run_id, idea))

    def run_best(self, run: Run, best: Mapping[str, Any]) -> None:
        self.heard.append(("run_best", run.run_id, best["node_id"], best["value"]))

    def run_ended(self, run: Run, outcome: str, attributes: Mapping[str, Any]) -> None:
        self.heard.append(("run_ended", run.run_id, outcome, attributes[semconv.RUN_OUTCOME]))


class Broken(RunListener):
    def stage_started(self, stage: Stage) -> None:
        raise RuntimeError("a listener's own bug")


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    listener = Recorder()
    add_listener(listener)
    add_listener(listener)  # once only
    yield listener
    remove_listener(listener)


def test_listeners_hear_the_runs_life_in_order(http_wire: Wire, recorder: Recorder) -> None:
    with otel_ai.run("heard", idea="tiny transformers") as run:
        with run.stage("1_initial") as stage:
            stage.progress(1, 4, 1, 0, 1, best_metric="0.9")
            with stage.node("n1") as node:
                node.completed(False, "0.9")
            stage.selected_best("n1", "0.9")
    stage_span = http_wire.span(lambda s: s.name == "ai.stage 1_initial")
    assert recorder.heard == [
        ("run_idea", "heard", "tiny transformers"),
        ("stage_started", "1_initial", int(stage_span.span_id, 16)),
        ("stage_progress", "1_initial", 0.25, 1, 0, 1, "0.9"),
        ("node_ended", "n1", False),
        ("run_best", "heard", "n1", 0.9),
        ("stage_ended", "1_initial"),
        ("run_ended", "heard", "completed", "completed"),
    ]


def test_a_failing_listener_never_reaches_the_experiment(http_wire: Wire, recorder: Recorder) -> None:
    broken = Broken()
    add_listener(broken)
    try:
        before = sum(internal_error_counts().values())
        with otel_ai.run("robust") as run, run.stage("s") as stage:
            stage.progress(1, 2)
    finally:
        remove_listener(broken)
    assert sum(internal_error_counts().values()) == before + 1
    assert ("stage_started", "s", stage.span_context.span_id) in recorder.heard, "the others still hear"
    assert http_wire.span(lambda s: s.name == "ai.stage s").status_code == "UNSET"


def test_find_or_create_by_id(http_wire: Wire) -> None:
    with otel_ai.run("found") as run:
        started = run.stage("known")
        assert run.find_stage("known") is started
        assert run.find_stage(None) is started, "None: the current stage"
        node = started.node("n1", kind="draft")
        assert started.find_node("n1") is node
        assert started.find_node(None) is node, "None: the current node"
        assert run.known_node("n1") is node and run.known_node("n0") is None
        assert run.owner_of(node.span_context.span_id) is node
        made = run.find_stage("never_started").find_node("n9")
        made.completed(True)
        assert run.open_child(Paper) is None
        paper = run.paper()
        assert run.open_child(Paper) is paper and run.open_child(Validation) is None
        paper.failed()
        assert run.open_child(Paper) is None
        started.complete()
    spans = {s.name: s for s in http_wire.spans()}
    synthesized = spans["ai.stage never_started"]
    assert synthesized.attributes[semconv.SPAN_SYNTHESIZED] is True
    synthesized_node = next(s for s in http_wire.spans() if s.attributes.get(semconv.NODE_ID) == "n9")
    assert synthesized_node.attributes[semconv.SPAN_SYNTHESIZED] is True
    assert synthesized_node.parent_span_id == synthesized.span_id
    assert spans["ai.paper"].status_code == "ERROR"
    assert spans["ai.paper"].attributes[semconv.PAPER_OUTCOME] == "failed"


def test_an_event_on_one_span_and_a_cancel_naming_its_stage(http_wire: Wire) -> None:
    run = otel_ai.run("canceled")
    stage = run.stage("2_tuning")
    stage.record_event("ai.stage.decision", {"why": "plateau"})
    run.cancel("operator", stage="1_drafting")
    run.fail(message="late")  # a duplicate end names the stage the cancel gave
    stage_span = http_wire.span(lambda s: s.name == "ai.stage 2_tuning")
    assert [e.name for e in stage_span.events][:1] == ["ai.stage.decision"]
    duplicate = [r for r in http_wire.events(semconv.RUN_FAILED) if r.attributes.get(semconv.EVENT_DUPLICATE)]
    assert [r.attributes[semconv.RUN_FAILED_STAGE] for r in duplicate] == ["1_drafting"]
