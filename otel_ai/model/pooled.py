"""What other processes of the experiment learn of the model: the run and stage a
process-pool task was submitted in, and the stage a run named for the processes it starts.

A task a process submits to a ``ProcessPoolExecutor`` under ``otel-ai run`` (or with the
AI-Scientist instrumentor active) carries, next to its trace context, the submitting
process's current run and stage: id or name, and span. A worker that reports for that
run and stage (``EventEmitter.node_created(run_id, stage, ...)`` in the task, say) joins
their spans instead of starting an ``ai.run`` or ``ai.stage`` span of its own; their
owner ends them and counts the worker's nodes (:mod:`otel_ai.model.ledger`). Spawned
workers, which inherit nothing, and forked workers started before the run or the stage
alike.

Without ``otel-ai run`` a pool is left as it is, and a spawned worker inherits nothing but
the environment: a run started there names itself in ``OTEL_AI_INSTRUMENTED_RUN``
(:func:`publish_run`), and its current stage in
``OTEL_AI_INSTRUMENTED_STAGE`` (``"{traceparent} {name}"``, while the stage is open), which
workers started during the stage find the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanContext, TraceFlags

from ..pools import add_task_hook, task_carrier
from ..propagation import (
    INSTRUMENTED_RUN_ENV,
    INSTRUMENTED_STAGE_ENV,
    format_traceparent,
    parse_traceparent,
    wrapped_run,
)
from .listeners import RunListener, add_listener
from .registry import registry

if TYPE_CHECKING:
    from .run import Run
    from .stage import Stage

CURRENT_RUN_KEY = "otel-ai-current-run"
CURRENT_STAGE_KEY = "otel-ai-current-stage"


def carry_stage(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, str]:
    """The submitting process's current run and stage, ``"{traceparent} {name}"`` each
    (a task hook: it runs on the submitting thread, so it reads what is known without
    waiting for the events handed off)."""
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


def publish_run(run: Run) -> None:
    """Name a run this process started for the processes it starts from now on
    (``OTEL_AI_INSTRUMENTED_RUN``: ``{traceparent} {run id}``): a spawned pool worker that
    reports for it, through a front door or the instrumented search, joins it instead of
    starting a run of its own. Under ``otel-ai run`` every process finds the wrapper's."""
    if run.attached or run.ended or wrapped_run() is not None:
        return
    _publish(INSTRUMENTED_RUN_ENV, _format(run.span_context, run.run_id))


def _publish(variable: str, value: str) -> None:
    """``value`` in the environment, unless it cannot be there (a NUL byte, a lone
    surrogate in a run id or stage name: the children then report on their own)."""
    try:
        os.environ[variable] = value
    except (ValueError, UnicodeError):
        os.environ.pop(variable, None)


def published_run(run_id: str | None) -> tuple[str, SpanContext] | None:
    """(run id, span context) of the run a parent process published
    (:func:`publish_run`), when ``run_id`` names it or names nothing; None otherwise."""
    found = _parse(os.environ.get(INSTRUMENTED_RUN_ENV))
    if found is None or (run_id and run_id != found[0]):
        return None
    return found


def published_stage(run_context: SpanContext) -> tuple[str, SpanContext] | None:
    """(name, span context) of the stage a parent process named for its children
    (:class:`_StagePublisher`), when it is a stage of the run whose span context is
    ``run_context``; None otherwise."""
    found = _parse(os.environ.get(INSTRUMENTED_STAGE_ENV))
    if found is None or found[1].trace_id != run_context.trace_id:
        return None
    return found


class _StagePublisher(RunListener):
    """Names the stage a published run (one this process started, outside ``otel-ai
    run``) starts for the processes started while it is open; forgets it at its end."""

    def stage_started(self, stage: Stage) -> None:
        if stage.attached or not _is_published(stage.run.span_context):
            return
        _publish(INSTRUMENTED_STAGE_ENV, _format(stage.span_context, stage.name))

    def stage_ended(self, stage: Stage) -> None:
        found = _parse(os.environ.get(INSTRUMENTED_STAGE_ENV))
        if found is not None and found[1].span_id == stage.span_context.span_id:
            os.environ.pop(INSTRUMENTED_STAGE_ENV, None)


def _is_published(run_context: SpanContext) -> bool:
    published = published_run(None)
    return published is not None and published[1].span_id == run_context.span_id


def _format(context: SpanContext, name: str) -> str:
    """``"{traceparent} {name}"``."""
    return f"{format_traceparent(context.trace_id, context.span_id, context.trace_flags.sampled)} {name}"


def _parse(value: str | None) -> tuple[str, SpanContext] | None:
    header, _, name = (value or "").partition(" ")
    parsed = parse_traceparent(header)
    if parsed is None or not name:
        return None
    trace_id, span_id, flags = parsed
    return name, SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags & TraceFlags.SAMPLED)
    )


add_task_hook(carry_stage)
add_listener(_StagePublisher())
