"""Log-based events, the per-process sequence, bounded span events and search metrics.

Every lifecycle event is emitted twice: as structure in the trace (by
:mod:`otel_ai.model.spans`) and as an OTel LogRecord whose ``event_name`` is the event's
name, repeated in ``event.name``, carrying ``ai.run.id``, the trace and span id of the span
it concerns and ``ai.event.seq``.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry._logs import SeverityNumber
from opentelemetry.metrics import Meter
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from .. import semconv
from ..export.providers import get_pipeline

# --- the per-process sequence -----------------------------------------------------------
_seq = itertools.count(1)
_seq_lock = threading.Lock()


def next_seq() -> int:
    return next(_seq)  # itertools.count is atomic under the GIL


def set_seq(last: int) -> None:
    """Continue the sequence after ``last`` (the next event gets ``last + 1``)."""
    global _seq
    with _seq_lock:
        _seq = itertools.count(int(last) + 1)


os.register_at_fork(after_in_child=lambda: set_seq(0))

# --- severity ---------------------------------------------------------------------------
_LEVELS: dict[str, tuple[SeverityNumber, str]] = {
    "trace": (SeverityNumber.TRACE, "TRACE"),
    "debug": (SeverityNumber.DEBUG, "DEBUG"),
    "info": (SeverityNumber.INFO, "INFO"),
    "notice": (SeverityNumber.INFO2, "INFO"),
    "warn": (SeverityNumber.WARN, "WARN"),
    "warning": (SeverityNumber.WARN, "WARN"),
    "error": (SeverityNumber.ERROR, "ERROR"),
    "err": (SeverityNumber.ERROR, "ERROR"),
    "exception": (SeverityNumber.ERROR, "ERROR"),
    "critical": (SeverityNumber.FATAL, "FATAL"),
    "fatal": (SeverityNumber.FATAL, "FATAL"),
}
INFO = _LEVELS["info"]
WARN = _LEVELS["warn"]
ERROR = _LEVELS["error"]


def severity(level: Any) -> tuple[SeverityNumber, str]:
    """A (number, text) severity from a level name such as "warning" or "ERROR"."""
    if isinstance(level, int) and not isinstance(level, bool):
        # Python logging levels
        if level >= 50:
            return _LEVELS["fatal"]
        if level >= 40:
            return ERROR
        if level >= 30:
            return WARN
        if level >= 20:
            return INFO
        return _LEVELS["debug"]
    return _LEVELS.get(str(level).strip().lower(), INFO)


# --- emission ---------------------------------------------------------------------------
def emit_log(
    span: Span | None,
    run_id: str,
    attributes: Mapping[str, AttributeValue],
    *,
    event_name: str | None,
    body: str,
    level: tuple[SeverityNumber, str] = INFO,
    timestamp: int | None = None,
) -> None:
    """One LogRecord correlated to ``span``: a log-based event when ``event_name`` is set."""
    pipeline = get_pipeline()
    if pipeline.disabled:
        return
    attrs: dict[str, AttributeValue] = {semconv.RUN_ID: run_id, semconv.EVENT_SEQ: next_seq()}
    if event_name is not None:
        attrs[semconv.EVENT_NAME] = event_name
    attrs.update(attributes)
    pipeline.logger.emit(
        timestamp=timestamp or time.time_ns(),
        context=trace_api.set_span_in_context(span) if span is not None else None,
        severity_number=level[0],
        severity_text=level[1],
        body=body,
        attributes=attrs,
        event_name=event_name,
    )


_SUMMARY_KEYS = (
    semconv.STAGE_NAME,
    semconv.NODE_ID,
    semconv.NODE_KIND,
    semconv.NODE_IS_BUGGY,
    semconv.NODE_METRIC,
    semconv.STAGE_PROGRESS_VALUE,
    semconv.METRIC_NAME,
    semconv.METRIC_VALUE,
    semconv.RUN_OUTCOME,
    semconv.ERROR_TYPE,
    semconv.RUN_CANCEL_REASON,
    semconv.ARTIFACT_PATH,
    semconv.ARTIFACT_URI,
    semconv.VALIDATION_VERDICT,
)


def summary(event_name: str, attributes: Mapping[str, Any]) -> str:
    """A one-line body for a log-based event, readable in Loki's log view."""
    parts = [event_name]
    for key in _SUMMARY_KEYS:
        if key in attributes:
            value = attributes[key]
            if isinstance(value, float):
                value = f"{value:.4g}"
            text = str(value)
            parts.append(f"{key.rsplit('.', 1)[-1] if key != semconv.STAGE_NAME else 'stage'}={text[:120]}")
    return " ".join(parts)


# --- bounded span events ----------------------------------------------------------------
class EventBuffer:
    """Span events kept per name: the first few and the latest many, the rest counted.

    OTel keeps only the newest 128 events of a span and drops the rest silently; a stage
    sees thousands of progress updates. The buffer is applied to the span when it ends.
    """

    FIRST = 8
    LATEST = 64
    MAX_NAMES = 16
    _OTHER = "*"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[list[tuple[str, dict[str, Any], int]], deque[tuple[str, dict[str, Any], int]]]] = {}
        self.omitted: Counter[str] = Counter()
        self.seen: Counter[str] = Counter()

    def add(self, name: str, attributes: dict[str, Any], timestamp: int | None = None) -> None:
        item = (name, attributes, timestamp or time.time_ns())
        with self._lock:
            self.seen[name] += 1
            key = name
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self.MAX_NAMES:
                    key = self._OTHER
                    bucket = self._buckets.get(key)
                if bucket is None:
                    bucket = ([], deque(maxlen=self.LATEST))
                    self._buckets[key] = bucket
            first, latest = bucket
            if len(first) < self.FIRST:
                first.append(item)
                return
            if len(latest) == self.LATEST:
                self.omitted[latest[0][0]] += 1
            latest.append(item)

    def apply(self, span: Span) -> None:
        """Add the kept events to ``span`` in time order, and the omitted counts."""
        with self._lock:
            items = [item for first, latest in self._buckets.values() for item in (*first, *latest)]
            omitted = dict(self.omitted)
            self._buckets.clear()
        items.sort(key=lambda item: item[2])
        for name, attributes, timestamp in items:
            span.add_event(name, attributes, timestamp)
        total = sum(omitted.values())
        if total:
            span.set_attribute(semconv.SPAN_EVENTS_OMITTED, total)
            span.set_attribute(
                semconv.SPAN_EVENTS_OMITTED_BY_NAME, [f"{name}={count}" for name, count in sorted(omitted.items())]
            )


# --- search metrics ---------------------------------------------------------------------
class Instruments:
    """The search metrics of SPEC section 4, fed by the model's own events."""

    def __init__(self, meter: Meter) -> None:
        self.nodes = meter.create_counter(semconv.METRIC_NODES, unit="{node}", description="Search-tree nodes completed")
        self.node_duration = meter.create_histogram(
            semconv.METRIC_NODE_DURATION, unit="s", description="Node lifetime, creation to completion"
        )
        self.node_exec_time = meter.create_histogram(
            semconv.METRIC_NODE_EXEC_TIME, unit="s", description="Execution time of a node's code"
        )
        self.stage_progress = meter.create_gauge(
            semconv.METRIC_STAGE_PROGRESS, unit="1", description="Stage progress, 0..1"
        )
        self.best_metric = meter.create_gauge(
            semconv.METRIC_STAGE_BEST_METRIC, unit="1", description="Best node metric of the stage so far"
        )


_instruments: tuple[Meter, Instruments] | None = None


def instruments() -> Instruments:
    global _instruments
    meter = get_pipeline().meter
    cached = _instruments
    if cached is None or cached[0] is not meter:
        cached = (meter, Instruments(meter))
        _instruments = cached
    return cached[1]
