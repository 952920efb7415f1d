"""AI-Scientist-v2's tree search as stages, nodes and executions (see the package docs).

Main process: ``AgentManager`` builds one ``ParallelAgent`` per stage or sub-stage (the
``ai.stage`` span, open until the agent is cleaned up), whose ``step`` submits
``_process_node_wrapper`` to a process pool while the stage span is current, so the task
carries it (:func:`otel_ai.propagation.call_in_context`). Worker: the task joins that
stage and starts an unborn ``ai.node`` span at once; the node's id is given when one of
``MinimalAgent``'s node makers returns the new node; ``Interpreter.run`` becomes
``ai.node.execute``; the task's result completes the node.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import json
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

from .. import semconv
from .._internal import report_internal_error
from ..model.spans import Node, Run, SpanOwner, Stage
from . import _runs, _tokens, ledger
from ._patching import Hook

AGENT_MANAGER = "ai_scientist.treesearch.agent_manager"
PARALLEL_AGENT = "ai_scientist.treesearch.parallel_agent"
INTERPRETER = "ai_scientist.treesearch.interpreter"
JOURNAL = "ai_scientist.treesearch.journal"

# MinimalAgent's node makers and the kind of node each makes
NODE_MAKERS = {
    "_draft": "draft",
    "_debug": "debug",
    "_improve": "improve",
    "_generate_hyperparam_tuning_node": "hyperparam",
    "_generate_ablation_node": "ablation",
    "_generate_seed_node": "seed",
}


class _Task:
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


class _StageState:
    def __init__(self, stage: Stage, info: Any) -> None:
        self.stage = stage
        self.info = info  # AgentManager's Stage (name, description, max_iterations...) when known
        self.best_id: str | None = None
        self.best_metric: Any = None
        self.in_exit = False


_current_task: contextvars.ContextVar[_Task | None] = contextvars.ContextVar(
    "otel_ai_ai_scientist_task", default=None
)
_opening: contextvars.ContextVar[_StageState | None] = contextvars.ContextVar(
    "otel_ai_ai_scientist_stage", default=None
)
_lock = threading.Lock()
_agents: weakref.WeakKeyDictionary[Any, _StageState] = weakref.WeakKeyDictionary()
_journals: dict[
    int, tuple[Any, _StageState]
] = {}  # id(journal) -> (weak ref, state): journals are unhashable
_signatures: dict[Any, inspect.Signature] = {}


def current_task() -> _Task | None:
    return _current_task.get()


# --- helpers ----------------------------------------------------------------------------
def _bind(
    function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> inspect.BoundArguments | None:
    key = getattr(function, "__func__", function)
    try:
        signature = _signatures.get(key)
        if signature is None:
            signature = _signatures[key] = inspect.signature(function)
        return signature.bind(*args, **kwargs)
    except (TypeError, ValueError):
        return None


def _arg(bound: inspect.BoundArguments | None, name: str, default: Any = None) -> Any:
    return bound.arguments.get(name, default) if bound is not None else default


@contextlib.contextmanager
def _current(owner: SpanOwner | None) -> Iterator[None]:
    """Make ``owner``'s span the current one (what the LLM calls and pool tasks see)."""
    if owner is None:
        yield
        return
    token = context_api.attach(trace_api.set_span_in_context(owner.span))
    try:
        yield
    finally:
        context_api.detach(token)


def _safe(where: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Telemetry around the experiment's call: a failure here is reported, never raised
    into the experiment (re-raised under tests, as everywhere in otel_ai)."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        report_internal_error(f"ai_scientist.{where}", exc)
        from .._internal import _should_raise

        if _should_raise():
            raise
        return None


def _hex(span_id: int) -> str:
    return f"{span_id:016x}"


def _node_context(trace_id: int, stage: str | None, node_id: Any) -> SpanContext | None:
    if node_id is None:
        return None
    span_id = ledger.find_span(trace_id, "node", stage, str(node_id))
    if span_id is None:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(1))


def _record_node(node: Node) -> None:
    context = node.span_context
    ledger.append(
        context.trace_id,
        {"k": "node", "st": node.stage.name, "id": node.node_id, "sp": _hex(context.span_id)},
    )


def _complete(node: Node, child: Any, result: Any = None) -> None:
    source: Any = child if child is not None else result
    get = (
        (lambda name: source.get(name))
        if isinstance(source, dict)
        else (lambda name: getattr(source, name, None))
    )
    if child is not None and node.node_id is None:
        node.born(str(getattr(child, "id", "")) or None)
    elif child is None and isinstance(result, dict) and node.node_id is None and result.get("id"):
        node.born(str(result["id"]))
        _record_node(node)
    node.completed(
        is_buggy=get("is_buggy"),
        metric=get("metric"),  # AI-Scientist's MetricValue or its to_dict(): the model summarises it
        exec_time_s=get("exec_time"),
        exc_type=get("exc_type"),
        **_tokens.node_totals(node),
    )


# --- stages (main process) --------------------------------------------------------------
def _open_stage(name: Any, info: Any) -> _StageState:
    run = _runs.ensure_run()
    attributes: dict[str, Any] = {}
    max_iterations = getattr(info, "max_iterations", None)
    if max_iterations is not None:
        attributes[semconv.STAGE_MAX_ITERATIONS] = max_iterations
    stage = run.stage(str(name) if name else "unknown", getattr(info, "description", None), **attributes)
    context = stage.span_context
    ledger.append(context.trace_id, {"k": "stage", "st": stage.name, "sp": _hex(context.span_id)})
    return _StageState(stage, info)


def _bind_journal(journal: Any, state: _StageState) -> None:
    if journal is None:
        return
    key = id(journal)

    def forget(_ref: Any, key: int = key) -> None:
        _journals.pop(key, None)

    def strong(journal: Any = journal) -> Any:
        return journal

    try:
        ref: Callable[[], Any] = weakref.ref(journal, forget)
    except TypeError:  # not weak-referenceable: keep it
        ref = strong
    with _lock:
        _journals[key] = (ref, state)


def _journal_state(journal: Any) -> _StageState | None:
    entry = _journals.get(id(journal))
    if entry is None or entry[0]() is not journal:
        return None
    return entry[1]


def _end_stage(state: _StageState, exc: BaseException | None) -> None:
    stage = state.stage
    if stage.ended:
        return
    _tokens.set_stage_totals(stage)
    if exc is None:
        stage.complete()
    else:
        stage.__exit__(type(exc), exc, exc.__traceback__)


def create_agent_for_stage(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    bound = _bind(wrapped, args, kwargs)
    info = _arg(bound, "stage", args[0] if args else None)
    state = _safe("stage", _open_stage, getattr(info, "name", None), info)
    if state is None:
        return wrapped(*args, **kwargs)
    token = _opening.set(state)
    try:
        with _current(state.stage):
            return wrapped(*args, **kwargs)
    except BaseException as exc:
        _safe("stage", _end_stage, state, exc)
        raise
    finally:
        _opening.reset(token)


def agent_init(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    bound = _bind(wrapped, args, kwargs)
    name = _arg(bound, "stage_name")
    state = _opening.get()
    if state is None or (name is not None and state.stage.name != str(name)):
        state = _safe("stage", _open_stage, name, None)
    if state is None:
        return wrapped(*args, **kwargs)
    _agents[instance] = state
    _safe("stage", _bind_journal, _arg(bound, "journal"), state)
    with _current(state.stage):
        return wrapped(*args, **kwargs)


def _state_of(agent: Any) -> _StageState | None:
    try:
        return _agents.get(agent)
    except TypeError:
        return None


def in_stage(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """ParallelAgent.step and the seed evaluation: the stage span is current, so the
    pool tasks they submit carry it to the workers."""
    state = _state_of(instance)
    with _current(state.stage if state is not None else None):
        return wrapped(*args, **kwargs)


def agent_cleanup(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        return wrapped(*args, **kwargs)
    finally:
        state = _state_of(instance)
        if state is not None and not state.in_exit:
            _safe("stage", _end_stage, state, None)


def agent_exit(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    state = _state_of(instance)
    if state is not None:
        state.in_exit = True
    try:
        return wrapped(*args, **kwargs)
    finally:
        if state is not None:
            exc = args[1] if len(args) > 1 and isinstance(args[1], BaseException) else None
            _safe("stage", _end_stage, state, exc)


def manager_run(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """AgentManager.run: its step callback (given or not) reports the stage's progress;
    the idea's title becomes the run's input."""
    _safe("run", _set_idea, instance)
    bound = _bind(wrapped, args, kwargs)
    if bound is None:
        return wrapped(*args, **kwargs)
    theirs = bound.arguments.get("step_callback")

    def step_callback(stage: Any, journal: Any, *more: Any, **more_kwargs: Any) -> Any:
        _safe("progress", _progress, stage, journal)
        if theirs is not None:
            return theirs(stage, journal, *more, **more_kwargs)
        return None

    bound.arguments["step_callback"] = step_callback
    return wrapped(*bound.args, **bound.kwargs)


def _set_idea(manager: Any) -> None:
    run = _runs.ensure_run()
    idea = getattr(manager, "task_desc", None)
    if isinstance(idea, str):
        try:
            idea = json.loads(idea)
        except ValueError:
            idea = {"Title": idea.strip().splitlines()[0] if idea.strip() else None}
    if isinstance(idea, dict):
        title = idea.get("Title") or idea.get("title") or idea.get("Name") or idea.get("name")
        if title:
            run.set_idea(title)


def _progress(info: Any, journal: Any) -> None:
    state = _journal_state(journal)
    if state is None:
        return
    nodes = list(getattr(journal, "nodes", ()) or ())
    good = sum(1 for n in nodes if getattr(n, "is_buggy", None) is False)
    buggy = sum(1 for n in nodes if getattr(n, "is_buggy", None) is True)
    state.stage.progress(
        iteration=len(nodes),
        max_iterations=getattr(info, "max_iterations", None) or getattr(state.info, "max_iterations", None),
        good_nodes=good,
        buggy_nodes=buggy,
        total_nodes=len(nodes),
        best_metric=state.best_metric,
    )


def _decision(scope: str) -> Callable[..., Any]:
    def check(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        result = wrapped(*args, **kwargs)
        _safe(
            "decision",
            _record_decision,
            scope,
            args[0] if args else kwargs.get("stage") or kwargs.get("current_substage"),
            result,
        )
        return result

    return check


def _record_decision(scope: str, info: Any, result: Any) -> None:
    run = _runs.current_run()
    name = getattr(info, "name", None)
    stage = run.stages.get(str(name)) if run is not None and name is not None else None
    if stage is None:
        return
    complete, reason = (
        (result[0], result[1]) if isinstance(result, tuple) and len(result) >= 2 else (result, None)
    )
    stage.record_event(
        semconv.STAGE_DECISION,
        {
            semconv.STAGE_NAME: stage.name,
            semconv.STAGE_DECISION_SCOPE: scope,
            semconv.STAGE_DECISION_COMPLETE: bool(complete),
            semconv.STAGE_DECISION_REASON: None if reason is None else str(reason)[:1024],
        },
    )


# --- journal (main process) -------------------------------------------------------------
def get_best_node(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    best = wrapped(*args, **kwargs)
    if best is not None:
        _safe("best_node", _selected_best, instance, best)
    return best


def _selected_best(journal: Any, best: Any) -> None:
    state = _journal_state(journal)
    node_id = getattr(best, "id", None)
    if state is None or node_id is None or str(node_id) == state.best_id:
        return
    state.best_id = str(node_id)
    metric = getattr(best, "metric", None)
    state.best_metric = metric
    stage = state.stage
    context = _node_context(stage.span_context.trace_id, stage.name, node_id)
    stage.selected_best(str(node_id), metric, node_context=context)


def journal_append(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    result = wrapped(*args, **kwargs)
    node = args[0] if args else kwargs.get("node")
    if node is not None and _current_task.get() is None:
        _safe("journal", _appended, instance, node)
    return result


def _appended(journal: Any, node: Any) -> None:
    """A node added in the main process without a span of its own: the previous stage's
    best node, copied into this stage under the same id."""
    state = _journal_state(journal)
    node_id = getattr(node, "id", None)
    if state is None or node_id is None:
        return
    stage = state.stage
    trace_id = stage.span_context.trace_id
    node_id = str(node_id)
    if node_id in stage.nodes or ledger.find_span(trace_id, "node", stage.name, node_id) is not None:
        return  # made in a worker, or here, with its span
    found = ledger.find(trace_id, "node", None, node_id)
    origin_stage = None if found is None else found[1]
    attributes = {semconv.NODE_COPIED_FROM_STAGE: origin_stage} if origin_stage else {}
    copy = stage.node(node_id, kind="node", **attributes)
    origin = _node_context(trace_id, origin_stage, node_id) if origin_stage else None
    if origin is not None:
        copy.span.add_link(origin, {semconv.NODE_ID: node_id, semconv.LINK_TYPE: semconv.LINK_COPIED_FROM})
    _record_node(copy)
    code = getattr(node, "code", None)
    if code:
        copy.code_generated(code)
    _complete(copy, node)


# --- nodes ------------------------------------------------------------------------------
def _run_task(task: Any, wrapped: Any, args: Any, kwargs: Any) -> Any:
    """Call ``wrapped`` with ``task``'s node current; an escaping exception ends the node."""
    token = _current_task.set(task)
    try:
        with _current(task.node):
            return wrapped(*args, **kwargs)
    except BaseException as exc:
        task.node.__exit__(type(exc), exc, exc.__traceback__)
        raise
    finally:
        _current_task.reset(token)


def process_node_task(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """ParallelAgent._process_node_wrapper, in the pool worker: one ``ai.node`` span."""
    task = _safe("node", _start_task, wrapped, args, kwargs)
    if task is None:
        return wrapped(*args, **kwargs)
    result = _run_task(task, wrapped, args, kwargs)
    _safe("node", _complete, task.node, task.child, result)
    return result


def _start_task(wrapped: Any, args: Any, kwargs: Any) -> _Task | None:
    _terminate_gracefully()
    run = _runs.current_run()
    if run is None:
        return None
    bound = _bind(wrapped, args, kwargs)
    stage_name = str(_arg(bound, "stage_name") or "unknown")
    stage = _join_stage(run, stage_name)
    parent = _arg(bound, "node_data")
    parent_id = parent.get("id") if isinstance(parent, dict) else None
    if _arg(bound, "seed_eval"):
        kind = "seed"
    elif parent_id is None:
        kind = "draft"
    elif parent.get("is_buggy"):
        kind = "debug"
    elif _arg(bound, "new_hyperparam_idea") is not None:
        kind = "hyperparam"
    elif _arg(bound, "new_ablation_idea") is not None:
        kind = "ablation"
    else:
        kind = "improve"
    context = _node_context(stage.span_context.trace_id, stage_name, parent_id)
    node = stage.unborn_node(kind, None if parent_id is None else str(parent_id), parent_context=context)
    return _Task(node, stage_name)


def _join_stage(run: Run, name: str) -> Stage:
    current = trace_api.get_current_span().get_span_context()
    if current.is_valid and current.trace_id == run.span_context.trace_id:
        return run.join_stage(name, current)
    known = run.stages.get(name)
    if known is not None:
        return known
    span_id = ledger.find_span(run.span_context.trace_id, "stage", name)
    if span_id is not None:
        return run.join_stage(
            name, SpanContext(run.span_context.trace_id, span_id, is_remote=True, trace_flags=TraceFlags(1))
        )
    return run.find_stage(name)


def node_maker(kind: str) -> Callable[..., Any]:
    def make(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        child = wrapped(*args, **kwargs)
        task = _current_task.get()
        if task is not None and child is not None:
            _safe("node", _born, task, child, kind)
        return child

    return make


def _born(task: _Task, child: Any, kind: str) -> None:
    node = task.node
    if node.node_id is not None:
        return
    task.child = child
    parent = getattr(child, "parent", None)
    parent_id = getattr(parent, "id", None) if parent is not None and not isinstance(parent, str) else parent
    context = None
    if parent_id is not None and node.parent_id is None:
        context = _node_context(node.span_context.trace_id, task.stage_name, parent_id)
    node.born(
        str(child.id),
        kind=kind,
        parent_id=None if parent_id is None else str(parent_id),
        parent_context=context,
    )
    _record_node(node)
    code = getattr(child, "code", None)
    if code:
        node.code_generated(code)


def plan_and_code_query(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Code generated for a node that already has its own: the metric-parsing code."""
    result = wrapped(*args, **kwargs)
    task = _current_task.get()
    if task is not None and task.node.node_id is not None and isinstance(result, tuple) and len(result) == 2:
        _safe(
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
    execution = _safe("execute", task.node.executing, task.purpose_of(code))
    if execution is None:
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        execution.end(exc=exc)
        raise
    _safe("execute", _executed, execution, result)
    return result


def _executed(execution: Any, result: Any) -> None:
    exc_type = getattr(result, "exc_type", None)
    if exc_type:
        execution.span.set_attribute(semconv.NODE_EXC_TYPE, str(exc_type)[:256])
        execution.span.set_status(Status(StatusCode.ERROR, str(exc_type)[:256]))
    exec_time = getattr(result, "exec_time", None)
    execution.end(exec_time_s=exec_time if isinstance(exec_time, (int, float)) else None)


# --- seed aggregation (main process) ----------------------------------------------------
def plot_aggregation(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """ParallelAgent._run_plot_aggregation: the ``seed_agg`` node, made in the main process."""
    state = _state_of(instance)
    bound = _bind(wrapped, args, kwargs)
    base, seeds = _arg(bound, "node"), _arg(bound, "seed_nodes")
    task = None
    if state is not None and seeds:
        parent_id = getattr(base, "id", None)
        context = _node_context(state.stage.span_context.trace_id, state.stage.name, parent_id)
        node = _safe(
            "node",
            state.stage.unborn_node,
            "seed_agg",
            None if parent_id is None else str(parent_id),
            parent_context=context,
        )
        task = _Task(node, state.stage.name) if node is not None else None
    if task is None:
        return in_stage(wrapped, instance, args, kwargs)
    result = _run_task(task, wrapped, args, kwargs)
    if task.child is None:
        task.node.__exit__(None, None, None)  # nothing was aggregated
    else:
        _safe("node", _complete, task.node, task.child)
    return result


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
        _record_node(task.node)
        code = getattr(child, "plot_code", None) or getattr(child, "code", None)
        if code:
            task.node.code_generated(code)
    return child


# --- killed workers ---------------------------------------------------------------------
def _terminate_gracefully() -> None:
    """A stage's end kills its pool workers with SIGTERM. A worker still inside a task
    ends its open spans (as closed by its end) and flushes before it dies."""
    from ..propagation import _flush_on_sigterm

    _flush_on_sigterm()


# --- the hooks --------------------------------------------------------------------------
def hooks() -> list[Hook]:
    result = [
        Hook(AGENT_MANAGER, "AgentManager.run", manager_run),
        Hook(AGENT_MANAGER, "AgentManager._create_agent_for_stage", create_agent_for_stage),
        Hook(AGENT_MANAGER, "AgentManager._check_stage_completion", _decision(semconv.DECISION_SCOPE_STAGE)),
        Hook(
            AGENT_MANAGER,
            "AgentManager._check_substage_completion",
            _decision(semconv.DECISION_SCOPE_SUBSTAGE),
        ),
        Hook(PARALLEL_AGENT, "ParallelAgent.__init__", agent_init),
        Hook(PARALLEL_AGENT, "ParallelAgent.step", in_stage),
        Hook(PARALLEL_AGENT, "ParallelAgent._run_multi_seed_evaluation", in_stage),
        Hook(PARALLEL_AGENT, "ParallelAgent._run_plot_aggregation", plot_aggregation),
        Hook(PARALLEL_AGENT, "ParallelAgent._generate_seed_eval_aggregation_node", aggregation_node),
        Hook(PARALLEL_AGENT, "ParallelAgent.cleanup", agent_cleanup),
        Hook(PARALLEL_AGENT, "ParallelAgent.__exit__", agent_exit),
        Hook(PARALLEL_AGENT, "ParallelAgent._process_node_wrapper", process_node_task, picklable=True),
    ]
    result += [
        Hook(PARALLEL_AGENT, f"MinimalAgent.{name}", node_maker(kind)) for name, kind in NODE_MAKERS.items()
    ]
    result += [
        Hook(PARALLEL_AGENT, "MinimalAgent.plan_and_code_query", plan_and_code_query),
        Hook(INTERPRETER, "Interpreter.run", interpreter_run),
        Hook(JOURNAL, "Journal.get_best_node", get_best_node),
        Hook(JOURNAL, "Journal.append", journal_append),
    ]
    return result


def reset() -> None:
    """Forget stage and journal bindings (tests)."""
    with _lock:
        _agents.clear()
        _journals.clear()
