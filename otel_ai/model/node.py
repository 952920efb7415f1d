"""Search-tree nodes: :class:`Node` (the ``ai.node {kind}`` span, child of its stage) and
:class:`Execution` (the ``ai.node.execute`` span of one run of a node's code)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace as trace_api
from opentelemetry.trace import Link, SpanContext, Status, StatusCode

from .. import semconv
from .._internal import never_raise
from ..export.providers import get_pipeline
from ..metrics.instruments import instruments
from . import ledger
from .coerce import as_float, coerce_attributes, identifier, is_finite, to_text
from .events import INFO, WARN, emit_log, summary
from .listeners import notify
from .metric import summarize
from .owner import CLOSED_BY_PARENT, SpanOwner, error_status, exception_attributes, now, record_exception

if TYPE_CHECKING:
    from .stage import Stage


class Node(SpanOwner):
    """A search-tree node: the ``ai.node {kind}`` span, child of its stage."""

    def __init__(
        self,
        stage: Stage,
        node_id: str | None,
        parent_id: str | None,
        kind: str | None,
        parent_context: SpanContext | None,
        attributes: Mapping[str, Any] | None,
        *,
        synthesized: bool = False,
        unborn: bool = False,
    ) -> None:
        self.stage = stage
        self.node_id: str = node_id  # type: ignore[assignment]  # None until born when unborn
        self.parent_id = to_text(parent_id, 256) if parent_id is not None else None
        self.kind = identifier(kind, 64) or "node"
        self.is_buggy: bool | None = None
        run = stage.run
        attrs: dict[str, Any] = {
            semconv.RUN_ID: run.run_id,
            semconv.STAGE_NAME: stage.name,
            semconv.NODE_ID: node_id,
            semconv.NODE_PARENT_ID: self.parent_id,
            semconv.NODE_KIND: self.kind,
        }
        if attributes:
            attrs.update(attributes)
        if synthesized:
            attrs[semconv.SPAN_SYNTHESIZED] = True
        attrs = coerce_attributes(attrs)
        links = []
        if parent_context is None and self.parent_id is not None:
            parent_node = stage.nodes.get(self.parent_id) or run.known_node(self.parent_id)
            if parent_node is not None:
                parent_context = parent_node.span_context
        if parent_context is not None and parent_context.is_valid:
            links.append(
                Link(
                    parent_context,
                    {semconv.NODE_ID: self.parent_id or "", semconv.LINK_TYPE: semconv.LINK_PARENT_NODE},
                )
            )
        start = now()
        span = get_pipeline().tracer.start_span(
            f"{semconv.SPAN_NODE} {self.kind}",
            context=trace_api.set_span_in_context(stage.span),
            attributes=attrs,
            links=links,
            start_time=start,
        )
        super().__init__(run, span, start)
        self._executions: list[Execution] = []
        self._created_attrs = attrs
        if not unborn:
            self._log_event(semconv.NODE_CREATED, attrs)

    @never_raise()
    def born(
        self,
        node_id: str,
        kind: str | None = None,
        parent_id: str | None = None,
        parent_context: SpanContext | None = None,
    ) -> None:
        """Give an unborn node (:meth:`Stage.unborn_node`) its id, and its kind and parent
        when they are only known now; emits ``ai.node.created``. Once only."""
        if self.node_id is not None or node_id is None:
            return
        self.node_id = node_id = to_text(node_id, 256)
        attrs: dict[str, Any] = {semconv.NODE_ID: node_id}
        if kind and kind != self.kind:
            self.kind = to_text(kind, 64)
            self._span.update_name(f"{semconv.SPAN_NODE} {self.kind}")
            attrs[semconv.NODE_KIND] = self.kind
        if parent_id is not None and self.parent_id is None:
            self.parent_id = to_text(parent_id, 256)
            attrs[semconv.NODE_PARENT_ID] = self.parent_id
            if parent_context is not None and parent_context.is_valid:
                self._span.add_link(
                    parent_context,
                    {semconv.NODE_ID: self.parent_id, semconv.LINK_TYPE: semconv.LINK_PARENT_NODE},
                )
        attrs = coerce_attributes(attrs)
        self._span.set_attributes(attrs)
        self._created_attrs = {**self._created_attrs, **attrs}
        self.stage._add_node(self, node_id)
        self.run._index_node(self)
        emit_log(
            self.log_context,
            self.run.run_id,
            self._created_attrs,
            event_name=semconv.NODE_CREATED,
            body=summary(semconv.NODE_CREATED, self._created_attrs),
            timestamp=self._start_ns,
        )

    def __repr__(self) -> str:
        return f"<otel_ai Node {self.node_id!r} {self.kind} {'ended' if self._ended else 'open'}>"

    @never_raise()
    def _exit(self, exc: BaseException | None) -> None:
        if exc is not None:
            self._end_node(True, None, None, None, exc=exc)
        elif not self._ended:
            # left without completed(): the span ends, the outcome stays unknown
            self._end_node(None, None, None, None)

    def _base_attrs(self) -> dict[str, Any]:
        return {semconv.STAGE_NAME: self.stage.name, semconv.NODE_ID: self.node_id}

    _duplicate_attributes = _base_attrs

    def _forget_open(self) -> None:
        super()._forget_open()
        self.stage._forget_node(self)

    @never_raise()
    def code_generated(
        self,
        code: str | bytes | None = None,
        *,
        size_bytes: int | None = None,
        sha256: str | None = None,
        **attributes: Any,
    ) -> None:
        """``ai.node.code_generated`` with the code's size and SHA-256 (not the code)."""
        if code is not None:
            if isinstance(code, str):
                data = code.encode("utf-8", errors="replace")
            elif isinstance(code, (bytes, bytearray, memoryview)):
                data = bytes(code)
            else:  # never bytes(n) of an int: that would allocate n bytes
                data = to_text(code, 1 << 20).encode("utf-8", errors="replace")
            size_bytes = len(data) if size_bytes is None else size_bytes
            sha256 = sha256 or hashlib.sha256(data).hexdigest()
        attrs = {
            **self._base_attrs(),
            semconv.NODE_CODE_SIZE: size_bytes,
            semconv.NODE_CODE_SHA256: sha256,
            **attributes,
        }
        self._event(semconv.NODE_CODE_GENERATED, attrs)

    @never_raise()
    def executing(self, purpose: str | None = None, **attributes: Any) -> Execution:
        """Start the ``ai.node.execute`` span (a context manager); emits ``ai.node.executing``.

        Without ``with``, the execution ends when the node completes.
        """
        execution = Execution(self, purpose, attributes)
        with self._lock:
            self._executions.append(execution)
        self.run._adopt(execution)
        execution._check_parent_open(self, None)
        return execution

    @never_raise()
    def completed(
        self,
        is_buggy: bool | None = None,
        metric: Any = None,
        exec_time_s: float | None = None,
        exc_type: str | None = None,
        **attributes: Any,
    ) -> None:
        """End the node (``ai.node.completed``); a buggy node ends with status ERROR."""
        self._end_node(is_buggy, metric, exec_time_s, exc_type, extra=attributes)

    def _close_by_parent(self, outcome: str) -> None:
        self._end_node(None, None, None, None, closed_by=CLOSED_BY_PARENT)

    def _end_node(
        self,
        is_buggy: Any,
        metric: Any,
        exec_time_s: Any,
        exc_type: Any,
        *,
        exc: BaseException | None = None,
        closed_by: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if not self._claim_end():
            if self.owned_here:
                self._duplicate(semconv.NODE_COMPLETED, {semconv.NODE_IS_BUGGY: is_buggy})
            return
        for execution in list(self._executions):
            if not execution.ended:
                execution._close_by_parent("node_end")
        error: dict[str, Any] | None = None
        if exc is not None:
            error = exception_attributes(exc)
            exc_type = exc_type or error[semconv.ERROR_TYPE]
            is_buggy = True
        buggy = None if is_buggy is None else bool(is_buggy)
        self.is_buggy = buggy
        scored = summarize(metric)
        exec_time = as_float(exec_time_s)
        attrs: dict[str, Any] = {
            **self._base_attrs(),
            semconv.NODE_IS_BUGGY: buggy,
            semconv.NODE_METRIC: scored.headline,
            semconv.NODE_METRIC_VALUE: scored.value,
            **scored.attributes,
            semconv.NODE_EXEC_TIME_S: exec_time,
            semconv.NODE_EXC_TYPE: None if exc_type is None else to_text(exc_type, 256),
            semconv.SPAN_CLOSED_BY: closed_by,
            **(extra or {}),
        }
        if error:
            attrs.update(error)
        attrs = coerce_attributes(attrs)
        status = None
        if buggy:
            status = Status(StatusCode.ERROR, f"buggy node: {attrs.get(semconv.NODE_EXC_TYPE, 'bug')}")
        self._log_event(semconv.NODE_COMPLETED, attrs, WARN if error else INFO)
        if error:
            record_exception(self._span, error)
        end = now()
        self._finish(status, attrs)
        notify("node_ended", self, buggy)
        if not self.stage.owned_here:  # a pool worker's node: the stage's owner counts it
            ledger.node_ended_elsewhere(
                self.span_context.trace_id, self.stage.span_context.span_id, self.span_context.span_id, buggy
            )
        labels = {semconv.RUN_ID: self.run.run_id, semconv.STAGE_NAME: self.stage.name}
        tools = instruments()
        if buggy is not None:
            tools.nodes.add(
                1,
                {
                    **labels,
                    semconv.NODE_STATUS: semconv.NODE_STATUS_BUGGY if buggy else semconv.NODE_STATUS_GOOD,
                },
            )
        tools.node_duration.record(self._duration_s(end), labels)
        if exec_time is not None and is_finite(exec_time) and exec_time >= 0:
            tools.node_exec_time.record(exec_time, labels)


class Execution(SpanOwner):
    """One run of a node's code: the ``ai.node.execute`` span."""

    def __init__(self, node: Node, purpose: str | None, attributes: Mapping[str, Any] | None) -> None:
        self.node = node
        self.stage = node.stage
        attrs: dict[str, Any] = {
            semconv.RUN_ID: node.run.run_id,
            semconv.STAGE_NAME: node.stage.name,
            semconv.NODE_ID: node.node_id,
            semconv.NODE_EXEC_PURPOSE: purpose,
        }
        if attributes:
            attrs.update(attributes)
        attrs = coerce_attributes(attrs)
        start = now()
        span = get_pipeline().tracer.start_span(
            semconv.SPAN_NODE_EXECUTE,
            context=trace_api.set_span_in_context(node.span),
            attributes=attrs,
            start_time=start,
        )
        super().__init__(node.run, span, start)
        self._log_event(semconv.NODE_EXECUTING, attrs)

    @never_raise()
    def _exit(self, exc: BaseException | None) -> None:
        self.end(exc=exc)

    @never_raise()
    def end(self, *, exc: BaseException | None = None, exec_time_s: float | None = None) -> None:
        """End the execution span (status ERROR with the exception when one escaped)."""
        if not self._claim_end():
            return
        status = None
        attrs: dict[str, Any] = {
            semconv.NODE_EXEC_DURATION_S: exec_time_s if exec_time_s is not None else self._duration_s()
        }
        if exc is not None:
            error = exception_attributes(exc)
            attrs.update(error)
            record_exception(self._span, error)
            status = error_status(error)
        self._finish(status, attrs)

    def _close_by_parent(self, outcome: str) -> None:
        self.end()
