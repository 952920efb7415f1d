"""Pool workers never wait on the network before a task returns (issue 15, point 1), yet
nothing they emitted is lost when the pool kills them at a stage's end, idle or in the
middle of a task, with fork or spawn. Read back from the files of a real ``otel-ai run``,
and over OTLP from a collector that does not answer while the task returns."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from otlp_receiver import OTLPReceiver
from test_run_wrapper import OTEL_AI, run_wrapped, telemetry, wrapper_env

from otel_ai import semconv

KILLED_CHILD = textwrap.dedent(
    """
    import concurrent.futures, multiprocessing, os, sys, time
    import otel_ai

    RUN = os.environ["OTEL_AI_RUN_ID"]

    def work(i, marker=None):
        emitter = otel_ai.EventEmitter()
        emitter.node_created(RUN, "w", f"node-{i}", None, "draft")
        emitter.log(RUN, f"line from task {i}")
        if marker:
            open(marker, "w").close()
            time.sleep(120)  # killed here
        emitter.node_completed(RUN, "w", f"node-{i}", False, 0.5, 0.1)
        return os.getpid()

    if __name__ == "__main__":
        method, marker = sys.argv[1], sys.argv[2]
        with otel_ai.run() as run:
            with run.stage("1_initial_implementation"):
                pool = concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method))
                pids = [pool.submit(work, i).result() for i in range(6)]
                pool.submit(work, 99, marker)
                while not os.path.exists(marker):
                    time.sleep(0.05)
                # as AI-Scientist-v2 ends a stage: no waiting, then SIGTERM to every worker
                processes = list(pool._processes.values())
                pool.shutdown(wait=False, cancel_futures=True)
                for process in processes:
                    process.terminate()
                for process in processes:
                    process.join()
                # the pool's own thread may reap a worker at the same time as join(), which
                # then returns before the exit code is recorded: wait for it
                deadline = time.monotonic() + 30
                while any(p.exitcode is None for p in processes) and time.monotonic() < deadline:
                    time.sleep(0.01)
                print("killed", sorted(p.exitcode for p in processes), flush=True)
    """
)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_killed_at_a_stage_end_lose_nothing(tmp_path: Path, method: str) -> None:
    (tmp_path / "child.py").write_text(KILLED_CHILD)
    result = run_wrapped(
        tmp_path,
        [sys.executable, "child.py", method, str(tmp_path / "started")],
        "--run-id",
        f"killed-{method}",
        timeout=180,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    codes = result.stdout.decode().split("killed ", 1)[1].strip()
    assert set(codes.strip("[]").split(", ")) == {"-15"}, codes  # every worker died by the signal
    data = telemetry(tmp_path)
    nodes = {
        s.attributes[semconv.NODE_ID]: s for s in data.spans if s.name.startswith(semconv.SPAN_NODE + " ")
    }
    assert set(nodes) == {f"node-{i}" for i in range(6)} | {"node-99"}
    assert all(nodes[f"node-{i}"].attributes[semconv.NODE_IS_BUGGY] is False for i in range(6))
    killed = nodes["node-99"]
    # ended by the dying worker: itself, or its (worker-side) stage first
    assert killed.attributes[semconv.SPAN_CLOSED_BY] in ("shutdown", "parent_end")
    lines = {
        r.body
        for r in data.logs
        if not r.event_name and isinstance(r.body, str) and r.body.startswith("line from")
    }
    assert lines == {f"line from task {i}" for i in (*range(6), 99)}
    completed = [r for r in data.logs if r.event_name == semconv.NODE_COMPLETED]
    assert len(completed) == 7, [
        (
            r.attributes.get(semconv.NODE_ID),
            r.attributes.get(semconv.EVENT_DUPLICATE),
            r.resource.get("process.pid"),
        )
        for r in completed
    ][5:]  # six completed, one closed by the worker's end
    counted = {}
    for point in data.metrics:
        if point.name == semconv.METRIC_NODES:
            pid = point.resource.get(semconv.PROCESS_PID)
            counted[pid] = max(counted.get(pid, 0), point.value or 0)
    assert sum(counted.values()) == 6  # every worker's node counter, from both killed workers


FORKING_WORKER = textwrap.dedent(
    """
    import concurrent.futures, multiprocessing, os, signal, sys, time
    import otel_ai

    RUN = os.environ["OTEL_AI_RUN_ID"]

    def child(queue, report):
        # as AI-Scientist-v2's Interpreter child: blocked reading its queue until stopped
        report.put(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
        queue.get()

    def node(i):
        otel_ai.EventEmitter().log(RUN, f"node {i} runs its code")
        context = multiprocessing.get_context("fork")
        queue, report = context.Queue(), context.Queue()
        process = context.Process(target=child, args=(queue, report))
        process.start()
        default_handler = report.get(timeout=60)
        process.terminate()  # the Interpreter's cleanup: SIGTERM, then SIGKILL after 2 s
        process.join(60)
        worker_handler = signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
        return default_handler, process.exitcode, worker_handler

    if __name__ == "__main__":
        with otel_ai.run() as run:
            with run.stage("1_initial_implementation"):
                context = multiprocessing.get_context("fork")
                with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
                    print("results", [pool.submit(node, i).result() for i in range(3)], flush=True)
    """
)


def test_a_process_forked_by_a_pool_worker_dies_by_sigterm_at_once(tmp_path: Path) -> None:
    """A pool worker flushes on SIGTERM; a process it forks (the Interpreter's child that
    runs a node's code) is no pool worker: it gets the default SIGTERM back and dies by
    it, instead of inheriting the worker's handler (with which, under upstream's real
    search, it outlived the Interpreter's 2 s grace and was SIGKILLed for every node)."""
    (tmp_path / "child.py").write_text(FORKING_WORKER)
    result = run_wrapped(tmp_path, [sys.executable, "child.py"], "--run-id", "forking-worker", timeout=180)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    results = result.stdout.decode().split("results ", 1)[1].strip()
    assert results == str([(True, -15, True)] * 3), results  # default handler, killed by SIGTERM
    lines = {
        r.body for r in telemetry(tmp_path).logs if isinstance(r.body, str) and r.body.startswith("node ")
    }
    assert lines == {f"node {i} runs its code" for i in range(3)}


SIGKILLED_CHILD = textwrap.dedent(
    """
    import concurrent.futures, multiprocessing, os, signal, sys, time
    import otel_ai

    RUN = os.environ["OTEL_AI_RUN_ID"]

    def work(i):
        emitter = otel_ai.EventEmitter()
        emitter.node_created(RUN, "w", f"node-{i}", None, "draft")
        emitter.log(RUN, f"line from task {i}")
        emitter.node_completed(RUN, "w", f"node-{i}", False, 0.5, 0.1)
        return os.getpid()

    if __name__ == "__main__":
        method, go = sys.argv[1], sys.argv[2]
        with otel_ai.run() as run:
            with run.stage("1_initial_implementation"):
                pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(method))
                pid = pool.submit(work, 1).result()
                print("returned", pid, flush=True)
                process = list(pool._processes.values())[0]
                os.kill(pid, signal.SIGKILL)  # no time to flush anything
                process.join()
                # the pool's manager thread may reap the worker while this join is in waitpid:
                # this join then sees no child and returns before the exit code is set
                while process.exitcode is None:
                    time.sleep(0.01)
                print("killed", process.exitcode, flush=True)
                while not os.path.exists(go):  # the collector answers again
                    time.sleep(0.05)
                pool.shutdown(wait=False)
    """
)


def follow(
    process: subprocess.Popen[bytes], until: Callable[[list[str]], bool]
) -> tuple[list[str], threading.Event, threading.Thread]:
    """The lines ``process`` prints, read on a thread; the event is set once ``until``
    holds for the lines so far."""
    lines: list[str] = []
    reached = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            lines.append(raw.decode())
            if until(lines):
                reached.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return lines, reached, reader


@pytest.mark.parametrize(("method", "delivered"), [("fork", "at the end"), ("spawn", "during the run")])
def test_a_task_returns_while_the_collector_hangs_and_a_sigkilled_worker_loses_nothing(
    tmp_path: Path, method: str, delivered: str
) -> None:
    """Over OTLP a task's result goes back without waiting for the collector: what the
    task emitted is on disk (the worker's spool) by then. The worker is SIGKILLed right
    after; ``otel-ai run`` delivers what it left once it is gone: while the command still
    runs (it looks every 10 s), or when the command has ended."""
    (tmp_path / "child.py").write_text(SIGKILLED_CHILD)
    go = tmp_path / "go"
    # the worker would wait 600 s for a collector that holds every request 600 s
    with OTLPReceiver(mode="hang", hang_timeout=600) as receiver:
        env = wrapper_env(
            tmp_path / "runs",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.http_endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_TIMEOUT="600",
            OTEL_AI_WORKER_FLUSH_TIMEOUT="600",
        )
        wrapper = subprocess.Popen(
            [*OTEL_AI, "run", "--no-status", "--no-watch", "--run-id", f"sigkilled-{method}", "--"]
            + [sys.executable, "child.py", method, str(go)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        lines, seen, reader = follow(wrapper, lambda lines: lines[-1].startswith("killed"))
        try:
            assert seen.wait(90), "".join(lines)  # the task came back, the worker was killed
            held = receiver.rejected()
            receiver.mode = "ok"  # what hung is refused now, and taken when tried again
            if delivered == "during the run":
                assert receiver.wait_for(
                    lambda r: any(s.attributes.get(semconv.NODE_ID) == "node-1" for s in r.spans()), 60
                )
                assert wrapper.poll() is None
            go.touch()
            _, err = wrapper.communicate(timeout=120)
        finally:
            if wrapper.poll() is None:
                os.killpg(wrapper.pid, signal.SIGKILL)  # the wrapper and the command
                wrapper.wait()
            reader.join(5)
            for pipe in (wrapper.stdout, wrapper.stderr):
                if pipe is not None:
                    pipe.close()
        assert wrapper.returncode == 0, err.decode()[-3000:]
        killed_pid = int(lines[0].split()[1])
        assert lines[1].split() == ["killed", "-9"]
        assert held == 0  # not one request answered while the task returned and was killed
        spans = [s for s in receiver.spans() if s.attributes.get(semconv.NODE_ID) == "node-1"]
        # exactly once: the killed worker's request in flight was never taken
        assert [s.resource.get(semconv.PROCESS_PID) for s in spans] == [killed_pid]
        assert spans[0].attributes[semconv.NODE_IS_BUGGY] is False
        task_lines = [r for r in receiver.logs() if r.body == "line from task 1"]
        assert [r.resource.get(semconv.PROCESS_PID) for r in task_lines] == [killed_pid]
        # the dead worker's spool directory is gone with what it held
        owners = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("spool/*/owner.json")]
        assert killed_pid not in [owner.get("pid") for owner in owners]


STAGES_WITHOUT_WRAPPER = textwrap.dedent(
    """
    import concurrent.futures, multiprocessing, os, sys, time
    import otel_ai

    def work(i, stage):
        emitter = otel_ai.EventEmitter()
        emitter.node_created("unwrapped run 7", stage, f"node-{i}", None, "draft")
        emitter.log("unwrapped run 7", f"line from task {i}")
        emitter.node_completed("unwrapped run 7", stage, f"node-{i}", False, 0.5, 0.1)
        return os.getpid()

    if __name__ == "__main__":
        method, go = sys.argv[1], sys.argv[2]
        context = multiprocessing.get_context(method)
        with otel_ai.run("unwrapped run 7") as run:  # a run id with spaces
            for n, stage in enumerate(("1_initial_implementation", "2_baseline_tuning")):
                with run.stage(stage):
                    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
                        pids = list(pool.map(work, range(4 * n, 4 * n + 4), [stage] * 4))
                print("stage", stage, *sorted(set(pids)), flush=True)
            while not os.path.exists(go):  # the collector answers again
                time.sleep(0.05)
    """
)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_without_the_wrapper_a_hanging_collector_holds_no_pool_and_the_main_process_delivers_what_workers_left(
    tmp_path: Path, method: str
) -> None:
    """A pool's shutdown joins its workers, and a leaving worker does not wait out a
    collector that hangs (here for 600 s, with OTEL_AI_WORKER_FLUSH_TIMEOUT and
    OTEL_EXPORTER_OTLP_TIMEOUT at 600 s: the stages could not end otherwise, and without
    a worker's exit flush its last records were lost): what the collector did not take stays in the
    worker's spool. Without ``otel-ai run`` the main process delivers it at its exit,
    once, with its own telemetry."""
    (tmp_path / "child.py").write_text(STAGES_WITHOUT_WRAPPER)
    go = tmp_path / "go"
    data_dir = tmp_path / "runs"
    with OTLPReceiver(mode="hang", hang_timeout=600) as receiver:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACEPARENT"))}
        env.update(
            OTEL_AI_DATA_DIR=str(data_dir),
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.http_endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_TIMEOUT="600",
            OTEL_AI_WORKER_FLUSH_TIMEOUT="600",
        )
        command = subprocess.Popen(
            [sys.executable, "child.py", method, str(go)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        lines, both, reader = follow(command, lambda lines: len(lines) == 2)
        try:
            assert both.wait(120), "".join(lines)  # both stages' pools closed
            assert receiver.rejected() == 0  # nothing was answered meanwhile
            assert list(data_dir.glob("spool/*/*/*.pb"))  # the workers' requests wait on disk
            receiver.mode = "ok"
            go.touch()
            _, err = command.communicate(timeout=120)
        finally:
            if command.poll() is None:
                command.kill()
                command.wait()
            reader.join(5)
        assert command.returncode == 0, err.decode()[-3000:]
    worker_pids = {int(pid) for line in lines for pid in line.split()[2:]}
    assert len(worker_pids) >= 2 and command.pid not in worker_pids
    nodes: dict[str, list[int]] = {}
    for span in receiver.spans():
        node = span.attributes.get(semconv.NODE_ID)
        if span.name.startswith("ai.node") and isinstance(node, str):
            nodes.setdefault(node, []).append(int(span.resource[semconv.PROCESS_PID]))
    # every node once, from the worker that ran it, in the one trace of the one run
    # (a spawned worker finds the run its parent started through OTEL_AI_INSTRUMENTED_RUN)
    assert sorted(nodes) == sorted(f"node-{i}" for i in range(8))
    runs = [s for s in receiver.spans() if s.name == "ai.run"]
    assert [int(s.resource[semconv.PROCESS_PID]) for s in runs] == [command.pid]
    assert {s.trace_id for s in receiver.spans()} == {runs[0].trace_id}
    # and the one stage span each, which counts the nodes its workers ended (a spawned
    # worker finds the stage in OTEL_AI_INSTRUMENTED_STAGE)
    stages = {s.span_id: s for s in receiver.spans() if s.name.startswith("ai.stage")}
    assert sorted(s.name for s in stages.values()) == [
        "ai.stage 1_initial_implementation",
        "ai.stage 2_baseline_tuning",
    ]
    assert all(int(s.resource[semconv.PROCESS_PID]) == command.pid for s in stages.values())
    for span in receiver.spans():
        if span.name.startswith("ai.node"):
            stage = stages[str(span.parent_span_id)]
            assert span.attributes[semconv.STAGE_NAME] == stage.attributes[semconv.STAGE_NAME]
    assert [s.attributes[semconv.STAGE_NODES_TOTAL] for s in stages.values()] == [4, 4]
    assert all(len(pids) == 1 and pids[0] in worker_pids for pids in nodes.values()), nodes
    task_lines = sorted(str(r.body) for r in receiver.logs() if str(r.body).startswith("line from task"))
    assert task_lines == sorted(f"line from task {i}" for i in range(8))
    assert not list(data_dir.glob("spool/*/*/*.pb"))  # nothing left behind


FLUSHER_AT_EXIT = textwrap.dedent(
    """
    import json, sys, threading, time
    import otel_ai
    from otel_ai import pools
    from otel_ai.export import providers

    otel_ai.configure()
    flushes = []
    closing = providers._with_deadline

    def slow_flush(timeout=0.0):
        started = time.monotonic()
        time.sleep(0.3)  # a flush still exporting when the worker leaves
        flushes.append((threading.current_thread().name, started, time.monotonic()))
        return True

    def shutting_down(pipeline, timeout, *, shutdown, **options):
        flushes.append(("shutdown", time.monotonic(), time.monotonic()))
        return closing(pipeline, timeout, shutdown=shutdown, **options)

    providers.force_flush = providers.flush_in_turn = slow_flush
    providers._with_deadline = shutting_down
    flusher = pools._worker_flusher()
    flusher.nudge()  # the last task's flush, on the flusher's thread
    time.sleep(0.05)
    if sys.argv[1] == "finalizer":
        flusher.at_exit()  # multiprocessing's exit finalizer: the worker's last flush
    else:
        providers.shutdown()  # Python 3.12+: the pipeline's atexit shutdown comes first
    flusher.nudge()  # a task's nudge after it: nothing
    time.sleep(0.5)
    print(json.dumps(flushes))
    """
)


@pytest.mark.parametrize("first", ["finalizer", "atexit"])
def test_a_leaving_worker_waits_for_its_flush_thread_and_flushes_last(tmp_path: Path, first: str) -> None:
    """The exporters are shut down after a pool worker's last flush: an export of its
    flush thread still under way then found them closed ("Exporter already shutdown", its
    metrics counted as lost; seen with spawned workers on Python 3.13, where the
    pipeline's atexit shutdown runs before multiprocessing's exit finalizer). Whichever
    comes first waits for the thread's flush to end, and the thread flushes no more."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACEPARENT"))}
    env["OTEL_AI_DATA_DIR"] = str(tmp_path / "runs")
    done = subprocess.run(
        [sys.executable, "-c", FLUSHER_AT_EXIT, first], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    flushes = json.loads(done.stdout.strip().splitlines()[-1])
    last = "MainThread" if first == "finalizer" else "shutdown"
    assert [name for name, _start, _end in flushes] == ["otel_ai-worker-flush", last]
    (_thread, _, thread_ended), (_last, last_started, _) = flushes
    assert thread_ended <= last_started  # one after the other, the exit's last


TASK_FLUSH_CHILD = textwrap.dedent(
    """
    import concurrent.futures, glob, json, multiprocessing, os, sys, threading, time
    from opentelemetry import trace

    DATA = os.environ["OTEL_AI_DATA_DIR"]
    STARTED = []

    def count_thread_starts():
        original = threading.Thread.start

        def start(self):
            STARTED.append(self.name)
            return original(self)

        threading.Thread.start = start

    def work(i):
        trace.get_tracer("experiment").start_span(f"task {i}").end()
        return os.getpid()

    def written(name):
        # the task before returned with its span buffered (the exporters wait a minute):
        # only the worker's flush after it puts it in this worker's file
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for path in glob.glob(os.path.join(DATA, f"traces-*-{os.getpid()}.jsonl")):
                with open(path) as file:
                    if f'"{name}"' in file.read():
                        return True, STARTED
            time.sleep(0.02)
        return False, STARTED

    if __name__ == "__main__":
        context = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context, initializer=count_thread_starts) as pool:
            pool.submit(work, 0).result()
            first = pool.submit(written, "task 0").result()
            pool.submit(work, 1).result()
            second = pool.submit(written, "task 1").result()
        print(json.dumps([first, second]))
    """
)


def test_a_worker_writes_each_task_to_its_files_on_its_flush_thread_alone(tmp_path: Path) -> None:
    """With the embedded default's files, a pool worker's flush after each task writes
    the task's spans while the worker lives, one signal after another on the worker's
    flush thread: no thread of its own per signal and per task (three thread starts a
    task, about 1 ms of the worker's CPU, on the experiment's CPUs)."""
    (tmp_path / "child.py").write_text(TASK_FLUSH_CHILD)
    result = run_wrapped(
        tmp_path,
        [sys.executable, "child.py"],
        OTEL_BSP_SCHEDULE_DELAY="60000",
        OTEL_BLRP_SCHEDULE_DELAY="60000",
        OTEL_METRIC_EXPORT_INTERVAL="60000",
    )
    assert result.returncode == 0, result.stderr.decode()
    (first, _), (second, started) = json.loads(result.stdout.decode().strip().splitlines()[-1])
    assert first and second, "each task's span on disk before the next task"
    assert started.count("otel_ai-worker-flush") == 1
    assert not [name for name in started if name.startswith("otel_ai-flush-")], started
    tasks = sorted(s.name for s in telemetry(tmp_path).spans if s.name.startswith("task "))
    assert tasks == ["task 0", "task 1"]
