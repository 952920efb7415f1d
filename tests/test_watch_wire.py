"""Tailed lines over the wire: what an OTLP receiver gets from otel_ai for log lines
written under a watched directory (correlation, attributes, severity, bad input, the
export queue's back-pressure)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from conftest import Wire
from otlp_receiver import OTLPReceiver
from watch_helpers import append, wait_for

import otel_ai
import otel_ai.testing
from otel_ai import semconv
from otel_ai.watch import Watcher
from otel_ai.watch import observing as observing_module


def _lines(records: list, source: str) -> list:
    found = [r for r in records if r.event_name is None and r.attributes.get(semconv.LOG_SOURCE) == source]
    return sorted(found, key=lambda r: r.attributes[semconv.EVENT_SEQ])


def test_lines_become_records_of_the_run_and_of_the_open_stage(http_wire: Wire, tmp_path: Path) -> None:
    log = tmp_path / "logs" / "0-run" / "experiment.log"
    log.parent.mkdir(parents=True)
    with otel_ai.run("wire-run") as run:
        watcher = Watcher(run, [tmp_path], artifact_patterns=(), flush_timeout_s=30).start()
        append(log, "starting\n")
        wait_for(lambda: watcher.summary().lines == 1)
        with run.stage("1_initial_implementation"):
            append(log, "2026-11-29 10:00:01 - ERROR - CUDA out of memory\nWARNING: lr too high\n")
            append(log, b"caf\xe9 \xff bytes\n" + b"y" * 100_000 + b"\nno newline yet")
            wait_for(lambda: watcher.summary().lines == 5)
            summary = watcher.stop(5)
    assert summary.lines == 6 and summary.lines_truncated == 1 and summary.lines_partial == 1

    records = _lines(http_wire.logs(), "logs/0-run/experiment.log")
    bodies = [r.body for r in records]
    assert bodies[:4] == [
        "starting",
        "2026-11-29 10:00:01 - ERROR - CUDA out of memory",
        "WARNING: lr too high",
        "caf\ufffd \ufffd bytes",
    ]
    assert bodies[5] == "no newline yet"
    run_span = http_wire.span(lambda s: s.name == semconv.SPAN_RUN)
    stage_span = http_wire.span(lambda s: s.name.startswith(semconv.SPAN_STAGE))
    for record in records:
        assert record.attributes[semconv.LOG_FILE_PATH] == str(log)
        assert record.attributes[semconv.RUN_ID] == "wire-run"
        assert record.trace_id == run_span.trace_id
    assert records[0].span_id == run_span.span_id and semconv.STAGE_NAME not in records[0].attributes
    assert all(r.span_id == stage_span.span_id for r in records[1:])
    assert all(r.attributes[semconv.STAGE_NAME] == "1_initial_implementation" for r in records[1:])
    assert [r.severity_text for r in records] == ["INFO", "ERROR", "WARN", "INFO", "INFO", "INFO"]
    huge = records[4]
    assert huge.attributes[semconv.LOG_TRUNCATED] is True
    assert huge.body.startswith("y" * 1000) and huge.body.endswith("bytes]…")
    assert len(huge.body.encode()) <= 64 * 1024
    assert records[5].attributes[semconv.LOG_PARTIAL] is True
    (stopped,) = http_wire.events(semconv.WATCH_STOPPED)
    assert stopped.attributes[semconv.WATCH_LINES] == 6
    assert stopped.attributes[semconv.WATCH_OBSERVER] == semconv.WATCH_OBSERVER_NATIVE
    assert stopped.attributes[semconv.WATCH_BYTES_UNDELIVERED] == 0


def test_a_small_export_queue_slows_tailing_instead_of_dropping_lines(
    otlp_receiver: OTLPReceiver, tmp_path: Path
) -> None:
    otel_ai.configure(endpoint=otlp_receiver.http_endpoint, protocol="http/protobuf", queue_size=1024)
    total = 10_000  # ten times the queue
    try:
        with otel_ai.run("backpressure") as run:
            watcher = Watcher(run, [tmp_path], artifact_patterns=()).start()
            append(tmp_path / "flood.log", "".join(f"flood {i:05d}\n" for i in range(total)))
            summary = watcher.stop(60)
        assert otel_ai.force_flush(30)
        bodies = [r.body for r in _lines(otlp_receiver.logs(), "flood.log")]
    finally:
        otel_ai.testing.reset()
    assert summary.lines == total and summary.complete
    assert bodies == [f"flood {i:05d}" for i in range(total)]


def test_without_native_events_it_polls_and_says_so(
    http_wire: Wire, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class NoInotify:
        """What watchdog's inotify observer does when the watch limit is reached."""

        def schedule(self, *args: object, **kwargs: object) -> None:
            pass

        def start(self) -> None:
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

        def stop(self) -> None:
            pass

    monkeypatch.setattr(observing_module, "Observer", NoInotify)
    with otel_ai.run("polling") as run:
        watcher = Watcher(run, [tmp_path], artifact_patterns=(), poll_interval_s=0.1).start()
        append(tmp_path / "x.log", "still delivered\n")
        wait_for(lambda: watcher.summary().lines == 1)
        watcher.stop(5)
    assert watcher.observer_kind == semconv.WATCH_OBSERVER_POLLING
    records = http_wire.logs()
    assert [r.body for r in _lines(records, "x.log")] == ["still delivered"]
    (warning,) = [r for r in records if r.attributes.get(semconv.LOG_SOURCE) == semconv.SCOPE_NAME]
    assert warning.severity_text == "WARN" and "inotify watch limit reached" in warning.body


def test_a_watcher_nobody_stopped_is_swept_at_shutdown(http_wire: Wire, tmp_path: Path) -> None:
    run = otel_ai.run("forgotten")
    watcher = Watcher(run, [tmp_path], artifact_patterns=()).start()
    append(tmp_path / "x.log", "last line\npartial")
    otel_ai.shutdown(10)  # what the atexit hook does
    records = http_wire.receiver.logs()
    assert [r.body for r in _lines(records, "x.log")] == ["last line", "partial"]
    assert watcher.summary().complete


def test_lines_can_belong_to_a_stage_of_another_process(http_wire: Wire, tmp_path: Path) -> None:
    """Under ``otel-ai run`` the stages live in the children; the wrapper says where lines go."""
    from opentelemetry import trace as trace_api
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    remote = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True, trace_flags=TraceFlags(1)
    )
    stage_context = trace_api.set_span_in_context(NonRecordingSpan(remote))
    with otel_ai.run("wrapped") as run:
        watcher = Watcher(
            run, [tmp_path], artifact_patterns=(), log_context=lambda: (stage_context, "2_baseline_tuning")
        ).start()
        append(tmp_path / "child.log", "from the child\n")
        wait_for(lambda: watcher.summary().lines == 1)
        watcher.stop(5)
    (record,) = _lines(http_wire.logs(), "child.log")
    assert (record.trace_id, record.span_id) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert record.attributes[semconv.STAGE_NAME] == "2_baseline_tuning"
    assert record.attributes[semconv.RUN_ID] == "wrapped"
