"""The model's news, told to ``otel-ai run``: a listener that forwards what its status line
and its ``ai.run`` span need over the wrapper's channel (:func:`otel_ai.propagation.report`).

The start-up of a Python child of ``otel-ai run`` registers it (:func:`install`) once the
model is imported. Each report is a non-blocking datagram, a no-op in a process that is
not wrapped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..model.listeners import RunListener, add_listener
from ..propagation import (
    MSG_BEST,
    MSG_NODE,
    MSG_PROGRESS,
    MSG_RUN_END,
    MSG_RUN_IDEA,
    MSG_STAGE,
    MSG_STAGE_END,
    report,
)

if TYPE_CHECKING:
    from ..model import Node, Run, Stage


class WrapperChannel(RunListener):
    """Stages, progress, node outcomes of every run of this process; the idea, best node
    and end of the wrapper's run (attached here: the wrapper ends its span)."""

    def stage_started(self, stage: Stage) -> None:
        context = stage.span_context
        report(
            MSG_STAGE, name=stage.name, trace_id=f"{context.trace_id:032x}", span_id=f"{context.span_id:016x}"
        )

    def stage_progress(
        self,
        stage: Stage,
        progress: float | None,
        good: int | None,
        buggy: int | None,
        total: int | None,
        best: Any,
    ) -> None:
        report(
            MSG_PROGRESS, stage=stage.name, progress=progress, good=good, buggy=buggy, total=total, best=best
        )

    def stage_ended(self, stage: Stage) -> None:
        report(MSG_STAGE_END, name=stage.name)

    def node_ended(self, node: Node, buggy: bool | None) -> None:
        report(MSG_NODE, stage=node.stage.name, buggy=buggy)

    def run_idea(self, run: Run, idea: str) -> None:
        if run.attached:
            report(MSG_RUN_IDEA, idea=idea)

    def run_best(self, run: Run, best: Mapping[str, Any]) -> None:
        if run.attached:
            report(MSG_BEST, **best)

    def run_ended(self, run: Run, outcome: str, attributes: Mapping[str, Any]) -> None:
        if run.attached:
            report(MSG_RUN_END, outcome=outcome, attributes=attributes)


channel = WrapperChannel()


def install() -> None:
    """Forward the model's news to the wrapper (once per process)."""
    add_listener(channel)
