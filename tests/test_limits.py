"""Span-event limits (SPEC section 2): a stage keeps its first and latest progress
updates, counts what it left out, and every update still reaches the log-based events."""

from __future__ import annotations

from conftest import Wire

import otel_ai
from otel_ai import semconv
from otel_ai.model.events import EventBuffer

UPDATES = 5000


def test_five_thousand_progress_updates(http_wire: Wire) -> None:
    with otel_ai.run("run-many") as run:
        with run.stage("1_initial_implementation") as stage:
            stage.selected_best("n0", 0.1)
            for i in range(1, UPDATES + 1):
                stage.progress(i, UPDATES, i, 0, i)
            stage.selected_best("n1", 0.2)
    (span,) = [s for s in http_wire.spans() if s.name.startswith("ai.stage ")]
    progress = [e for e in span.events if e.name == semconv.STAGE_PROGRESS]
    iterations = [e.attributes[semconv.STAGE_ITERATION] for e in progress]
    first, latest = EventBuffer.FIRST, EventBuffer.LATEST
    assert iterations == list(range(1, first + 1)) + list(range(UPDATES - latest + 1, UPDATES + 1))
    omitted = UPDATES - first - latest
    assert span.attributes[semconv.SPAN_EVENTS_OMITTED] == omitted
    assert span.attributes[semconv.SPAN_EVENTS_OMITTED_BY_NAME] == [f"{semconv.STAGE_PROGRESS}={omitted}"]
    assert span.attributes[semconv.STAGE_PROGRESS_UPDATES] == UPDATES
    # other events are not pushed out by the flood
    assert [e.attributes[semconv.NODE_ID] for e in span.events if e.name == semconv.NODE_SELECTED_BEST] == [
        "n0",
        "n1",
    ]
    times = [e.time_ns for e in span.events]
    assert times == sorted(times)
    # the full stream is in the log-based events
    records = http_wire.events(semconv.STAGE_PROGRESS)
    assert [r.attributes[semconv.STAGE_ITERATION] for r in records] == list(range(1, UPDATES + 1))
    (gauge,) = [p for p in http_wire.latest_metrics() if p.name == semconv.METRIC_STAGE_PROGRESS]
    assert gauge.value == 1.0


def test_many_event_names_stay_within_the_sdk_limit(http_wire: Wire) -> None:
    with otel_ai.run("run-names") as run:
        for name in range(40):
            for i in range(100):
                run.event(f"custom.event.{name}", {"i": i})
    (span,) = [s for s in http_wire.spans() if s.name == "ai.run"]
    kept = len([e for e in span.events if e.name.startswith("custom.event.")])
    assert kept + span.attributes[semconv.SPAN_EVENTS_OMITTED] == 4000, "kept + counted = all"
    assert len(http_wire.events()) == 4000 + 2
