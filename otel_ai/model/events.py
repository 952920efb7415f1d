"""Log-based events, the per-process sequence and bounded span events.

Every lifecycle event is emitted twice: as structure in the trace (by
:mod:`otel_ai.model.spans`) and as an OTel LogRecord whose ``event_name`` is the event's
name, repeated in ``event.name``, carrying ``ai.run.id``, the trace and span id of the span
it concerns and ``ai.event.seq``.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from .. import semconv
from ..export.handoff import now_ns
from ..export.providers import get_pipeline
from ..metrics import genai
from ..metrics.instruments import Instruments, instruments  # noqa: F401 - re-exported for the model
from .coerce import safe_str
from .registry import registry

# --- the per-process sequence -----------------------------------------------------------
# Strictly increasing per process (SPEC section 2): it only ever moves forward, so a
# consumer can detect loss. A forked child starts its own sequence at 1.
_seq = itertools.count(1)
_seq_lock = threading.Lock()  # for set_seq only: the hot path takes no lock


def next_seq() -> int:
    return next(_seq)  # itertools.count is atomic under the GIL


def last_seq() -> int:
    """The ``ai.event.seq`` of the last event of this process (0 before the first)."""
    return _peek(_seq) - 1


def _peek(counter: itertools.count[int]) -> int:
    # the value next() would return, without taking it: count's repr is "count(N)"
    return int(repr(counter)[6:-1])


def set_seq(last: int) -> int:
    """Continue the sequence after ``last`` when that is ahead of it (the next event gets
    ``last + 1``); a value behind the sequence changes nothing, so no number repeats.
    Returns the last number assigned."""
    global _seq
    with _seq_lock:
        current = _peek(_seq) - 1
        if last > current:
            _seq = itertools.count(int(last) + 1)
            return int(last)
        return current


def reset_seq() -> None:
    """Start the sequence afresh (a forked child; tests)."""
    global _seq, _seq_lock
    _seq_lock = threading.Lock()  # another thread may have held it at the fork
    _seq = itertools.count(1)


os.register_at_fork(after_in_child=reset_seq)

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
    if level is None:
        return INFO
    return _LEVELS.get(safe_str(level).strip().lower()[:16], INFO)


# --- emission ---------------------------------------------------------------------------
def emit_log(
    context: Context | None,
    run_id: str,
    attributes: Mapping[str, AttributeValue],
    *,
    event_name: str | None,
    body: str,
    level: tuple[SeverityNumber, str] = INFO,
    timestamp: int | None = None,
) -> None:
    """One LogRecord correlated to the span in ``context``: a log-based event when
    ``event_name`` is set."""
    pipeline = get_pipeline()
    if pipeline.disabled:
        return
    attrs: dict[str, AttributeValue] = {semconv.RUN_ID: run_id, semconv.EVENT_SEQ: next_seq()}
    if event_name is not None:
        attrs[semconv.EVENT_NAME] = event_name
    attrs.update(attributes)
    pipeline.logger.emit(
        timestamp=timestamp or now_ns(),
        context=context,
        severity_number=level[0],
        severity_text=level[1],
        body=body,
        attributes=attrs,
        event_name=event_name,
    )


# attributes worth a place in a log-based event's one-line body, with their short label
_SUMMARY_LABELS = {
    semconv.STAGE_NAME: "stage",
    semconv.NODE_ID: "node",
    semconv.NODE_KIND: "kind",
    semconv.NODE_IS_BUGGY: "buggy",
    semconv.NODE_METRIC: "metric",
    semconv.STAGE_PROGRESS_VALUE: "progress",
    semconv.METRIC_NAME: "name",
    semconv.METRIC_VALUE: "value",
    semconv.RUN_OUTCOME: "outcome",
    semconv.ERROR_TYPE: "error",
    semconv.RUN_CANCEL_REASON: "reason",
    semconv.ARTIFACT_PATH: "path",
    semconv.ARTIFACT_URI: "uri",
    semconv.VALIDATION_VERDICT: "verdict",
}


def summary(event_name: str, attributes: Mapping[str, Any]) -> str:
    """A one-line body for a log-based event, readable in Loki's log view."""
    parts = [event_name]
    labels = _SUMMARY_LABELS
    for key, value in attributes.items():
        label = labels.get(key)
        if label is not None:
            text = f"{value:.4g}" if type(value) is float else str(value)
            parts.append(f"{label}={text[:120]}")
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
        self._buckets: dict[
            str, tuple[list[tuple[str, dict[str, Any], int]], deque[tuple[str, dict[str, Any], int]]]
        ] = {}
        self.omitted: Counter[str] = Counter()

    def add(self, name: str, attributes: dict[str, Any], timestamp: int | None = None) -> None:
        item = (name, attributes, timestamp or now_ns())
        with self._lock:
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
                semconv.SPAN_EVENTS_OMITTED_BY_NAME,
                [f"{name}={count}" for name, count in sorted(omitted.items())],
            )


def _current_run_id() -> str | None:
    run = registry.current()
    return None if run is None else run.run_id


genai.provide_current_run(_current_run_id)  # the fallback run of otel_ai.metrics.record_*
