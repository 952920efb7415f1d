"""Who hears what the model does: a small observer API.

The model tells registered listeners when a stage starts, progresses or ends, when a node
ends, and how a run ends, its idea and its best result. It knows nothing of who listens:
the start-up of a child of ``otel-ai run``, for one, registers a listener that forwards
these to the wrapper (see :mod:`otel_ai.bootstrap.channel`).

A listener subclasses :class:`RunListener` and overrides what it needs. Listeners are
called on the thread that made the change, must return quickly and must not block; an
exception escaping one is reported as an internal error and never reaches the experiment.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._internal import report_internal_error

if TYPE_CHECKING:
    from .node import Node
    from .run import Run
    from .stage import Stage


class RunListener:
    """Base class of the model's listeners: every hook does nothing by default."""

    def stage_started(self, stage: Stage) -> None:
        """A stage started its ``ai.stage`` span in this process."""

    def stage_progress(
        self,
        stage: Stage,
        progress: float | None,
        good: int | None,
        buggy: int | None,
        total: int | None,
        best: Any,
    ) -> None:
        """A stage reported progress (``best`` is the headline of its best metric)."""

    def stage_ended(self, stage: Stage) -> None:
        """A stage of this process ended."""

    def node_ended(self, node: Node, buggy: bool | None) -> None:
        """A node ended (``buggy`` None when its outcome is unknown)."""

    def run_idea(self, run: Run, idea: str) -> None:
        """The idea a run pursues was set."""

    def run_best(self, run: Run, best: Mapping[str, Any]) -> None:
        """A stage's best node was noted: the run's result so far (stage, node_id,
        metric, value)."""

    def run_ended(self, run: Run, outcome: str, attributes: Mapping[str, Any]) -> None:
        """A run ended here with that outcome. For a run attached to a span of another
        process (the wrapper's), the span is not ended here: its owner is to be told."""


_lock = threading.Lock()
_listeners: tuple[RunListener, ...] = ()


def add_listener(listener: RunListener) -> None:
    """Register ``listener`` (once: adding it again changes nothing)."""
    global _listeners
    with _lock:
        if listener not in _listeners:
            _listeners = (*_listeners, listener)


def remove_listener(listener: RunListener) -> None:
    global _listeners
    with _lock:
        _listeners = tuple(known for known in _listeners if known is not listener)


def listeners() -> tuple[RunListener, ...]:
    """The registered listeners, in the order they were added."""
    return _listeners


def notify(hook: str, *args: Any) -> None:
    """Call ``hook`` on every listener; one that fails is reported, the others still run."""
    for listener in _listeners:
        try:
            getattr(listener, hook)(*args)
        except Exception as exc:  # noqa: BLE001 - a listener never breaks the experiment
            report_internal_error(f"listener {type(listener).__name__}.{hook}", exc)
