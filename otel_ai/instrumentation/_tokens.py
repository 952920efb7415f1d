"""Token totals: the LLM calls below a node (this process), a stage and a run (the ledger)."""

from __future__ import annotations

import threading
import weakref
from typing import Any

from .. import semconv
from .._internal import never_raise
from ..model.spans import Node, Run, Stage
from . import ledger

_lock = threading.Lock()
_node_tokens: weakref.WeakKeyDictionary[Node, list[int]] = weakref.WeakKeyDictionary()


def add_node_tokens(node: Node, input_tokens: int, output_tokens: int) -> None:
    with _lock:
        counts = _node_tokens.setdefault(node, [0, 0, 0])
        counts[0] += input_tokens
        counts[1] += output_tokens
        counts[2] += 1


def node_totals(node: Node) -> dict[str, Any]:
    """The attributes to end a node with (none when it made no LLM call)."""
    with _lock:
        counts = _node_tokens.get(node)
    if not counts:
        return {semconv.LLM_INPUT_TOKENS: 0, semconv.LLM_OUTPUT_TOKENS: 0, semconv.LLM_CALLS: 0}
    return {
        semconv.LLM_INPUT_TOKENS: counts[0],
        semconv.LLM_OUTPUT_TOKENS: counts[1],
        semconv.LLM_CALLS: counts[2],
    }


@never_raise()
def set_stage_totals(stage: Stage) -> None:
    """Put the stage's token totals (every process's calls, from the ledger) on its span."""
    context = stage.span_context
    inputs, outputs, calls = ledger.token_totals(context.trace_id, context.span_id)
    if calls:
        stage.span.set_attributes(
            {semconv.LLM_INPUT_TOKENS: inputs, semconv.LLM_OUTPUT_TOKENS: outputs, semconv.LLM_CALLS: calls}
        )


@never_raise()
def set_run_totals(run: Run, data_dir: Any = None) -> None:
    """Put the run's token totals (the whole trace's calls) on its span."""
    context = run.span_context
    inputs, outputs, calls = ledger.token_totals(context.trace_id, data_dir=data_dir)
    if calls:
        run.span.set_attributes(
            {semconv.LLM_INPUT_TOKENS: inputs, semconv.LLM_OUTPUT_TOKENS: outputs, semconv.LLM_CALLS: calls}
        )
