"""AI-Scientist-v2's tree search as stages and nodes (see the package docs): the stages
and the journal, in the main process; the nodes are :mod:`._nodes`'.

``AgentManager`` builds one ``ParallelAgent`` per stage or sub-stage (the ``ai.stage``
span, open until the agent is cleaned up), whose ``step`` submits
``_process_node_wrapper`` to a process pool while the stage span is current, so the task
carries it, with its parent node (:func:`otel_ai.pools.call_in_context`).
"""

from __future__ import annotations

import contextvars
import json
import threading
import weakref
from collections.abc import Callable
from typing import Any

from .. import semconv
from ..model import ledger, tokens
from ..model.spans import Stage
from . import _runs
from ._calls import arg, bind, current, safe
from ._nodes import (
    NODE_MAKERS,
    Task,
    aggregation_node,
    complete,
    current_task,
    interpreter_run,
    node_context,
    node_maker,
    plan_and_code_query,
    process_node_task,
    record_node,
    run_task,
)
from ._patching import Hook

AGENT_MANAGER = "ai_scientist.treesearch.agent_manager"
PARALLEL_AGENT = "ai_scientist.treesearch.parallel_agent"
INTERPRETER = "ai_scientist.treesearch.interpreter"
JOURNAL = "ai_scientist.treesearch.journal"


class _StageState:
    def __init__(self, stage: Stage, info: Any) -> None:
        self.stage = stage
        self.info = info  # AgentManager's Stage (name, description, max_iterations...) when known
        self.best_id: str | None = None
        self.best_metric: Any = None
        self.in_exit = False


_opening: contextvars.ContextVar[_StageState | None] = contextvars.ContextVar(
    "otel_ai_ai_scientist_stage", default=None
)
_lock = threading.Lock()
_agents: weakref.WeakKeyDictionary[Any, _StageState] = weakref.WeakKeyDictionary()
_journals: dict[
    int, tuple[Any, _StageState]
] = {}  # id(journal) -> (weak ref, state): journals are unhashable


# --- stages (main process) --------------------------------------------------------------
def _open_stage(name: Any, info: Any) -> _StageState:
    run = _runs.ensure_run()
    attributes: dict[str, Any] = {}
    max_iterations = getattr(info, "max_iterations", None)
    if max_iterations is not None:
        attributes[semconv.STAGE_MAX_ITERATIONS] = max_iterations
    stage = run.stage(str(name) if name else "unknown", getattr(info, "description", None), **attributes)
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
    tokens.set_stage_totals(stage)
    if exc is None:
        stage.complete()
    else:
        stage.__exit__(type(exc), exc, exc.__traceback__)


def create_agent_for_stage(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    bound = bind(wrapped, args, kwargs)
    info = arg(bound, "stage", args[0] if args else None)
    state = safe("stage", _open_stage, getattr(info, "name", None), info)
    if state is None:
        return wrapped(*args, **kwargs)
    token = _opening.set(state)
    try:
        with current(state.stage):
            return wrapped(*args, **kwargs)
    except BaseException as exc:
        safe("stage", _end_stage, state, exc)
        raise
    finally:
        _opening.reset(token)


def agent_init(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    bound = bind(wrapped, args, kwargs)
    name = arg(bound, "stage_name")
    state = _opening.get()
    if state is None or (name is not None and state.stage.name != str(name)):
        state = safe("stage", _open_stage, name, None)
    if state is None:
        return wrapped(*args, **kwargs)
    _agents[instance] = state
    safe("stage", _bind_journal, arg(bound, "journal"), state)
    with current(state.stage):
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
    with current(state.stage if state is not None else None):
        return wrapped(*args, **kwargs)


def agent_cleanup(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        return wrapped(*args, **kwargs)
    finally:
        state = _state_of(instance)
        if state is not None and not state.in_exit:
            safe("stage", _end_stage, state, None)


def agent_exit(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    state = _state_of(instance)
    if state is not None:
        state.in_exit = True
    try:
        return wrapped(*args, **kwargs)
    finally:
        if state is not None:
            exc = args[1] if len(args) > 1 and isinstance(args[1], BaseException) else None
            safe("stage", _end_stage, state, exc)


def manager_run(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """AgentManager.run: its step callback (given or not) reports the stage's progress;
    the idea's title becomes the run's input."""
    safe("run", _set_idea, instance)
    bound = bind(wrapped, args, kwargs)
    if bound is None:
        return wrapped(*args, **kwargs)
    theirs = bound.arguments.get("step_callback")

    def step_callback(stage: Any, journal: Any, *more: Any, **more_kwargs: Any) -> Any:
        safe("progress", _progress, stage, journal)
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
        safe(
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
        safe("best_node", _selected_best, instance, best)
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
    context = node_context(stage.span_context.trace_id, stage.name, node_id)
    stage.selected_best(str(node_id), metric, node_context=context)


def journal_append(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    result = wrapped(*args, **kwargs)
    node = args[0] if args else kwargs.get("node")
    if node is not None and current_task() is None:
        safe("journal", _appended, instance, node)
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
    attributes: dict[str, Any] = {semconv.NODE_COPIED_FROM_STAGE: origin_stage} if origin_stage else {}
    copy = stage.node(node_id, kind="node", **attributes)
    origin = node_context(trace_id, origin_stage, node_id) if origin_stage else None
    if origin is not None:
        copy.span.add_link(origin, {semconv.NODE_ID: node_id, semconv.LINK_TYPE: semconv.LINK_COPIED_FROM})
    record_node(copy)
    code = getattr(node, "code", None)
    if code:
        copy.code_generated(code)
    complete(copy, node)


# --- seed aggregation (main process) ----------------------------------------------------
def plot_aggregation(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """ParallelAgent._run_plot_aggregation: the ``seed_agg`` node, made in the main process."""
    state = _state_of(instance)
    bound = bind(wrapped, args, kwargs)
    base, seeds = arg(bound, "node"), arg(bound, "seed_nodes")
    task = None
    if state is not None and seeds:
        parent_id = getattr(base, "id", None)
        context = node_context(state.stage.span_context.trace_id, state.stage.name, parent_id)
        node = safe(
            "node",
            state.stage.unborn_node,
            "seed_agg",
            None if parent_id is None else str(parent_id),
            parent_context=context,
        )
        task = Task(node, state.stage.name) if node is not None else None
    if task is None:
        return in_stage(wrapped, instance, args, kwargs)
    result = run_task(task, wrapped, args, kwargs)
    if task.child is None:
        task.node.__exit__(None, None, None)  # nothing was aggregated
    else:
        safe("node", complete, task.node, task.child)
    return result


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
    """Forget stage and journal bindings and token counts (tests)."""
    with _lock:
        _agents.clear()
        _journals.clear()
    tokens.reset()
