"""The run / stage / node model and the event vocabulary (see otel_ai.model.spans)."""

from .spans import Execution, Node, Paper, Run, Stage, Validation, new_run_id

__all__ = ["Execution", "Node", "Paper", "Run", "Stage", "Validation", "new_run_id"]
