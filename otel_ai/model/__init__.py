"""The run / stage / node model and the event vocabulary (see otel_ai.model.spans)."""

from .listeners import RunListener, add_listener, remove_listener
from .owner import SpanOwner, end_open_spans
from .spans import Execution, Node, Paper, Run, Stage, Validation, new_run_id

__all__ = [
    "Execution",
    "Node",
    "Paper",
    "Run",
    "RunListener",
    "SpanOwner",
    "Stage",
    "Validation",
    "add_listener",
    "end_open_spans",
    "new_run_id",
    "remove_listener",
]
