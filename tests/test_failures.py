"""How runs end when things go wrong: exceptions, failures reported by the pod worker,
cancellation; stack traces bounded, never dropped."""

from __future__ import annotations

import pytest
from conftest import Wire

import otel_ai
from otel_ai import semconv


class ExperimentCrashed(RuntimeError):
    pass


def _train_step() -> None:
    raise ExperimentCrashed("CUDA out of memory while training")


def test_exception_escaping_blocks_fails_node_stage_and_run_and_propagates(wire: Wire) -> None:
    with pytest.raises(ExperimentCrashed):
        with otel_ai.run("run-crash") as run:
            with run.stage("2_baseline_tuning") as stage:
                with stage.node("n1", kind="draft"):
                    _train_step()
    spans = {s.name: s for s in wire.spans()}
    node, stage_span, run_span = spans["ai.node draft"], spans["ai.stage 2_baseline_tuning"], spans["ai.run"]
    assert node.attributes[semconv.NODE_IS_BUGGY] is True
    assert node.attributes[semconv.NODE_EXC_TYPE] == "ExperimentCrashed"
    assert node.status_code == "ERROR"
    assert stage_span.status_code == "ERROR"
    assert stage_span.attributes[semconv.STAGE_OUTCOME] == "failed"
    assert [e.name for e in stage_span.events].count("exception") == 1
    assert run_span.status_code == "ERROR"
    assert "ExperimentCrashed" in run_span.status_message
    a = run_span.attributes
    assert a[semconv.RUN_OUTCOME] == "failed"
    assert a[semconv.RUN_FAILED_STAGE] == "2_baseline_tuning"
    assert a[semconv.ERROR_TYPE] == "ExperimentCrashed"
    assert a[semconv.EXCEPTION_MESSAGE] == "CUDA out of memory while training"
    assert "_train_step" in a[semconv.EXCEPTION_STACKTRACE]
    assert a[semconv.RUN_RETRYABLE] is False
    exception = next(e for e in run_span.events if e.name == "exception")
    assert exception.attributes[semconv.EXCEPTION_TYPE] == "ExperimentCrashed"
    (failed,) = wire.events("ai.run.failed")
    assert failed.severity_text == "ERROR"
    assert failed.attributes[semconv.RUN_FAILED_STAGE] == "2_baseline_tuning"
    assert "_train_step" in failed.attributes[semconv.EXCEPTION_STACKTRACE]
    assert failed.span_id == run_span.span_id


def test_event_emitter_run_failed_with_the_seeds_arguments(http_wire: Wire) -> None:
    emitter = otel_ai.EventEmitter("http://control-plane.invalid", "pod-1")
    emitter.run_started("run-f", "pod-1", "A100", "us")
    emitter.stage_started("run-f", "Stage_1", "BFTS experiments")
    trace = "Traceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'lr'\n"
    assert emitter.run_failed("run-f", "Stage_1", "KeyError", "'lr'", trace) is True
    (run,) = [s for s in http_wire.spans() if s.name == "ai.run"]
    assert run.attributes[semconv.RUN_OUTCOME] == "failed"
    assert run.attributes[semconv.RUN_FAILED_STAGE] == "Stage_1"
    assert run.attributes[semconv.ERROR_TYPE] == "KeyError"
    assert run.attributes[semconv.EXCEPTION_STACKTRACE] == trace
    (stage,) = [s for s in http_wire.spans() if s.name == "ai.stage Stage_1"]
    assert stage.attributes[semconv.SPAN_CLOSED_BY] == "parent_end", "an open stage ends with its run"
    assert stage.attributes[semconv.STAGE_OUTCOME] == "failed"
    stage_done = http_wire.events("ai.run.stage_completed")
    assert [r.attributes[semconv.STAGE_OUTCOME] for r in stage_done] == ["failed"]


def test_huge_stack_trace_is_truncated_with_a_marker_keeping_head_and_tail(http_wire: Wire) -> None:
    trace = "Traceback (most recent call last):\n" + "".join(
        f'  File "f{i}.py", line {i}\n' for i in range(20000)
    )
    trace += "ValueError: the real cause\n"
    with otel_ai.run("run-big") as run:
        run.fail(error_type="ValueError", message="the real cause", stacktrace=trace)
    (record,) = http_wire.events("ai.run.failed")
    kept = record.attributes[semconv.EXCEPTION_STACKTRACE]
    assert len(kept) <= 16384
    assert kept.startswith("Traceback (most recent call last):")
    assert kept.rstrip().endswith("ValueError: the real cause")
    assert "…[truncated " in kept
    assert sum(len(str(v)) for v in record.attributes.values()) < 64 * 1024, "within Loki's metadata limit"


def test_cancel_and_keyboard_interrupt_end_the_run_canceled(http_wire: Wire) -> None:
    with otel_ai.run("run-c1") as run:
        run.cancel("Worker received SIGTERM")
    with pytest.raises(KeyboardInterrupt):
        with otel_ai.run("run-c2"):
            raise KeyboardInterrupt
    otel_ai.EventEmitter().run_started("run-c3")
    otel_ai.EventEmitter().run_canceled("run-c3", "user request", "Stage_2")
    runs = {s.attributes[semconv.RUN_ID]: s for s in http_wire.spans() if s.name == "ai.run"}
    assert runs["run-c1"].attributes[semconv.RUN_CANCEL_REASON] == "Worker received SIGTERM"
    assert runs["run-c2"].attributes[semconv.RUN_CANCEL_REASON] == "KeyboardInterrupt"
    assert runs["run-c3"].attributes[semconv.RUN_CANCEL_REASON] == "user request"
    for span in runs.values():
        assert span.attributes[semconv.RUN_OUTCOME] == "canceled"
        assert span.status_code == "ERROR"
    assert len(http_wire.events("ai.run.canceled")) == 3
    assert all(r.severity_text == "WARN" for r in http_wire.events("ai.run.canceled"))


def test_system_exit_zero_completes_and_nonzero_fails(http_wire: Wire) -> None:
    with pytest.raises(SystemExit):
        with otel_ai.run("run-exit0"):
            raise SystemExit(0)
    with pytest.raises(SystemExit):
        with otel_ai.run("run-exit3"):
            raise SystemExit(3)
    runs = {s.attributes[semconv.RUN_ID]: s for s in http_wire.spans() if s.name == "ai.run"}
    assert runs["run-exit0"].attributes[semconv.RUN_OUTCOME] == "completed"
    assert runs["run-exit3"].attributes[semconv.RUN_OUTCOME] == "failed"
    assert runs["run-exit3"].attributes[semconv.ERROR_TYPE] == "SystemExit"


def test_a_failed_paper_and_a_review_left_open(http_wire: Wire) -> None:
    with pytest.raises(RuntimeError):
        with otel_ai.run("run-paper") as run:
            run.validation("gpt-4o")  # never completed: ended with the run
            with run.paper():
                raise RuntimeError("latex failed")
    spans = {s.name: s for s in http_wire.spans()}
    paper, review = spans["ai.paper"], spans["ai.validation"]
    assert paper.status_code == "ERROR"
    assert paper.attributes[semconv.PAPER_OUTCOME] == "failed"
    assert paper.attributes[semconv.EXCEPTION_MESSAGE] == "latex failed"
    assert [e.name for e in paper.events] == ["exception"]
    assert review.status_code == "ERROR"
    assert review.attributes[semconv.VALIDATION_OUTCOME] == "failed", "ended by its failed run"
    assert [
        r.event_name for r in http_wire.events() if r.event_name.startswith(("ai.paper", "ai.validation"))
    ] == ["ai.validation.auto_started", "ai.paper.started"]
