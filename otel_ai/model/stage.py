"""Stages: :class:`Stage`, the ``ai.stage {name}`` span of one stage or sub-stage of the
search, which starts and finds its nodes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace as trace_api
from opentelemetry.trace import Span, SpanContext, Status, StatusCode

from .. import semconv
from .._internal import never_raise
from ..export.providers import get_pipeline
from ..metrics.instruments import instruments
from . import ledger
from .coerce import as_float, coerce_attributes, identifier, is_finite, to_text
from .events import ERROR, INFO
from .listeners import notify
from .metric import summarize
from .node import Node
from .owner import CLOSED_BY_PARENT, SpanOwner, error_status, exception_attributes, now, record_exception

if TYPE_CHECKING:
    from .run import Run


class Stage(SpanOwner):
    """One stage or sub-stage of the search: the ``ai.stage {name}`` span."""

    def __init__(
        self,
        run: Run,
        name: str,
        description: str | None,
        attributes: Mapping[str, Any] | None,
        *,
        synthesized: bool = False,
        attach: SpanContext | None = None,
    ) -> None:
        """Start a stage. With ``attach`` (the span context of a stage whose span lives in
        another process, e.g. the submitter of a process-pool task), no span is started
        here: this process's nodes join that stage, whose owner ends it."""
        if type(name) is not str:  # whatever came in, a bounded printable name
            name = identifier(name) or ""
        self.name = name
        self.description = description
        self.attached = attach is not None
        attrs: dict[str, Any] = {
            semconv.RUN_ID: run.run_id,
            semconv.STAGE_NAME: name,
            semconv.STAGE_DESCRIPTION: description,
        }
        if attributes:
            attrs.update(attributes)
        if synthesized:
            attrs[semconv.SPAN_SYNTHESIZED] = True
        attrs = coerce_attributes(attrs)
        start = now()
        if attach is not None:
            span: Span = trace_api.NonRecordingSpan(attach)
        else:
            span = get_pipeline().tracer.start_span(
                f"{semconv.SPAN_STAGE} {name}",
                context=trace_api.set_span_in_context(run.span),
                attributes=attrs,
                start_time=start,
            )
        super().__init__(run, span, start)
        self.nodes: dict[str, Node] = {}
        self._node_order: list[Node] = []
        self._open_nodes: dict[Node, None] = {}  # born and open, oldest first
        self.best_node_id: str | None = None
        self.best_metric: Any = None
        self._reported_counts: tuple[int, int, int] | None = None
        self._progress_updates = 0
        if attach is not None:
            self._not_owned()  # owned by the process that started it, ended there
            return
        self._log_event(semconv.STAGE_STARTED, attrs)
        notify("stage_started", self)

    def __repr__(self) -> str:
        return f"<otel_ai Stage {self.name!r} {'ended' if self._ended else 'open'}>"

    @never_raise()
    def _exit(self, exc: BaseException | None) -> None:
        if exc is None:
            self.complete()
        else:
            self.run._note_failed_stage(self.name)
            self._end_stage(semconv.OUTCOME_FAILED, exc=exc)

    @property
    def current_node(self) -> Node | None:
        with self._lock:
            for node in reversed(self._open_nodes):
                if not node.ended:
                    return node
        return None

    def _add_node(self, node: Node, node_id: str | None) -> None:
        """A node joins the stage (known by ``node_id`` when it has one)."""
        with self._lock:
            if node_id is not None:
                self.nodes[node_id] = node
            self._node_order.append(node)
            if not node.ended:
                self._open_nodes[node] = None

    def _forget_node(self, node: Node) -> None:
        with self._lock:
            self._open_nodes.pop(node, None)

    # -- nodes ------------------------------------------------------------------------
    @never_raise()
    def node(
        self,
        node_id: str | None = None,
        parent_id: str | None = None,
        kind: str | None = "node",
        *,
        parent_context: SpanContext | None = None,
        **attributes: Any,
    ) -> Node:
        """Start the ``ai.node {kind}`` span of a search-tree node; emits ``ai.node.created``.

        ``parent_id`` names the node it derives from: recorded as ``ai.node.parent_id``
        and as a span link to that node's span (``parent_context`` when the parent's span
        lives in another process).
        """
        node_id = to_text(node_id, 256) if node_id is not None else uuid.uuid4().hex
        with self._lock:
            existing = self.nodes.get(node_id)
            if existing is not None and not existing.ended:
                existing._duplicate(semconv.NODE_CREATED)
                return existing
            node = Node(self, node_id, parent_id, kind, parent_context, attributes)
            self._add_node(node, node_id)
        self.run._adopt(node)
        self.run._index_node(node)
        node._check_parent_open(self, None)
        return node

    @never_raise()
    def unborn_node(
        self,
        kind: str = "node",
        parent_id: str | None = None,
        *,
        parent_context: SpanContext | None = None,
        **attributes: Any,
    ) -> Node:
        """Start the ``ai.node {kind}`` span of a node whose id is not known yet.

        AI-Scientist-v2 gives a node its id when the LLM's code comes back, but the LLM
        call belongs under the node. Call :meth:`Node.born` with the id: ``ai.node.created``
        is emitted then (stamped with the span's start), and the node joins the stage.
        """
        node = Node(self, None, parent_id, kind, parent_context, attributes, unborn=True)
        self.run._adopt(node)
        node._check_parent_open(self, None)
        return node

    @never_raise()
    def find_node(self, node_id: Any = None) -> Node:
        """The node of that id in this stage; the current one when None. A node never
        started is started here (flagged ``ai.span.synthesized``), so an event for it is
        still recorded."""
        with self._lock:
            if node_id is None:
                current = self.current_node
                if current is not None:
                    return current
            node = self.nodes.get(to_text(node_id, 256)) if node_id is not None else None
        if node is not None:
            return node
        node = Node(
            self,
            node_id if node_id is not None else uuid.uuid4().hex,
            None,
            "node",
            None,
            None,
            synthesized=True,
        )
        self._add_node(node, node.node_id)
        self.run._adopt(node)
        node._check_parent_open(self, None)
        return node

    # -- stage events -----------------------------------------------------------------
    @never_raise()
    def progress(
        self,
        iteration: int | None = None,
        max_iterations: int | None = None,
        good_nodes: int | None = None,
        buggy_nodes: int | None = None,
        total_nodes: int | None = None,
        best_metric: Any = None,
        eta_s: float | None = None,
        progress: float | None = None,
        **attributes: Any,
    ) -> None:
        """``ai.run.stage_progress``: a span event (first and latest kept) and a log-based
        event (every one). ``progress`` defaults to iteration / max_iterations."""
        value = as_float(progress)
        if value is None:
            it, mx = as_float(iteration), as_float(max_iterations)
            if it is not None and mx:
                value = it / mx
        if value is not None and is_finite(value):
            value = min(max(value, 0.0), 1.0)
        attrs = {
            semconv.STAGE_NAME: self.name,
            semconv.STAGE_PROGRESS_VALUE: value,
            semconv.STAGE_ITERATION: iteration,
            semconv.STAGE_MAX_ITERATIONS: max_iterations,
            semconv.STAGE_NODES_GOOD: good_nodes,
            semconv.STAGE_NODES_BUGGY: buggy_nodes,
            semconv.STAGE_NODES_TOTAL: total_nodes,
            semconv.STAGE_BEST_METRIC: summarize(best_metric).headline,
            semconv.STAGE_ETA_S: eta_s,
            **attributes,
        }
        self._progress_updates += 1
        counts = (good_nodes, buggy_nodes, total_nodes)
        if all(isinstance(c, int) for c in counts):
            self._reported_counts = counts  # type: ignore[assignment]
        self._event(semconv.STAGE_PROGRESS, attrs)
        notify(
            "stage_progress",
            self,
            value,
            good_nodes,
            buggy_nodes,
            total_nodes,
            attrs[semconv.STAGE_BEST_METRIC],
        )
        tools = instruments()
        if value is not None and is_finite(value):
            tools.stage_progress(self.run.run_id, self.name, value)
        best = summarize(best_metric).value
        if best is not None and is_finite(best):
            tools.best_metric(self.run.run_id, self.name, best)

    @never_raise()
    def metric(self, name: str, value: Any, **attributes: Any) -> None:
        """``ai.run.stage_metric``: a named metric computed for this stage."""
        number = as_float(value)
        attrs = {
            semconv.STAGE_NAME: self.name,
            semconv.METRIC_NAME: name,
            semconv.METRIC_VALUE: number if number is not None else to_text(value, 1024),
            **attributes,
        }
        self._event(semconv.STAGE_METRIC, attrs)

    @never_raise()
    def selected_best(
        self, node_id: str, metric: Any = None, *, node_context: SpanContext | None = None, **attributes: Any
    ) -> None:
        """``ai.node.selected_best``: a span event on the stage and a link to the node
        (``node_context`` when the node's span lives in another process)."""
        node_id = to_text(node_id, 256)
        self.best_node_id = node_id
        scored = summarize(metric)
        self.best_metric = scored.headline
        attrs: dict[str, Any] = {
            semconv.STAGE_NAME: self.name,
            semconv.NODE_ID: node_id,
            semconv.NODE_METRIC: scored.headline,
            semconv.NODE_METRIC_VALUE: scored.value,
            **attributes,
        }
        self._event(semconv.NODE_SELECTED_BEST, attrs)
        self.run.note_best(self.name, node_id, scored.headline, scored.value)
        node = self.nodes.get(node_id) or self.run.known_node(node_id)
        if node is not None:
            node_context = node.span_context
        if node_context is not None and node_context.is_valid and not self._ended:
            self._span.add_link(
                node_context, {semconv.NODE_ID: node_id, semconv.LINK_TYPE: semconv.LINK_SELECTED_BEST}
            )

    # -- ending -----------------------------------------------------------------------
    @never_raise()
    def complete(self, duration_s: float | None = None) -> None:
        """End the stage (``ai.run.stage_completed``)."""
        self._end_stage(semconv.OUTCOME_COMPLETED, duration_s=duration_s)

    def _close_by_parent(self, outcome: str) -> None:
        self._end_stage(outcome, closed_by=CLOSED_BY_PARENT)

    def _counts(self) -> tuple[int, int, int]:
        """Final node counts: what the experiment reported last or what was seen, this
        process's nodes and those that ended in its pool workers (from the ledger),
        whichever is larger (a crash can end a stage between the two)."""
        outcomes = {n.span_context.span_id: n.is_buggy for n in self._node_order}
        if self.owned_here:
            elsewhere = ledger.nodes_ended_elsewhere(self.span_context.trace_id, self.span_context.span_id)
            outcomes = {**elsewhere, **outcomes}
        good = sum(1 for buggy in outcomes.values() if buggy is False)
        buggy = sum(1 for buggy in outcomes.values() if buggy is True)
        seen = (good, buggy, len(outcomes))
        reported = self._reported_counts
        if reported is None:
            return seen
        return (max(seen[0], reported[0]), max(seen[1], reported[1]), max(seen[2], reported[2]))

    def _end_stage(
        self,
        outcome: str,
        *,
        duration_s: float | None = None,
        exc: BaseException | None = None,
        closed_by: str | None = None,
    ) -> None:
        if not self._claim_end():
            if self.owned_here:
                self._duplicate(semconv.STAGE_COMPLETED)
            return
        for node in list(self._node_order):
            if not node.ended:
                node._close_by_parent(outcome)
        end = now()
        good, buggy, total = self._counts()
        attrs: dict[str, Any] = {
            semconv.STAGE_NAME: self.name,
            semconv.STAGE_DURATION_S: duration_s if duration_s is not None else self._duration_s(end),
            semconv.STAGE_BEST_NODE_ID: self.best_node_id,
            semconv.STAGE_NODES_GOOD: good,
            semconv.STAGE_NODES_BUGGY: buggy,
            semconv.STAGE_NODES_TOTAL: total,
            semconv.STAGE_OUTCOME: outcome,
            semconv.STAGE_PROGRESS_UPDATES: self._progress_updates,
            semconv.SPAN_CLOSED_BY: closed_by,
        }
        status: Status | None = None
        error: dict[str, Any] | None = None
        level = INFO
        if exc is not None:
            error = exception_attributes(exc)
            attrs.update(error)
            status = error_status(error)
            level = ERROR
        elif outcome in (semconv.OUTCOME_FAILED, semconv.OUTCOME_CANCELED, semconv.OUTCOME_ABANDONED):
            status = Status(StatusCode.ERROR, f"stage ended by its run: {outcome}")
        attrs = coerce_attributes(attrs)
        self._log_event(semconv.STAGE_COMPLETED, attrs, level)
        notify("stage_ended", self)
        if error:
            record_exception(self._span, error)
        self._finish(status, attrs)

    def _duplicate_attributes(self) -> dict[str, Any]:
        return {semconv.STAGE_NAME: self.name}
