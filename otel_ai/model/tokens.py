"""Token totals of nodes (this process), stages and runs (every process: the ledger).

The counts come from :class:`otel_ai.metrics.genai.TokenUsageProcessor`, which reads
``gen_ai.usage.*`` from every LLM span as it ends, whoever made it: this package's own
OpenAI / Anthropic hooks or the maintained ``opentelemetry-instrumentation-openai-v2`` /
``-anthropic`` (streams included). For each such span this listener adds the tokens to
the node it ran under (the node's span ends with them), appends them to the trace's
ledger (summed by whoever ends the stage and the run) and tells the status line of
``otel-ai run``.

Here in the model, not with the instrumentation that uses it most: ``otel-ai run`` sums
a run's tokens too, and must not load the patching (wrapt, opentelemetry-instrumentation:
60 ms) to do so.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from .. import semconv
from .._internal import never_raise
from ..metrics.genai import UsageScope, on_usage
from ..propagation import MSG_TOKENS, report
from . import ledger
from .spans import Node, Run, Stage

__all__ = ["node_totals", "set_run_totals", "set_stage_totals"]

_lock = threading.Lock()
_node_tokens: dict[int, list[int]] = {}  # node span id -> [input, output, calls]


def _rolled_up(trace_id: int, scope: UsageScope | None, inputs: int, outputs: int) -> None:
    node_span_id = None if scope is None else scope.node_span_id
    stage_span_id = None if scope is None else scope.stage_span_id
    if node_span_id is not None:
        with _lock:
            counts = _node_tokens.setdefault(node_span_id, [0, 0, 0])
            counts[0] += inputs
            counts[1] += outputs
            counts[2] += 1
    ledger.append(
        trace_id,
        {
            "k": "llm",
            "s": None if stage_span_id is None else f"{stage_span_id:016x}",
            "n": None if node_span_id is None else f"{node_span_id:016x}",
            "i": inputs,
            "o": outputs,
        },
    )
    report(MSG_TOKENS, input=inputs, output=outputs)


on_usage(_rolled_up)


def node_totals(node: Node) -> dict[str, Any]:
    """The attributes to end a node with (zeros when it made no LLM call)."""
    with _lock:
        counts = _node_tokens.pop(node.span_context.span_id, None)
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
def set_run_totals(run: Run, data_dir: Path | None = None) -> None:
    """Put the run's token totals (the whole trace's calls, every process's) on its span:
    for whoever ends the run (the ``otel-ai run`` wrapper, or the process that started it)."""
    context = run.span_context
    inputs, outputs, calls = ledger.token_totals(context.trace_id, data_dir=data_dir)
    if calls:
        run.span.set_attributes(
            {semconv.LLM_INPUT_TOKENS: inputs, semconv.LLM_OUTPUT_TOKENS: outputs, semconv.LLM_CALLS: calls}
        )


def reset() -> None:
    """Forget the nodes' counts (tests)."""
    with _lock:
        _node_tokens.clear()
