"""Runs in progress, visible in Jaeger before they end: the ``ai.run.live`` marker."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

from .. import semconv
from .._internal import report_internal_error
from ..version import __version__

# a run still open after this long gets its ai.run.live marker span
LIVE_MARKER_DELAY_S = 2.0
_LIVE_MARKER_LENGTH_NS = 1000


class LiveRunMarker(SpanProcessor):
    """Makes a run in progress visible in Jaeger: a run still open
    :data:`LIVE_MARKER_DELAY_S` after its start gets an ``ai.run.live`` child span, 1 us
    long, carrying the run's start attributes (``ai.run.id`` first), exported at once.

    The ``ai.run`` span itself is exported when it ends, once, with its own id: no span
    id is ever exported twice. A run shorter than the delay needs no marker.
    """

    def __init__(self, tracer_provider: TracerProvider, delay_s: float = LIVE_MARKER_DELAY_S) -> None:
        self._provider = tracer_provider
        self._delay = delay_s
        self._cond = threading.Condition(threading.Lock())
        self._due: dict[int, tuple[float, Span, dict[str, Any]]] = {}
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._stopped = False

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        if span.name != semconv.SPAN_RUN:
            return
        try:
            attributes = dict(span.attributes or {})
            with self._cond:
                if self._stopped:
                    return
                self._due[span.context.span_id] = (time.monotonic() + self._delay, span, attributes)
                if self._thread is None or self._pid != os.getpid():
                    self._pid = os.getpid()
                    self._thread = threading.Thread(target=self._run, name="otel_ai-live-runs", daemon=True)
                    self._thread.start()
                self._cond.notify_all()
        except Exception as exc:  # noqa: BLE001 - never into the experiment
            report_internal_error("otel_ai.export.live.LiveRunMarker.on_start", exc)

    def on_end(self, span: ReadableSpan) -> None:
        if span.name != semconv.SPAN_RUN or not self._due:
            return
        context = span.context
        if context is not None:
            with self._cond:
                self._due.pop(context.span_id, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    now = time.monotonic()
                    ready = [key for key, (due, _, _) in self._due.items() if due <= now]
                    if ready:
                        break
                    nearest = min((due for due, _, _ in self._due.values()), default=None)
                    self._cond.wait(None if nearest is None else nearest - now)
                items = [self._due.pop(key) for key in ready]
            for _, span, attributes in items:
                try:
                    if span.end_time is None:
                        self._mark(span, attributes)
                except Exception as exc:  # noqa: BLE001
                    report_internal_error("otel_ai.export.live.LiveRunMarker", exc)

    def _mark(self, run_span: Span, attributes: Mapping[str, Any]) -> None:
        tracer = self._provider.get_tracer(semconv.SCOPE_NAME, __version__)
        now = time.time_ns()
        marker = tracer.start_span(
            semconv.SPAN_RUN_LIVE,
            context=trace_api.set_span_in_context(run_span),
            attributes=attributes,
            start_time=now,
        )
        # 1 us, not zero: Jaeger flags a zero-length span ("negative duration") and moves
        # its end
        marker.end(end_time=now + _LIVE_MARKER_LENGTH_NS)

    def shutdown(self) -> None:
        with self._cond:
            self._stopped = True
            self._due.clear()
            self._cond.notify_all()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
