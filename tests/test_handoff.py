"""EventEmitter's events are recorded off the caller's thread, in order, and never lost;
a forked child builds its pipeline only when it first emits."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any

from conftest import Wire
from otlp_receiver import OTLPReceiver

import otel_ai
from otel_ai import semconv
from otel_ai.export import handoff, providers

RUN = "handoff-run"
STAGE = "1_initial_implementation"


def test_events_are_recorded_on_the_handoff_thread_in_call_order(http_wire: Wire, monkeypatch: Any) -> None:
    from otel_ai.model import spans

    recorded_on: set[str] = set()
    progress = spans.Stage.progress

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        recorded_on.add(threading.current_thread().name)
        return progress(self, *args, **kwargs)

    monkeypatch.setattr(spans.Stage, "progress", spy)
    emitter = otel_ai.EventEmitter("http://unused.invalid", "pod-1")
    emitter.run_started(RUN)
    emitter.stage_started(RUN, STAGE)
    total = 2000
    for i in range(total):
        emitter.stage_progress(RUN, STAGE, i / total, i, total, i, 0, i)
        emitter.log(RUN, f"line {i}")
    assert emitter.seq_counter == 2 + 2 * total, "reading the counter waits for what was handed off"
    emitter.run_completed(RUN)

    assert recorded_on == {"otel_ai-handoff"}, "the caller's thread only queued the events"
    logs = http_wire.logs()
    seqs = [r.attributes[semconv.EVENT_SEQ] for r in logs]
    assert sorted(seqs) == list(range(1, len(seqs) + 1)), "no record lost or doubled"
    by_seq = sorted(logs, key=lambda r: r.attributes[semconv.EVENT_SEQ])
    names = [r.event_name or r.body for r in by_seq]
    assert names[:2] == [semconv.RUN_STARTED, semconv.STAGE_STARTED]
    assert names[-1] == semconv.RUN_COMPLETED, "a call on the caller's thread comes after those handed off"
    lines = [r.body for r in by_seq if r.event_name is None]
    assert lines == [f"line {i}" for i in range(total)], "in call order"
    iterations = [
        r.attributes[semconv.STAGE_ITERATION] for r in by_seq if r.event_name == semconv.STAGE_PROGRESS
    ]
    assert iterations == list(range(total))


def test_a_full_queue_waits_for_room_then_drops_and_counts(monkeypatch: Any) -> None:
    monkeypatch.setattr(handoff, "FULL_WAIT_S", 0.2)
    queue = handoff.Handoff(capacity=2)
    release = threading.Event()
    done: list[int] = []
    assert queue.submit(release.wait, (5,), {})
    assert queue.submit(done.append, (1,), {})
    started = time.monotonic()
    assert not queue.submit(done.append, (2,), {}), "no room within FULL_WAIT_S: dropped"
    assert 0.15 < time.monotonic() - started < 2.0
    assert queue.dropped == 1
    release.set()
    assert queue.drain(5.0)
    assert done == [1]
    assert queue.submit(done.append, (3,), {}) and queue.drain(5.0) and done == [1, 3]


def test_a_full_queue_on_a_slow_machine_waits_as_long_as_the_thread_records(monkeypatch: Any) -> None:
    # A burst on a loaded machine: the thread needs longer than FULL_WAIT_S to make room,
    # but it keeps recording, so the caller waits instead of dropping.
    monkeypatch.setattr(handoff, "FULL_WAIT_S", 0.2)
    queue = handoff.Handoff(capacity=64)
    done: list[int] = []

    def slow(i: int) -> None:
        time.sleep(0.03)
        done.append(i)

    started = time.monotonic()
    for i in range(80):
        assert queue.submit(slow, (i,), {}), f"call {i} dropped while the thread was recording"
    waited = time.monotonic() - started
    assert waited > 0.2, "making room (9 calls, 0.27 s or more) took longer than FULL_WAIT_S"
    assert queue.dropped == 0
    assert queue.drain(10.0)
    assert done == list(range(80))


def test_an_error_in_a_handed_off_call_does_not_stop_the_next() -> None:
    queue = handoff.Handoff()
    done: list[int] = []

    def fail() -> None:
        raise RuntimeError("boom")

    assert queue.submit(fail, (), {})
    assert queue.submit(done.append, (1,), {})
    assert queue.drain(5.0) and done == [1]


def test_a_process_that_exits_right_after_its_events_delivers_them(otlp_receiver: OTLPReceiver) -> None:
    program = (
        "import otel_ai\n"
        "e = otel_ai.EventEmitter('http://unused.invalid', 'pod-1')\n"
        f"e.run_started({RUN!r})\n"
        "for i in range(200):\n"
        f"    e.log({RUN!r}, f'line {{i}}')\n"
        f"    e.artifact_detected({RUN!r}, f'figures/{{i}}.png', 'figure', i)\n"
    )
    env = dict(
        os.environ,
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.http_endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
    )
    subprocess.run([sys.executable, "-c", program], env=env, check=True, timeout=60)
    logs = otlp_receiver.logs()
    assert [r.body for r in logs if r.event_name is None] == [f"line {i}" for i in range(200)]
    assert sum(1 for r in logs if r.event_name == semconv.ARTIFACT_DETECTED) == 200


def test_a_forked_child_builds_its_pipeline_only_when_it_emits(http_wire: Wire) -> None:
    emitter = otel_ai.EventEmitter("http://unused.invalid", "pod-1")
    emitter.run_started(RUN)
    for i in range(50):
        emitter.log(RUN, f"parent {i}")  # handed off, not yet recorded when the fork comes
    silent_read, silent_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            built = providers.current_pipeline() is not None
            os.write(silent_write, b"built" if built else b"lazy")
            emitter.log(RUN, "from the child")
            otel_ai.force_flush(10.0)
        finally:
            os._exit(0)
    os.close(silent_write)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert os.read(silent_read, 16) == b"lazy", "nothing built at the fork"
    os.close(silent_read)
    emitter.run_completed(RUN)
    logs = http_wire.logs()
    bodies = [r.body for r in logs if r.event_name is None]
    assert sorted(bodies) == sorted([f"parent {i}" for i in range(50)] + ["from the child"]), (
        "the parent's events once each (drained before the fork), the child's own"
    )
    child = next(r for r in logs if r.body == "from the child")
    parent = next(r for r in logs if r.body == "parent 0")
    assert child.resource.get("process.pid") == pid != parent.resource.get("process.pid")


def test_a_handed_off_event_carries_the_time_of_the_call(http_wire: Wire) -> None:
    """The handoff thread may get to a call late (here: held up by the call before it);
    what it records still carries the moment the front door was called."""
    emitter = otel_ai.EventEmitter("http://unused.invalid", "pod-1")
    emitter.run_started(RUN)
    emitter.stage_started(RUN, STAGE)
    release = threading.Event()
    handoff.submit(release.wait, (10,), {})  # the thread is busy until released
    before = time.time_ns()
    emitter.log(RUN, "said while the thread was busy")
    emitter.node_created(RUN, STAGE, "n-late", None, "draft")
    after = time.time_ns()
    time.sleep(0.5)
    release.set()
    emitter.run_completed(RUN)

    line = next(r for r in http_wire.logs() if r.body == "said while the thread was busy")
    assert before <= line.time_ns <= after, "the log record's time is the call's"
    created = next(r for r in http_wire.logs() if r.event_name == semconv.NODE_CREATED)
    assert before <= created.time_ns <= after
    node = next(s for s in http_wire.spans() if s.attributes.get(semconv.NODE_ID) == "n-late")
    assert before <= node.start_ns <= after, "the node span starts at the call"
