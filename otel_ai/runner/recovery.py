"""Ending the runs whose wrapper died (``otel-ai recover``, and a new attempt of a run id):
the ``ai.run`` span each state file describes, ended as ``ai.run.outcome=abandoned`` with
its original ids and start time, so the trace is whole (see :mod:`.state`)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from .. import semconv
from .._internal import report_internal_error
from ..export.providers import export_ended_span
from ..model.coerce import coerce_attributes
from ..model.events import WARN, emit_log
from ..version import __version__
from .state import RunState, list_states


@dataclass
class Recovered:
    run_id: str
    trace_id: str
    span_id: str
    attempt: int


def recover(data_dir: Path, *, only_run: str | None = None, reason: str = "wrapper died") -> list[Recovered]:
    """End every run whose wrapper died, as abandoned, with its original ids."""
    recovered = []
    for path, state in list_states(data_dir):
        if state is None:
            continue  # unreadable (being written right now, or damaged): leave it
        if only_run is not None and state.run_id != only_run:
            continue
        if state.wrapper_alive():
            continue
        try:
            span = _abandoned_span(state, reason)
        except Exception as exc:  # noqa: BLE001 - one odd run must not stop the others
            report_internal_error(f"otel_ai.runner.recovery.recover[{path.name}]", exc)
            continue

        export_ended_span(span)
        attributes = dict(span.attributes or {})
        emit_log(
            _context_of(span),
            state.run_id,
            attributes,
            event_name=semconv.RUN_ABANDONED,
            body=f"{semconv.RUN_ABANDONED} outcome=abandoned reason={reason}",
            level=WARN,
        )
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        recovered.append(Recovered(state.run_id, state.trace_id, state.span_id, state.attempt))
    return recovered


def _context_of(span: ReadableSpan) -> Context:
    assert span.context is not None
    return trace_api.set_span_in_context(trace_api.NonRecordingSpan(span.context))


def _abandoned_span(state: RunState, reason: str) -> ReadableSpan:
    end_ns = max(state.last_seen_ns, state.start_ns) or time.time_ns()
    context = SpanContext(
        int(state.trace_id, 16), int(state.span_id, 16), is_remote=False, trace_flags=TraceFlags(1)
    )
    parent = None
    if state.parent_span_id:
        parent = SpanContext(
            int(state.trace_id, 16), int(state.parent_span_id, 16), is_remote=True, trace_flags=TraceFlags(1)
        )
    attributes: Mapping[str, Any] = coerce_attributes(
        {
            **state.attributes,
            semconv.RUN_ID: state.run_id,
            semconv.RUN_OUTCOME: semconv.OUTCOME_ABANDONED,
            semconv.RUN_END_REASON: reason,
            semconv.RUN_ATTEMPT: state.attempt,
            semconv.RUN_DURATION_S: round((end_ns - state.start_ns) / 1e9, 6),
        }
    )
    return ReadableSpan(
        name=semconv.SPAN_RUN,
        context=context,
        parent=parent,
        resource=Resource(state.resource),
        attributes=attributes,
        kind=SpanKind.INTERNAL,
        status=Status(StatusCode.ERROR, f"run abandoned: {reason}"),
        start_time=state.start_ns,
        end_time=end_ns,
        instrumentation_scope=InstrumentationScope(semconv.SCOPE_NAME, __version__),
    )
