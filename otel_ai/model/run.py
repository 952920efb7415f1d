"""Runs: :class:`Run`, the ``ai.run`` root span of one trace, which starts and finds its
stages and its closing steps (paper, review), routes run-level events to its current span,
and ends the whole tree it owns."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any, TypeVar

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, Status, StatusCode

from .. import semconv
from .._internal import never_raise, report_internal_error
from ..config import new_run_id
from ..export.ids import given_ids
from ..export.providers import get_pipeline
from .coerce import as_float, coerce_attributes, identifier, to_text, truncate
from .events import ERROR, INFO, WARN, emit_log, severity
from .listeners import notify
from .node import Execution, Node
from .owner import SpanOwner, error_status, exception_attributes, now, record_exception
from .phases import Paper, Validation
from .pooled import carried_stage, published_stage
from .registry import registry
from .stage import Stage

_ChildT = TypeVar("_ChildT", bound=SpanOwner)


class Run(SpanOwner):
    """An AI-scientist run: the ``ai.run`` root span of one trace.

    Use :func:`otel_ai.run` to start one. Emits ``ai.run.started`` at once and one of
    ``ai.run.completed`` / ``ai.run.failed`` / ``ai.run.canceled`` when it ends.
    """

    def __init__(
        self,
        run_id: str | None = None,
        *,
        pod_id: str | None = None,
        gpu: str | None = None,
        region: str | None = None,
        image: str | None = None,
        parent: Context | None = None,
        links: Sequence[Link] = (),
        synthesized: bool = False,
        attributes: Mapping[str, Any] | None = None,
        attach: SpanContext | None = None,
        start_time: int | None = None,
        ids: tuple[int | None, int] | None = None,
    ) -> None:
        """Start a run. With ``attach`` (the ``ai.run`` span of ``otel-ai run``, from
        TRACEPARENT), no span is started here: this process's stages join that run, and
        how it ends is reported to the wrapper, which ends the span.

        ``start_time`` (ns) and ``ids`` (trace id, or None under a parent; span id) are
        for a run whose span context was handed out before the span could be started
        (``otel-ai run`` starts its command first)."""
        pipeline = get_pipeline()
        self.attached = attach is not None
        self.run_id = identifier(run_id) or pipeline.settings.run_id or new_run_id()
        resource = pipeline.resource.attributes if pipeline.resource is not None else {}
        attrs: dict[str, Any] = {
            semconv.RUN_ID: self.run_id,
            semconv.POD_ID: identifier(pod_id) or resource.get(semconv.POD_ID),
            semconv.GPU_NAME: identifier(gpu) or resource.get(semconv.GPU_NAME),
            semconv.CLOUD_REGION: identifier(region) or resource.get(semconv.CLOUD_REGION),
            semconv.CONTAINER_IMAGE_NAME: identifier(image) or resource.get(semconv.CONTAINER_IMAGE_NAME),
        }
        if attributes:
            attrs.update(attributes)
        if synthesized:
            attrs[semconv.SPAN_SYNTHESIZED] = True
        attrs = coerce_attributes(attrs)
        start = start_time if start_time is not None else now()
        if attach is not None:
            span: Span = trace_api.NonRecordingSpan(attach)
        else:
            with given_ids(*ids) if ids is not None else nullcontext():
                span = pipeline.tracer.start_span(
                    semconv.SPAN_RUN,
                    # a run is a new trace unless an orchestrator's context is given
                    context=parent if parent is not None else Context(),
                    kind=trace_api.SpanKind.INTERNAL,
                    attributes=attrs,
                    links=links,
                    start_time=start,
                )
            if ids is not None and span.get_span_context().span_id != ids[1]:
                report_internal_error(
                    "otel_ai.model.Run[ids]", RuntimeError("the run span did not get the span id handed out")
                )
        super().__init__(None, span, start)
        self._run = self
        self.outcome: str | None = None
        self.stages: dict[str, Stage] = {}
        self._stage_order: list[Stage] = []
        self._children: list[SpanOwner] = []
        # the open children, oldest first: where "the current span" is found in O(1)
        self._open_children: dict[SpanOwner, None] = {}
        self._owners: dict[int, SpanOwner] = {span.get_span_context().span_id: self}
        self._nodes_by_id: dict[str, Node] = {}
        self._failed_stage: str | None = None
        self.idea: str | None = None
        self.best: dict[str, Any] | None = None  # the latest stage's best node: stage, node_id, metric
        if attach is None:
            self._log_event(semconv.RUN_STARTED, attrs)
        else:
            self._not_owned()  # shared by every process of the wrapped command, owned by none
        registry.add(self)

    def __repr__(self) -> str:
        return f"<otel_ai Run {self.run_id!r} {'ended ' + str(self.outcome) if self._ended else 'open'}>"

    # -- context manager --------------------------------------------------------------
    @never_raise()
    def _exit(self, exc: BaseException | None) -> None:
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
            self.complete()
        elif isinstance(exc, KeyboardInterrupt):
            self.cancel("KeyboardInterrupt")
        else:
            self.fail(exc)

    # -- children ---------------------------------------------------------------------
    @never_raise()
    def stage(self, name: str | None, description: str | None = None, **attributes: Any) -> Stage:
        """Start (or return the open) ``ai.stage {name}`` span; emits ``ai.run.stage_started``."""
        name = identifier(name) or "unknown"
        with self._lock:
            existing = self.stages.get(name)
            if existing is not None and not existing.ended:
                existing._duplicate(semconv.STAGE_STARTED)
                return existing
            stage = Stage(self, name, description, attributes)
            self.stages[name] = stage
            self._stage_order.append(stage)
            self._adopt(stage)
        stage._check_parent_open(self, self.outcome)
        return stage

    @never_raise()
    def find_stage(self, name: Any = None) -> Stage:
        """The stage of that name; the current one when None. In a pool task, the stage
        the task was submitted in is joined (:mod:`.pooled`). A stage never started is
        started here (flagged ``ai.span.synthesized``), so an event for it is still recorded."""
        with self._lock:
            # a pool task's stage; else the one a parent process named (spawned workers)
            carried = carried_stage(self.span_context) or published_stage(self.span_context)
            if name is None:
                current = self.current_stage
                if current is not None:
                    return current
                name = carried[0] if carried is not None else "unknown"
            stage = self.stages.get(name)
            if carried is not None and carried[0] == name:
                if stage is None or stage.span_context.span_id != carried[1].span_id:
                    return self.join_stage(name, carried[1])
            if stage is None:
                stage = Stage(self, name, None, None, synthesized=True)
                self.stages[name] = stage
                self._stage_order.append(stage)
                self._adopt(stage)
                stage._check_parent_open(self, self.outcome)
            return stage

    @never_raise()
    def join_stage(self, name: str, span_context: SpanContext, description: str | None = None) -> Stage:
        """The stage whose ``ai.stage`` span (``span_context``) lives in another process,
        e.g. the process that submitted this process-pool task: nodes started on it are
        children of that span. The stage is neither started nor ended here; one this
        process already knows by that span (inherited through fork) is returned as is."""
        name = identifier(name) or "unknown"
        with self._lock:
            owner = self._owners.get(span_context.span_id)
            if isinstance(owner, Stage):
                return owner
            stage = Stage(self, name, description, None, attach=span_context)
            self.stages[name] = stage
            self._stage_order.append(stage)
            self._adopt(stage)
        return stage

    @property
    def current_stage(self) -> Stage | None:
        """The most recently started stage that is still open."""
        for stage in reversed(self._stage_order):
            if not stage.ended:
                return stage
        return None

    def _adopt(self, owner: SpanOwner) -> None:
        """A span of this run's tree joins it (the run finds and ends it)."""
        with self._lock:
            self._children.append(owner)
            self._owners[owner.span_context.span_id] = owner
            if not owner.ended:
                self._open_children[owner] = None

    def _forget_child(self, owner: SpanOwner) -> None:
        with self._lock:
            self._open_children.pop(owner, None)

    def _index_node(self, node: Node) -> None:
        with self._lock:
            self._nodes_by_id[node.node_id] = node

    def _note_failed_stage(self, name: str | None) -> None:
        """The stage the run failed in, unless one is known already."""
        self._failed_stage = self._failed_stage or name

    def known_node(self, node_id: str) -> Node | None:
        """The node of that id in any stage of this run, if this process knows it."""
        return self._nodes_by_id.get(node_id)

    def owner_of(self, span_id: int) -> SpanOwner | None:
        """The span of this run's tree with that span id, if this process knows it."""
        return self._owners.get(span_id)

    @never_raise()
    def paper(self) -> Paper:
        """Start the ``ai.paper`` span; emits ``ai.paper.started``."""
        paper = Paper(self)
        self._adopt(paper)
        paper._check_parent_open(self, self.outcome)
        return paper

    @never_raise()
    def validation(self, model: str | None = None, **attributes: Any) -> Validation:
        """Start the ``ai.validation`` span; emits ``ai.validation.auto_started``."""
        validation = Validation(self, model, attributes)
        self._adopt(validation)
        validation._check_parent_open(self, self.outcome)
        return validation

    def open_child(self, kind: type[_ChildT]) -> _ChildT | None:
        """The most recently started span of that kind (``Paper``, ``Validation``,
        ``Stage``...) of this run that is still open, if any."""
        with self._lock:
            for child in reversed(self._open_children):
                if isinstance(child, kind) and not child.ended:
                    return child
        return None

    def current_owner(self) -> SpanOwner:
        """Where a "current span" event goes: the active span if it is ours, else the
        innermost open node, stage, paper or validation, else the run."""
        active = trace_api.get_current_span().get_span_context()
        owner = self._owners.get(active.span_id) if active.is_valid else None
        if owner is not None and not owner.ended:
            return owner
        with self._lock:
            for child in reversed(self._open_children):
                if not child.ended and not isinstance(child, Execution):
                    stage_node = child.current_node if isinstance(child, Stage) else None
                    return stage_node or child
        return self

    # -- run-level events -------------------------------------------------------------
    @never_raise()
    def heartbeat(self) -> None:
        """Emit ``ai.run.heartbeat`` (a log-based event only)."""
        self._log_event(semconv.RUN_HEARTBEAT, {})

    @never_raise()
    def log(self, message: Any, level: Any = "info", source: str | None = None, **attributes: Any) -> None:
        """A plain log record (``ai.run.log``) correlated to the current span of the run."""
        attrs = coerce_attributes(attributes)
        if source is not None:
            attrs[semconv.LOG_SOURCE] = to_text(source, 1024)
        text = message if isinstance(message, str) else to_text(message, 1 << 20)
        limit = 65536
        if len(text) > limit:
            text = truncate(text, limit)
            attrs[semconv.LOG_TRUNCATED] = True
        context, stage_name = self.log_target()
        if stage_name is not None:
            attrs.setdefault(semconv.STAGE_NAME, stage_name)
        emit_log(context, self.run_id, attrs, event_name=None, body=text, level=severity(level))

    def log_target(self) -> tuple[Context, str | None]:
        """Where a log line of this run belongs now: the context of its current span (the
        active span if it is the run's, else the innermost open node, stage, paper or
        review, else the run) and the name of the stage it falls in, if any."""
        owner = self.current_owner()
        stage = owner if isinstance(owner, Stage) else getattr(owner, "stage", None)
        return owner.log_context, stage.name if isinstance(stage, Stage) else None

    @never_raise()
    def artifact_detected(
        self, path: str, type: str | None = None, size_bytes: int | None = None, **attributes: Any
    ) -> None:
        """``ai.artifact.detected`` on the current span."""
        attrs = {
            semconv.ARTIFACT_PATH: path,
            semconv.ARTIFACT_TYPE: type,
            semconv.ARTIFACT_SIZE: size_bytes,
            **attributes,
        }
        self.current_owner()._event(semconv.ARTIFACT_DETECTED, attrs)

    @never_raise()
    def artifact_registered(
        self,
        key: str,
        size_bytes: int | None = None,
        sha256: str | None = None,
        content_type: str | None = None,
        kind: str | None = None,
        uri: str | None = None,
        **attributes: Any,
    ) -> None:
        """``ai.artifact.registered`` on the current span."""
        attrs = {
            semconv.ARTIFACT_KEY: key,
            semconv.ARTIFACT_URI: uri,
            semconv.ARTIFACT_SIZE: size_bytes,
            semconv.ARTIFACT_SHA256: sha256,
            semconv.ARTIFACT_CONTENT_TYPE: content_type,
            semconv.ARTIFACT_KIND: kind,
            **attributes,
        }
        self.current_owner()._event(semconv.ARTIFACT_REGISTERED, attrs)

    @never_raise()
    def event(self, name: str, attributes: Mapping[str, Any] | None = None, level: Any = "info") -> None:
        """Any other event, recorded as given: a log-based event of that name on the
        current span, and a span event there."""
        self.current_owner()._event(to_text(name, 256) or "unknown", attributes or {}, severity(level))

    # -- input and output (what LLM backends list a trace by) ---------------------------
    @never_raise()
    def set_idea(self, title: Any) -> None:
        """The idea the run pursues (its title): ``ai.run.idea``, and the run's input
        (``input.value``) for backends that list traces by input and output."""
        if title is None:
            return
        text = to_text(title, 1024)
        self.idea = text
        notify("run_idea", self, text)
        if self.attached:
            return
        if not self._ended:
            self._span.set_attributes(
                {
                    semconv.RUN_IDEA: text,
                    semconv.INPUT_VALUE: text,
                    semconv.INPUT_MIME_TYPE: semconv.MIME_TEXT,
                }
            )

    @never_raise()
    def note_best(self, stage: Any, node_id: Any, metric: Any = None, value: Any = None) -> None:
        """A stage's best node so far; the last one noted is the run's result (its output)."""
        best = {
            "stage": to_text(stage, 256),
            "node_id": to_text(node_id, 256),
            "metric": None if metric is None else to_text(metric, 256),
            "value": as_float(value),
        }
        self.best = best
        notify("run_best", self, best)

    def _output(self, outcome: str, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """The run's output: its outcome, best result and, when it did not complete, why."""
        output: dict[str, Any] = {"outcome": outcome}
        if self.best is not None:
            output["best"] = {k: v for k, v in self.best.items() if v is not None}
        for key, name in (
            (semconv.EXCEPTION_MESSAGE, "error"),
            (semconv.RUN_CANCEL_REASON, "reason"),
            (semconv.RUN_END_REASON, "reason"),
            (semconv.RUN_FAILED_STAGE, "failed_stage"),
        ):
            if attributes.get(key) is not None:
                output[name] = truncate(str(attributes[key]), 1024)
        return {
            semconv.OUTPUT_VALUE: json.dumps(output, ensure_ascii=False),
            semconv.OUTPUT_MIME_TYPE: semconv.MIME_JSON,
        }

    # -- ending -----------------------------------------------------------------------
    @never_raise()
    def complete(self, duration_s: float | None = None) -> None:
        """End the run as completed (``ai.run.completed``, status OK)."""
        self._end_run(
            semconv.OUTCOME_COMPLETED,
            semconv.RUN_COMPLETED,
            Status(StatusCode.OK),
            {semconv.RUN_DURATION_S: duration_s},
            INFO,
        )

    @never_raise()
    def fail(
        self,
        exc: BaseException | None = None,
        *,
        stage: str | None = None,
        error_type: str | None = None,
        message: Any = None,
        stacktrace: Any = None,
        retryable: bool | None = None,
    ) -> None:
        """End the run as failed (``ai.run.failed``, status ERROR, an exception event)."""
        failed_stage = stage or self._failed_stage
        if failed_stage is None:
            current = self.current_stage
            failed_stage = (
                current.name
                if current is not None
                else (self._stage_order[-1].name if self._stage_order else None)
            )
        error = exception_attributes(exc, message, stacktrace, error_type)
        attrs = {
            semconv.RUN_FAILED_STAGE: failed_stage or "unknown",
            semconv.RUN_RETRYABLE: bool(retryable) if retryable is not None else False,
            **error,
        }
        self._end_run(
            semconv.OUTCOME_FAILED,
            semconv.RUN_FAILED,
            error_status(error),
            attrs,
            ERROR,
            exception=error,
        )

    @never_raise()
    def cancel(self, reason: Any = None, *, stage: str | None = None) -> None:
        """End the run as canceled (``ai.run.canceled``, status ERROR); ``stage``: the
        stage it was in (what a later failure of the run names)."""
        if stage:
            self._failed_stage = stage
        text = to_text(reason if reason is not None else "canceled", 1024)
        self._end_run(
            semconv.OUTCOME_CANCELED,
            semconv.RUN_CANCELED,
            Status(StatusCode.ERROR, f"canceled: {text}"),
            {semconv.RUN_CANCEL_REASON: text},
            WARN,
        )

    @never_raise()
    def abandon(self, reason: str = "process exit") -> None:
        """End a run nobody ended (``ai.run.abandoned``): at process exit or shutdown."""
        self._end_run(
            semconv.OUTCOME_ABANDONED,
            semconv.RUN_ABANDONED,
            Status(StatusCode.ERROR, f"run not ended before {reason}"),
            {semconv.RUN_END_REASON: reason},
            WARN,
        )

    def _end_run(
        self,
        outcome: str,
        event: str,
        status: Status,
        attributes: dict[str, Any],
        level: tuple[Any, str],
        exception: Mapping[str, Any] | None = None,
    ) -> None:
        if self.attached:
            self._report_end(outcome, attributes, exception)
            return
        if not self._claim_end():
            if self.owned_here:
                self._duplicate(event, attributes)
            return
        self.outcome = outcome
        end = now()
        if attributes.get(semconv.RUN_DURATION_S) is None:
            attributes[semconv.RUN_DURATION_S] = self._duration_s(end)
        attributes[semconv.RUN_OUTCOME] = outcome
        self._close_children(outcome)
        attrs = coerce_attributes(attributes)
        self._log_event(event, attrs, level)
        self._events.add(event, attrs)
        if exception:
            record_exception(self._span, exception)
        self._finish(status, {**attrs, **self._output(outcome, attrs)})
        registry.ended(self)
        notify("run_ended", self, outcome, attrs)

    def _report_end(
        self, outcome: str, attributes: Mapping[str, Any], exception: Mapping[str, Any] | None
    ) -> None:
        """Attached to the wrapper's run: end this process's open stages and tell the
        wrapper how the run ended here; the wrapper ends the ``ai.run`` span."""
        self._close_children(outcome, owned_only=True)
        notify("run_ended", self, outcome, coerce_attributes({**attributes, **(exception or {})}))

    def _close_children(self, outcome: str, *, owned_only: bool = False) -> None:
        with self._lock:
            children = list(self._open_children)
        for child in reversed(children):
            if not child.ended and (child.owned_here or not owned_only):
                child._close_by_parent(outcome)

    def _close_by_parent(self, outcome: str) -> None:  # pragma: no cover - runs have no parent of ours
        self.abandon()


__all__ = ["Run", "new_run_id"]
