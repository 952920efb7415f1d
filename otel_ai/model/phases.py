"""The closing steps of a run: :class:`Paper` (the ``ai.paper`` span) and
:class:`Validation` (the ``ai.validation`` span of the automatic review)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace as trace_api
from opentelemetry.trace import Status, StatusCode

from .. import semconv
from .._internal import never_raise
from ..export.providers import get_pipeline
from .coerce import MAX_TEXT, as_float, coerce_attributes, to_text
from .owner import SpanOwner, exception_attributes, now, record_exception

if TYPE_CHECKING:
    from .run import Run


class Phase(SpanOwner):
    """A closing step of the run (paper, review): one span under the run that ends with
    its completion event, or failed with the exception that escaped it."""

    span_name: str
    started_event: str
    completed_event: str
    outcome_attribute: str
    failure_text: str

    def __init__(self, run: Run, attributes: Mapping[str, Any]) -> None:
        attrs = coerce_attributes({semconv.RUN_ID: run.run_id, **attributes})
        start = now()
        span = get_pipeline().tracer.start_span(
            self.span_name,
            context=trace_api.set_span_in_context(run.span),
            attributes=attrs,
            start_time=start,
        )
        super().__init__(run, span, start)
        self._log_event(self.started_event, attrs)

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

    @never_raise()
    def failed(self, exc: BaseException | None = None) -> None:
        """End the step as failed (status ERROR; ``exc`` recorded when given)."""
        self._end_failed(exc)

    def _end_failed(self, exc: BaseException | None, outcome: str = semconv.OUTCOME_FAILED) -> None:
        if not self._claim_end():
            return
        attrs: dict[str, Any] = {self.outcome_attribute: outcome}
        if exc is not None:
            error = exception_attributes(exc)
            attrs.update(error)
            record_exception(self._span, error)
        self._finish(Status(StatusCode.ERROR, f"{self.failure_text}: {outcome}"), attrs)

    def _close_by_parent(self, outcome: str) -> None:
        self._end_failed(None, outcome)


class Paper(Phase):
    """Paper generation: the ``ai.paper`` span."""

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


class Validation(Phase):
    """Automatic review: the ``ai.validation`` span."""

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
