"""Pool workers flush in the background, not before each task returns (issue 15, point 1):
nothing they emitted is lost when the pool kills them at a stage's end, idle or in the
middle of a task, with fork or spawn. Read back from the files of a real ``otel-ai run``."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from test_run_wrapper import run_wrapped, telemetry

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
