"""The run / stage / node model: spans, their lifecycle events, and their limits.

``Run`` is the ``ai.run`` root span; ``Stage`` an ``ai.stage {stage}`` child; ``Node`` an
``ai.node {kind}`` child of its stage, linked to the span of the node it derives from;
``Execution`` the ``ai.node.execute`` span; ``Paper`` and ``Validation`` the writeup and
review spans. Each object works as a context manager or by explicit calls, is
thread-safe, ends its span exactly once, and tolerates events out of order.

Every method is a telemetry entry point: it never raises into the experiment (see
:func:`otel_ai._internal.never_raise`). Exceptions escaping a ``with`` block are recorded
and propagate unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import traceback
import uuid
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, Status, StatusCode

from .. import semconv
from .._internal import never_raise, report_internal_error
from ..export.providers import before_shutdown, get_pipeline
from ..propagation import (
    MSG_BEST,
    MSG_NODE,
    MSG_PROGRESS,
    MSG_RUN_END,
    MSG_RUN_IDEA,
    MSG_STAGE,
    MSG_STAGE_END,
    add_exit_hook,
    report,
)
from .coerce import MAX_TEXT, as_float, coerce_attributes, identifier, is_finite, to_text, truncate
from .events import ERROR, INFO, WARN, EventBuffer, emit_log, instruments, severity, summary
from .metric import summarize

_CLOSED_BY_PARENT = "parent_end"
_CLOSED_BY_SHUTDOWN = "shutdown"

# Every span of ours still open in this process: the safety net that ends them at
# shutdown, so no span is ever left open (and so lost) when the process exits.
_open_lock = threading.Lock()
_open_spans: set[_SpanOwner] = set()


_NO_EVENTS = EventBuffer()  # what an ended span keeps of its events: nothing


def _now() -> int:
    return time.time_ns()


class _SpanOwner:
    """One span of ours: buffered events, attached context, an end that happens once."""

    kind_name = "span"

    def __init__(self, run: Run | None, span: Span, start_ns: int) -> None:
        self._run = run
        self._span = span
        self._start_ns = start_ns
        self._lock = threading.RLock()
        self._ended = False
        self._pid = os.getpid()
        self._events = EventBuffer()
        self._tokens: list[object] = []
        # the context log records of this span are emitted in (built once: it never changes)
        self.log_context = trace_api.set_span_in_context(span)
        with _open_lock:
            _open_spans.add(self)

    # -- identity ---------------------------------------------------------------------
    @property
    def span(self) -> Span:
        return self._span

    @property
    def span_context(self) -> SpanContext:
        return self._span.get_span_context()

    @property
    def run(self) -> Run:
        assert self._run is not None
        return self._run

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def owned_here(self) -> bool:
        """False in a forked child: the parent process ends this span, not the child."""
        return self._pid == os.getpid()

    # -- emission ---------------------------------------------------------------------
    def _log_event(
        self,
        name: str,
        attributes: Mapping[str, Any],
        level: tuple[Any, str] = INFO,
        *,
        body: str | None = None,
    ) -> None:
        emit_log(
            self.log_context,
            self.run.run_id,
            attributes,
            event_name=name,
            body=body if body is not None else summary(name, attributes),
            level=level,
        )

    def _span_event(self, name: str, attributes: dict[str, Any]) -> None:
        if self._ended:
            return
        self._events.add(name, attributes)

    def _event(
        self, name: str, attributes: Mapping[str, Any], level: tuple[Any, str] = INFO
    ) -> dict[str, Any]:
        """A lifecycle event as a span event on this span and as a log-based event."""
        attrs = coerce_attributes(attributes)
        late = self._ended
        if late:
            attrs[semconv.EVENT_LATE] = True
        self._log_event(name, attrs, level)
        if not late:
            self._span_event(name, attrs)
        return attrs

    # -- ending -----------------------------------------------------------------------
    def _claim_end(self) -> bool:
        """True for the one caller that gets to end this span."""
        with self._lock:
            if self._ended or not self.owned_here:
                return False
            self._ended = True
        with _open_lock:
            _open_spans.discard(self)
        self._forget_open()
        return True

    def _forget_open(self) -> None:
        """No longer a candidate for "the current span" of its run (kept O(1): the run
        and the stage index their open children, so a lookup never walks ended ones)."""
        run = self._run
        if run is not None and run is not self:
            with run._lock:
                run._open_children.pop(self, None)

    def _close_by_parent(self, outcome: str) -> None:
        raise NotImplementedError

    def _check_parent_open(self, parent: _SpanOwner, outcome: str | None) -> None:
        """A child started under a span that already ended is recorded, flagged late,
        and ended at once: nothing would end it otherwise."""
        if parent.ended:
            self._span.set_attribute(semconv.EVENT_LATE, True)
            self._close_by_parent(outcome or _CLOSED_BY_PARENT)

    def _finish(self, status: Status | None = None, attributes: Mapping[str, Any] | None = None) -> None:
        span = self._span
        if attributes:
            span.set_attributes(coerce_attributes(attributes))
        self._events.apply(span)
        if status is not None:
            span.set_status(status)
        span.end()
        # An ended span is exported and immutable: keep only its context, so what an ended
        # node costs in memory stays small and fixed however long the run (docs/benchmarks.md).
        self._span = trace_api.NonRecordingSpan(span.get_span_context())
        self.log_context = trace_api.set_span_in_context(self._span)
        self._events = _NO_EVENTS

    def _attach(self) -> None:
        self._tokens.append(context_api.attach(trace_api.set_span_in_context(self._span)))

    def _detach(self) -> None:
        if self._tokens:
            token = self._tokens.pop()
            try:
                context_api.detach(token)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - exited in another context; nothing to restore
                pass

    def _duration_s(self, end_ns: int | None = None) -> float:
        return round(((end_ns or _now()) - self._start_ns) / 1e9, 6)


def _exception_attributes(
    exc: BaseException | None, message: Any = None, stacktrace: Any = None, error_type: Any = None
) -> dict[str, Any]:
    if exc is not None:
        error_type = error_type or type(exc).__qualname__
        message = str(exc) if message is None else message
        if stacktrace is None:
            stacktrace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    attrs: dict[str, Any] = {
        semconv.ERROR_TYPE: to_text(error_type or "unknown", 256),
        semconv.EXCEPTION_TYPE: to_text(error_type or "unknown", 256),
    }
    if message is not None:
        attrs[semconv.EXCEPTION_MESSAGE] = to_text(message, MAX_TEXT)
    if stacktrace:
        text = stacktrace if isinstance(stacktrace, str) else to_text(stacktrace, 1 << 22)
        attrs[semconv.EXCEPTION_STACKTRACE] = truncate(text, MAX_TEXT, keep_tail=True)
    return attrs


def _record_exception(span: Span, attrs: Mapping[str, Any]) -> None:
    """The OTel "exception" span event, from attributes already bounded."""
    span.add_event(
        "exception",
        {k: v for k, v in attrs.items() if k.startswith("exception.")},
    )


# =======================================================================================
class Run(_SpanOwner):
    """An AI-scientist run: the ``ai.run`` root span of one trace.

    Use :func:`otel_ai.run` to start one. Emits ``ai.run.started`` at once and one of
    ``ai.run.completed`` / ``ai.run.failed`` / ``ai.run.canceled`` when it ends.
    """

    kind_name = "run"

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
    ) -> None:
        """Start a run. With ``attach`` (the ``ai.run`` span of ``otel-ai run``, from
        TRACEPARENT), no span is started here: this process's stages join that run, and
        how it ends is reported to the wrapper, which ends the span."""
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
        start = _now()
        if attach is not None:
            span: Span = trace_api.NonRecordingSpan(attach)
        else:
            span = pipeline.tracer.start_span(
                semconv.SPAN_RUN,
                # a run is a new trace unless an orchestrator's context is given
                context=parent if parent is not None else Context(),
                kind=trace_api.SpanKind.INTERNAL,
                attributes=attrs,
                links=links,
                start_time=start,
            )
        super().__init__(None, span, start)
        self._run = self
        self.outcome: str | None = None
        self.stages: dict[str, Stage] = {}
        self._stage_order: list[Stage] = []
        self._children: list[_SpanOwner] = []
        # the open children, oldest first: where "the current span" is found in O(1)
        self._open_children: dict[_SpanOwner, None] = {}
        self._owners: dict[int, _SpanOwner] = {span.get_span_context().span_id: self}
        self._nodes_by_id: dict[str, Node] = {}
        self._failed_stage: str | None = None
        self.idea: str | None = None
        self.best: dict[str, Any] | None = None  # the latest stage's best node: stage, node_id, metric
        from .registry import registry

        if attach is None:
            self._log_event(semconv.RUN_STARTED, attrs)
        else:
            self._pid = -1  # shared by every process of the wrapped command, owned by none
            with _open_lock:
                _open_spans.discard(self)
        registry.add(self)

    def __repr__(self) -> str:
        return f"<otel_ai Run {self.run_id!r} {'ended ' + str(self.outcome) if self._ended else 'open'}>"

    # -- context manager --------------------------------------------------------------
    def __enter__(self) -> Run:
        self._attach()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._detach()
        self._exit(exc)

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
    def stage(self, name: str, description: str | None = None, **attributes: Any) -> Stage:
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

    def _get_stage(self, name: str | None) -> Stage:
        """The stage of that name; the current one when None; started implicitly if need be."""
        with self._lock:
            if name is None:
                current = self.current_stage
                if current is not None:
                    return current
                name = "unknown"
            stage = self.stages.get(name)
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

    def _adopt(self, owner: _SpanOwner) -> None:
        with self._lock:
            self._children.append(owner)
            self._owners[owner.span_context.span_id] = owner
            if not owner.ended:
                self._open_children[owner] = None

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

    def _open_child(self, kind: type[_SpanOwner]) -> _SpanOwner | None:
        with self._lock:
            for child in reversed(self._open_children):
                if isinstance(child, kind) and not child.ended:
                    return child
        return None

    def _current_owner(self) -> _SpanOwner:
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
        owner = self._current_owner()
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
        self._current_owner()._event(semconv.ARTIFACT_DETECTED, attrs)

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
        self._current_owner()._event(semconv.ARTIFACT_REGISTERED, attrs)

    @never_raise()
    def event(self, name: str, attributes: Mapping[str, Any] | None = None, level: Any = "info") -> None:
        """Any other event, recorded as given: a log-based event of that name on the
        current span, and a span event there."""
        self._current_owner()._event(to_text(name, 256) or "unknown", attributes or {}, severity(level))

    # -- input and output (what LLM backends list a trace by) ---------------------------
    @never_raise()
    def set_idea(self, title: Any) -> None:
        """The idea the run pursues (its title): ``ai.run.idea``, and the run's input
        (``input.value``) for backends that list traces by input and output."""
        if title is None:
            return
        text = to_text(title, 1024)
        self.idea = text
        if self.attached:
            report(MSG_RUN_IDEA, idea=text)
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
        if self.attached:
            report(MSG_BEST, **best)

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
        error = _exception_attributes(exc, message, stacktrace, error_type)
        attrs = {
            semconv.RUN_FAILED_STAGE: failed_stage or "unknown",
            semconv.RUN_RETRYABLE: bool(retryable) if retryable is not None else False,
            **error,
        }
        self._end_run(
            semconv.OUTCOME_FAILED,
            semconv.RUN_FAILED,
            Status(
                StatusCode.ERROR,
                truncate(f"{error[semconv.ERROR_TYPE]}: {error.get(semconv.EXCEPTION_MESSAGE, '')}", 1024),
            ),
            attrs,
            ERROR,
            exception=error,
        )

    @never_raise()
    def cancel(self, reason: Any = None) -> None:
        """End the run as canceled (``ai.run.canceled``, status ERROR)."""
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
        end = _now()
        if attributes.get(semconv.RUN_DURATION_S) is None:
            attributes[semconv.RUN_DURATION_S] = self._duration_s(end)
        attributes[semconv.RUN_OUTCOME] = outcome
        self._close_children(outcome)
        attrs = coerce_attributes(attributes)
        self._log_event(event, attrs, level)
        self._events.add(event, attrs)
        if exception:
            _record_exception(self._span, exception)
        self._finish(status, {**attrs, **self._output(outcome, attrs)})
        from .registry import registry

        registry.ended(self)

    def _report_end(
        self, outcome: str, attributes: Mapping[str, Any], exception: Mapping[str, Any] | None
    ) -> None:
        """Attached to the wrapper's run: end this process's open stages and tell the
        wrapper how the run ended here; the wrapper ends the ``ai.run`` span."""
        self._close_children(outcome, owned_only=True)
        report(
            MSG_RUN_END,
            outcome=outcome,
            attributes=coerce_attributes({**attributes, **(exception or {})}),
        )

    def _close_children(self, outcome: str, *, owned_only: bool = False) -> None:
        with self._lock:
            children = list(self._open_children)
        for child in reversed(children):
            if not child.ended and (child.owned_here or not owned_only):
                child._close_by_parent(outcome)

    def _duplicate(self, event: str, attributes: Mapping[str, Any] | None = None) -> None:
        attrs = coerce_attributes(attributes)
        attrs[semconv.EVENT_DUPLICATE] = True
        self._log_event(event, attrs, WARN)

    def _close_by_parent(self, outcome: str) -> None:  # pragma: no cover - runs have no parent of ours
        self.abandon()


# =======================================================================================
class Stage(_SpanOwner):
    """One stage or sub-stage of the search: the ``ai.stage {name}`` span."""

    kind_name = "stage"

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
        start = _now()
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
            self._pid = -1  # owned by the process that started it, ended there
            with _open_lock:
                _open_spans.discard(self)
            return
        self._log_event(semconv.STAGE_STARTED, attrs)
        context = span.get_span_context()
        report(MSG_STAGE, name=name, trace_id=f"{context.trace_id:032x}", span_id=f"{context.span_id:016x}")

    def __repr__(self) -> str:
        return f"<otel_ai Stage {self.name!r} {'ended' if self._ended else 'open'}>"

    def __enter__(self) -> Stage:
        self._attach()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._detach()
        self._exit(exc)

    @never_raise()
    def _exit(self, exc: BaseException | None) -> None:
        if exc is None:
            self.complete()
        else:
            self.run._failed_stage = self.run._failed_stage or self.name
            self._end_stage(semconv.OUTCOME_FAILED, exc=exc)

    @property
    def current_node(self) -> Node | None:
        with self._lock:
            for node in reversed(self._open_nodes):
                if not node.ended:
                    return node
        return None

    def _add_node(self, node: Node) -> None:
        """Call with the stage's lock held."""
        self._node_order.append(node)
        if not node.ended:
            self._open_nodes[node] = None

    # -- nodes ------------------------------------------------------------------------
    @never_raise()
    def node(
        self,
        node_id: str | None = None,
        parent_id: str | None = None,
        kind: str = "node",
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
            self.nodes[node_id] = node
            self._add_node(node)
        self.run._adopt(node)
        with self.run._lock:
            self.run._nodes_by_id[node_id] = node
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

    def _get_node(self, node_id: str | None) -> Node:
        """That node of this stage; the current one when None; created implicitly if need be."""
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
        with self._lock:
            self.nodes[node.node_id] = node
            self._add_node(node)
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
        report(
            MSG_PROGRESS,
            stage=self.name,
            progress=value,
            good=good_nodes,
            buggy=buggy_nodes,
            total=total_nodes,
            best=attrs[semconv.STAGE_BEST_METRIC],
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
        node = self.nodes.get(node_id) or self.run._nodes_by_id.get(node_id)
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
        self._end_stage(outcome, closed_by=_CLOSED_BY_PARENT)

    def _counts(self) -> tuple[int, int, int]:
        """Final node counts: what the experiment reported last or what this process
        saw, whichever is larger (a crash can end a stage between the two)."""
        good = sum(1 for n in self._node_order if n.is_buggy is False)
        buggy = sum(1 for n in self._node_order if n.is_buggy is True)
        seen = (good, buggy, len(self._node_order))
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
                self._duplicate(semconv.STAGE_COMPLETED, {semconv.STAGE_NAME: self.name})
            return
        for node in list(self._node_order):
            if not node.ended:
                node._close_by_parent(outcome)
        end = _now()
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
            error = _exception_attributes(exc)
            attrs.update(error)
            status = Status(
                StatusCode.ERROR,
                truncate(f"{error[semconv.ERROR_TYPE]}: {error.get(semconv.EXCEPTION_MESSAGE, '')}", 1024),
            )
            level = ERROR
        elif outcome in (semconv.OUTCOME_FAILED, semconv.OUTCOME_CANCELED, semconv.OUTCOME_ABANDONED):
            status = Status(StatusCode.ERROR, f"stage ended by its run: {outcome}")
        attrs = coerce_attributes(attrs)
        self._log_event(semconv.STAGE_COMPLETED, attrs, level)
        report(MSG_STAGE_END, name=self.name)
        if error:
            _record_exception(self._span, error)
        self._finish(status, attrs)

    def _duplicate(self, event: str, attributes: Mapping[str, Any] | None = None) -> None:
        attrs = coerce_attributes({semconv.STAGE_NAME: self.name, **(attributes or {})})
        attrs[semconv.EVENT_DUPLICATE] = True
        self._log_event(event, attrs, WARN)


# =======================================================================================
class Node(_SpanOwner):
    """A search-tree node: the ``ai.node {kind}`` span, child of its stage."""

    kind_name = "node"

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
            parent_node = stage.nodes.get(self.parent_id) or run._nodes_by_id.get(self.parent_id)
            if parent_node is not None:
                parent_context = parent_node.span_context
        if parent_context is not None and parent_context.is_valid:
            links.append(
                Link(
                    parent_context,
                    {semconv.NODE_ID: self.parent_id or "", semconv.LINK_TYPE: semconv.LINK_PARENT_NODE},
                )
            )
        start = _now()
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
        stage = self.stage
        with stage._lock:
            stage.nodes[node_id] = self
            stage._add_node(self)
        with self.run._lock:
            self.run._nodes_by_id[node_id] = self
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

    def __enter__(self) -> Node:
        self._attach()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._detach()
        self._exit(exc)

    @never_raise()
    def _exit(self, exc: BaseException | None) -> None:
        if exc is not None:
            self._end_node(True, None, None, None, exc=exc)
        elif not self._ended:
            # left without completed(): the span ends, the outcome stays unknown
            self._end_node(None, None, None, None)

    def _base_attrs(self) -> dict[str, Any]:
        return {semconv.STAGE_NAME: self.stage.name, semconv.NODE_ID: self.node_id}

    def _forget_open(self) -> None:
        super()._forget_open()
        stage = self.stage
        with stage._lock:
            stage._open_nodes.pop(self, None)

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
        self._end_node(None, None, None, None, closed_by=_CLOSED_BY_PARENT)

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
            error = _exception_attributes(exc)
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
            _record_exception(self._span, error)
        end = _now()
        self._finish(status, attrs)
        report(MSG_NODE, stage=self.stage.name, buggy=buggy)
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

    def _duplicate(self, event: str, attributes: Mapping[str, Any] | None = None) -> None:
        attrs = coerce_attributes({**self._base_attrs(), **(attributes or {})})
        attrs[semconv.EVENT_DUPLICATE] = True
        self._log_event(event, attrs, WARN)


# =======================================================================================
class Execution(_SpanOwner):
    """One run of a node's code: the ``ai.node.execute`` span."""

    kind_name = "execution"

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
        start = _now()
        span = get_pipeline().tracer.start_span(
            semconv.SPAN_NODE_EXECUTE,
            context=trace_api.set_span_in_context(node.span),
            attributes=attrs,
            start_time=start,
        )
        super().__init__(node.run, span, start)
        self._log_event(semconv.NODE_EXECUTING, attrs)

    def __enter__(self) -> Execution:
        self._attach()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._detach()
        self._exit(exc)

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
            error = _exception_attributes(exc)
            attrs.update(error)
            _record_exception(self._span, error)
            status = Status(
                StatusCode.ERROR,
                truncate(f"{error[semconv.ERROR_TYPE]}: {error.get(semconv.EXCEPTION_MESSAGE, '')}", 1024),
            )
        self._finish(status, attrs)

    def _close_by_parent(self, outcome: str) -> None:
        self.end()


# =======================================================================================
_PhaseT = TypeVar("_PhaseT", bound="_Phase")


class _Phase(_SpanOwner):
    """A closing step of the run (paper, review): one span under the run that ends with
    its completion event, or failed with the exception that escaped it."""

    span_name: str
    started_event: str
    completed_event: str
    outcome_attribute: str
    failure_text: str

    def __init__(self, run: Run, attributes: Mapping[str, Any]) -> None:
        attrs = coerce_attributes({semconv.RUN_ID: run.run_id, **attributes})
        start = _now()
        span = get_pipeline().tracer.start_span(
            self.span_name,
            context=trace_api.set_span_in_context(run.span),
            attributes=attrs,
            start_time=start,
        )
        super().__init__(run, span, start)
        self._log_event(self.started_event, attrs)

    def __enter__(self: _PhaseT) -> _PhaseT:
        self._attach()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._detach()
        self._exit(exc)

    @never_raise()
    def _exit(self, exc: BaseException | None) -> None:
        if exc is not None:
            self._end_failed(exc)
        elif not self._ended:
            self._complete_default()

    def _complete_default(self) -> None:
        raise NotImplementedError

    def _complete(self, attributes: Mapping[str, Any]) -> None:
        if not self._claim_end():
            return
        attrs = coerce_attributes({semconv.RUN_ID: self.run.run_id, **attributes})
        self._log_event(self.completed_event, attrs)
        self._events.add(self.completed_event, attrs)
        self._finish(Status(StatusCode.OK), attrs)

    def _end_failed(self, exc: BaseException | None, outcome: str = semconv.OUTCOME_FAILED) -> None:
        if not self._claim_end():
            return
        attrs: dict[str, Any] = {self.outcome_attribute: outcome}
        if exc is not None:
            error = _exception_attributes(exc)
            attrs.update(error)
            _record_exception(self._span, error)
        self._finish(Status(StatusCode.ERROR, f"{self.failure_text}: {outcome}"), attrs)

    def _close_by_parent(self, outcome: str) -> None:
        self._end_failed(None, outcome)


class Paper(_Phase):
    """Paper generation: the ``ai.paper`` span."""

    kind_name = "paper"
    span_name = semconv.SPAN_PAPER
    started_event = semconv.PAPER_STARTED
    completed_event = semconv.PAPER_GENERATED
    outcome_attribute = semconv.PAPER_OUTCOME
    failure_text = "paper not generated"

    def __init__(self, run: Run) -> None:
        super().__init__(run, {})

    def _complete_default(self) -> None:
        self.generated()

    @never_raise()
    def generated(self, artifact_key: str | None = None, **attributes: Any) -> None:
        """End the paper span with ``ai.paper.generated`` (the PDF's artifact key)."""
        self._complete({semconv.ARTIFACT_KEY: artifact_key, **attributes})


class Validation(_Phase):
    """Automatic review: the ``ai.validation`` span."""

    kind_name = "validation"
    span_name = semconv.SPAN_VALIDATION
    started_event = semconv.VALIDATION_STARTED
    completed_event = semconv.VALIDATION_COMPLETED
    outcome_attribute = semconv.VALIDATION_OUTCOME
    failure_text = "review not completed"

    def __init__(self, run: Run, model: str | None, attributes: Mapping[str, Any] | None) -> None:
        self.model = model
        super().__init__(run, {semconv.VALIDATION_MODEL: model, **(attributes or {})})

    def _complete_default(self) -> None:
        self.completed()

    @never_raise()
    def completed(
        self,
        verdict: Any = None,
        scores: Mapping[str, Any] | None = None,
        notes: Any = None,
        **attributes: Any,
    ) -> None:
        """End the review with ``ai.validation.auto_completed``: verdict, one
        ``ai.validation.score.{name}`` double per score, notes (bounded)."""
        attrs: dict[str, Any] = {
            semconv.VALIDATION_MODEL: self.model,
            semconv.VALIDATION_VERDICT: None if verdict is None else to_text(verdict, 256),
            semconv.VALIDATION_NOTES: None if notes is None else to_text(notes, MAX_TEXT),
            **attributes,
        }
        for name, value in _flat_scores(scores):
            number = as_float(value)
            attrs[semconv.VALIDATION_SCORE_PREFIX + name] = (
                number if number is not None else to_text(value, 256)
            )
        self._complete(attrs)


def _flat_scores(scores: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if not isinstance(scores, Mapping):
        if scores is not None:
            yield (prefix.rstrip(".") or "overall"), scores
        return
    for key, value in list(scores.items())[:64]:
        name = "".join(c if c.isalnum() or c in "_-" else "_" for c in str(key))[:64] or "score"
        if isinstance(value, Mapping):
            yield from _flat_scores(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def new_run_id() -> str:
    """A fresh, time-sortable run id: ``run-20261129T231500-1a2b3c4d``."""
    return f"run-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"


def end_open_spans() -> None:
    """End what is still open in this process: runs as abandoned, then any other span
    of ours (started late, or orphaned). Runs before the providers flush at shutdown."""
    from .registry import registry

    for run in registry.open_runs():
        run.abandon("process exit")
    with _open_lock:
        leftovers = [owner for owner in _open_spans if owner.owned_here and not owner.ended]
    for owner in leftovers:
        if owner.ended:
            continue  # ended meanwhile with its parent (a stage ends its open nodes)
        try:
            owner._close_by_parent(_CLOSED_BY_SHUTDOWN)
        except Exception as exc:  # noqa: BLE001 - shutdown must go on
            report_internal_error("end_open_spans", exc)


before_shutdown(end_open_spans)


def _locks_after_fork() -> None:
    """A forked child starts with one thread: a lock another thread of the parent held
    at the fork would never be released. Fresh locks for everything the child may touch."""
    global _open_lock
    _open_lock = threading.Lock()
    for owner in list(_open_spans):
        owner._lock = threading.RLock()
        owner._events._lock = threading.Lock()


os.register_at_fork(after_in_child=_locks_after_fork)
add_exit_hook(end_open_spans)  # a pool worker ends its open spans before its last flush
