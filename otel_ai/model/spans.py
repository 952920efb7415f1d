"""The run / stage / node model: spans, their lifecycle events, and their limits.

``Run`` is the ``ai.run`` root span; ``Stage`` an ``ai.stage {stage}`` child; ``Node`` an
``ai.node {kind}`` child of its stage, linked to the span of the node it derives from;
``Execution`` the ``ai.node.execute`` span; ``Paper`` and ``Validation`` the writeup and
review spans. Each object works as a context manager or by explicit calls, is
thread-safe, ends its span exactly once, and tolerates events out of order.

Every method is a telemetry entry point: it never raises into the experiment (see
:func:`otel_ai._internal.never_raise`). Exceptions escaping a ``with`` block are recorded
and propagate unchanged.

One module per kind: :mod:`.owner` (what every span shares), :mod:`.run`, :mod:`.stage`,
:mod:`.node` (nodes and their executions), :mod:`.phases` (paper and review); this module
gathers their public names.
"""

from __future__ import annotations

from .node import Execution, Node
from .owner import SpanOwner, end_open_spans
from .phases import Paper, Phase, Validation
from .run import Run, new_run_id
from .stage import Stage

__all__ = [
    "Execution",
    "Node",
    "Paper",
    "Phase",
    "Run",
    "SpanOwner",
    "Stage",
    "Validation",
    "end_open_spans",
    "new_run_id",
]
