"""What a process-pool task carries of the model: the run and stage it was submitted in.

A task a process submits to a ``ProcessPoolExecutor`` under ``otel-ai run`` (or with the
AI-Scientist instrumentor active) carries, next to its trace context, the submitting
process's current run and stage: id or name, and span. A worker that reports for that
run and stage (``EventEmitter.node_created(run_id, stage, ...)`` in the task, say) joins
their spans instead of starting an ``ai.run`` or ``ai.stage`` span of its own; their
owner ends them and counts the worker's nodes (:mod:`otel_ai.model.ledger`). Spawned
workers, which inherit nothing, and forked workers started before the run or the stage
alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry.trace import SpanContext, TraceFlags

from ..pools import add_task_hook, task_carrier
from .registry import registry

CURRENT_RUN_KEY = "otel-ai-current-run"
CURRENT_STAGE_KEY = "otel-ai-current-stage"


def carry_stage(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, str]:
    """The submitting process's current run and stage, ``"{trace id}-{span id} {name}"``
    each (a task hook: it runs on the submitting thread, so it reads what is known
    without waiting for the events handed off)."""
    run = registry.current(drain=False)
    if run is None:
        return {}
    carried = {CURRENT_RUN_KEY: _format(run.span_context, run.run_id)}
    stage = run.current_stage
    if stage is not None:
        carried[CURRENT_STAGE_KEY] = _format(stage.span_context, stage.name)
    return carried


def carried_run(run_id: str | None) -> tuple[str, SpanContext] | None:
    """(run id, span context) of the run the running pool task was submitted in, when
    ``run_id`` names it or names nothing; None otherwise."""
    found = _parse(task_carrier().get(CURRENT_RUN_KEY))
    if found is None or (run_id and run_id != found[0]):
        return None
    return found


def carried_stage(run_context: SpanContext) -> tuple[str, SpanContext] | None:
    """(name, span context) of the stage the running pool task was submitted in, when
    it is a stage of the run whose span context is ``run_context``; None otherwise."""
    found = _parse(task_carrier().get(CURRENT_STAGE_KEY))
    if found is None or found[1].trace_id != run_context.trace_id:
        return None
    return found


def _format(context: SpanContext, name: str) -> str:
    sampled = "1" if context.trace_flags.sampled else "0"
    return f"{context.trace_id:032x}-{context.span_id:016x}-{sampled} {name}"


def _parse(value: str | None) -> tuple[str, SpanContext] | None:
    if not value:
        return None
    ids, _, name = value.partition(" ")
    parts = ids.split("-")
    try:
        trace_id, span_id = int(parts[0], 16), int(parts[1], 16)
    except (ValueError, IndexError):
        return None
    if not trace_id or not span_id or not name:
        return None
    flags = TraceFlags(TraceFlags.SAMPLED if parts[2:] == ["1"] else TraceFlags.DEFAULT)
    return name, SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)


add_task_hook(carry_stage)
