"""The nodes of AI-Scientist-v2's tree search: one ``ai.node`` span per node made.

A node is made in the pool worker that runs ``ParallelAgent._process_node_wrapper``. Its
stage and its parent node travel with the pool task: the submitting process adds their
span ids to the task's trace context (:func:`otel_ai.pools.add_task_hook`), and the
worker starts its unborn node under them at once, forked or spawned. The node's id is
given when one of ``MinimalAgent``'s node makers returns the new node;
``Interpreter.run`` becomes ``ai.node.execute``; the task's result completes the node.

The ledger keeps what must outlive the worker: where each node's span is (the parent of
later nodes, the stage's best node, a copy in the next stage), and its LLM tokens.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

from .. import semconv
from ..model import ledger, tokens
from ..model.spans import Node, Run, Stage
from ..pools import flush_on_sigterm, task_carrier
from . import _runs
from ._calls import arg, bind, current, safe

# MinimalAgent's node makers and the kind of node each makes
NODE_MAKERS = {
    "_draft": "draft",
    "_debug": "debug",
    "_improve": "improve",
    "_generate_hyperparam_tuning_node": "hyperparam",
    "_generate_ablation_node": "ablation",
    "_generate_seed_node": "seed",
}
NODE_TASK = "ParallelAgent._process_node_wrapper"
# what a node task carries next to its traceparent: span ids (hex) in the task's trace
STAGE_KEY = "otel-ai-stage"
PARENT_KEY = "otel-ai-parent-node"


class Task:
    """The node being made in this context: a worker's task, or a seed aggregation."""

    def __init__(self, node: Node, stage_name: str) -> None:
        self.node = node
        self.stage_name = stage_name
        self.child: Any = None  # AI-Scientist's Node, once born
        self.runs = 0

    def purpose_of(self, code: Any) -> str:
        child = self.child
        self.runs += 1
        if child is not None:
            if code == getattr(child, "code", None) and self.runs == 1:
                return semconv.EXEC_PURPOSE_EXPERIMENT
            if code and code == getattr(child, "parse_metrics_code", None):
                return semconv.EXEC_PURPOSE_METRICS
            if code and code == getattr(child, "code", None):
                return semconv.EXEC_PURPOSE_EXPERIMENT
            return semconv.EXEC_PURPOSE_PLOTTING
        return semconv.EXEC_PURPOSE_EXPERIMENT if self.runs == 1 else semconv.EXEC_PURPOSE_PLOTTING


_current_task: contextvars.ContextVar[Task | None] = contextvars.ContextVar(
    "otel_ai_ai_scientist_task", default=None
)


def current_task() -> Task | None:
    return _current_task.get()


def hex_id(span_id: int) -> str:
    return f"{span_id:016x}"


def _remote(trace_id: int, span_id: int) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(1))


def node_context(trace_id: int, stage: str | None, node_id: Any) -> SpanContext | None:
    """Where the span of a node made before (in any process) is, from the ledger."""
    if node_id is None:
        return None
    span_id = ledger.find_span(trace_id, "node", stage, str(node_id))
    return None if span_id is None else _remote(trace_id, span_id)


def record_node(node: Node) -> None:
    """Tell the other processes of the run where this node's span is."""
    context = node.span_context
    ledger.append(
        context.trace_id,
        {"k": "node", "st": node.stage.name, "id": node.node_id, "sp": hex_id(context.span_id)},
    )


def complete(node: Node, child: Any, result: Any = None) -> None:
    source: Any = child if child is not None else result

    def get(name: str) -> Any:
        return source.get(name) if isinstance(source, dict) else getattr(source, name, None)

    if child is not None and node.node_id is None:
        node.born(str(getattr(child, "id", "")) or None)
    elif child is None and isinstance(result, dict) and node.node_id is None and result.get("id"):
        node.born(str(result["id"]))
        record_node(node)
    node.completed(
        is_buggy=get("is_buggy"),
        metric=get("metric"),  # AI-Scientist's MetricValue or its to_dict(): the model summarises it
        exec_time_s=get("exec_time"),
        exc_type=get("exc_type"),
        **tokens.node_totals(node),
    )


def run_task(task: Task, wrapped: Any, args: Any, kwargs: Any) -> Any:
    """Call ``wrapped`` with ``task``'s node current; an escaping exception ends the node."""
    token = _current_task.set(task)
    try:
        with current(task.node):
            return wrapped(*args, **kwargs)
    except BaseException as exc:
        task.node.__exit__(type(exc), exc, exc.__traceback__)
        raise
    finally:
        _current_task.reset(token)


# --- the submitting side (main process) -------------------------------------------------
def task_context(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, str]:
    """A node task's stage and parent node, to travel with it (a task hook)."""
    if not str(getattr(fn, "__qualname__", "")).endswith(NODE_TASK):
        return {}
    run = _runs.current_run()
    if run is None:
        return {}
    bound = bind(fn, args, kwargs)
    stage_name = str(arg(bound, "stage_name") or "unknown")
    carried: dict[str, str] = {}
    stage = run.stages.get(stage_name)
    if stage is not None:
        carried[STAGE_KEY] = hex_id(stage.span_context.span_id)
    parent = arg(bound, "node_data")
    parent_id = parent.get("id") if isinstance(parent, dict) else None
    trace_id = run.span_context.trace_id
    context = node_context(trace_id, stage_name, parent_id)
    if context is not None:
        carried[PARENT_KEY] = hex_id(context.span_id)
    return carried


def _carried(trace_id: int, key: str) -> SpanContext | None:
    value = task_carrier().get(key)
    try:
        span_id = int(value, 16) if value else 0
    except ValueError:
        return None
    return _remote(trace_id, span_id) if span_id else None


# --- the worker -------------------------------------------------------------------------
def process_node_task(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """ParallelAgent._process_node_wrapper, in the pool worker: one ``ai.node`` span."""
    task = safe("node", _start_task, wrapped, args, kwargs)
    if task is None:
        return wrapped(*args, **kwargs)
    result = run_task(task, wrapped, args, kwargs)
    safe("node", complete, task.node, task.child, result)
    return result


def _start_task(wrapped: Any, args: Any, kwargs: Any) -> Task | None:
    # a stage's end kills its pool workers with SIGTERM: a worker still inside a task
    # ends its open spans (as closed by its end) and flushes before it dies
    flush_on_sigterm()
    run = _runs.current_run()
    if run is None:
        return None
    bound = bind(wrapped, args, kwargs)
    stage_name = str(arg(bound, "stage_name") or "unknown")
    stage = _join_stage(run, stage_name)
    parent = arg(bound, "node_data")
    parent_id = parent.get("id") if isinstance(parent, dict) else None
    if arg(bound, "seed_eval"):
        kind = "seed"
    elif parent_id is None:
        kind = "draft"
    elif parent.get("is_buggy"):
        kind = "debug"
    elif arg(bound, "new_hyperparam_idea") is not None:
        kind = "hyperparam"
    elif arg(bound, "new_ablation_idea") is not None:
        kind = "ablation"
    else:
        kind = "improve"
    context = _carried(stage.span_context.trace_id, PARENT_KEY) if parent_id is not None else None
    node = stage.unborn_node(kind, None if parent_id is None else str(parent_id), parent_context=context)
    return Task(node, stage_name)


def _join_stage(run: Run, name: str) -> Stage:
    trace_id = run.span_context.trace_id
    carried = _carried(trace_id, STAGE_KEY)
    if carried is None:
        current_span = trace_api.get_current_span().get_span_context()
        if current_span.is_valid and current_span.trace_id == trace_id:
            carried = current_span
    if carried is not None:
        return run.join_stage(name, carried)
    known = run.stages.get(name)
    if known is not None:
        return known
    return run.find_stage(name)


def node_maker(kind: str) -> Callable[..., Any]:
    def make(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        child = wrapped(*args, **kwargs)
        task = _current_task.get()
        if task is not None and child is not None:
            safe("node", _born, task, child, kind)
        return child

    return make


def _born(task: Task, child: Any, kind: str) -> None:
    node = task.node
    if node.node_id is not None:
        return
    task.child = child
    parent = getattr(child, "parent", None)
    parent_id = getattr(parent, "id", None) if parent is not None and not isinstance(parent, str) else parent
    context = None
    if parent_id is not None and node.parent_id is None:
        context = _carried(node.span_context.trace_id, PARENT_KEY)
    node.born(
        str(child.id),
        kind=kind,
        parent_id=None if parent_id is None else str(parent_id),
        parent_context=context,
    )
    record_node(node)
    code = getattr(child, "code", None)
    if code:
        node.code_generated(code)


def plan_and_code_query(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Code generated for a node that already has its own: the metric-parsing code."""
    result = wrapped(*args, **kwargs)
    task = _current_task.get()
    if task is not None and task.node.node_id is not None and isinstance(result, tuple) and len(result) == 2:
        safe(
            "code",
            task.node.code_generated,
            result[1],
            **{semconv.NODE_EXEC_PURPOSE: semconv.EXEC_PURPOSE_METRICS},
        )
    return result


def interpreter_run(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    task = _current_task.get()
    if task is None:
        return wrapped(*args, **kwargs)
    code = args[0] if args else kwargs.get("code")
    execution = safe("execute", task.node.executing, task.purpose_of(code))
    if execution is None:
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        execution.end(exc=exc)
        raise
    safe("execute", _executed, execution, result)
    return result


def _executed(execution: Any, result: Any) -> None:
    exc_type = getattr(result, "exc_type", None)
    if exc_type:
        execution.span.set_attribute(semconv.NODE_EXC_TYPE, str(exc_type)[:256])
        execution.span.set_status(Status(StatusCode.ERROR, str(exc_type)[:256]))
    exec_time = getattr(result, "exec_time", None)
    execution.end(exec_time_s=exec_time if isinstance(exec_time, (int, float)) else None)


def aggregation_node(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    child = wrapped(*args, **kwargs)
    task = _current_task.get()
    if task is not None and child is not None and task.node.node_id is None:
        task.child = child
        parent = getattr(child, "parent", None)
        parent_id = getattr(parent, "id", None)
        task.node.born(
            str(child.id), kind="seed_agg", parent_id=None if parent_id is None else str(parent_id)
        )
        record_node(task.node)
        code = getattr(child, "plot_code", None) or getattr(child, "code", None)
        if code:
            task.node.code_generated(code)
    return child
