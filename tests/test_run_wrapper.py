"""`otel-ai run`: real wrapper processes around real commands, telemetry read back from
the embedded default's files (or an in-test OTLP receiver)."""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from s3_server import S3Env, moto_server_fixture, s3_fixture  # noqa: F401 - fixtures

from otel_ai import semconv
from otel_ai.read import SpanRecord, Telemetry, load_directory

OTEL_AI = [sys.executable, "-m", "otel_ai"]


def wrapper_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "TRACEPARENT", "TRACESTATE", "PYTEST_"))
    }
    env["OTEL_AI_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def run_wrapped(
    tmp_path: Path, command: list[str], *options: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*OTEL_AI, "run", "--no-status", *options, "--", *command],
        cwd=tmp_path,
        env=wrapper_env(tmp_path / "runs", **env),
        capture_output=True,
        timeout=timeout,
    )


def telemetry(tmp_path: Path) -> Telemetry:
    return load_directory(tmp_path / "runs")


def one(spans: list[SpanRecord], name: str) -> SpanRecord:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{name}: {len(found)} spans"
    return found[0]


POOL_CHILD = textwrap.dedent(
    """
    import concurrent.futures, multiprocessing, os, sys
    import otel_ai
    from opentelemetry import trace

    def work(i):
        with trace.get_tracer("experiment").start_as_current_span(f"task {i}") as span:
            span.set_attribute("worker.pid", os.getpid())
        return os.getpid()

    if __name__ == "__main__":
        method = sys.argv[1]
        with otel_ai.run() as run:
            with run.stage("1_initial_implementation", description="pool") as stage:
                context = multiprocessing.get_context(method)
                with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
                    pids = list(pool.map(work, range(4)))
                stage.progress(4, 4, 4, 0, 4)
        print("workers", sorted(set(pids)), "main", os.getpid())
    """
)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_process_pool_workers_join_the_span_that_submitted_them(tmp_path: Path, method: str) -> None:
    (tmp_path / "child.py").write_text(POOL_CHILD)
    result = run_wrapped(tmp_path, [sys.executable, "child.py", method], "--run-id", f"pool-{method}")
    assert result.returncode == 0, result.stderr.decode()
    assert b"workers" in result.stdout
    spans = telemetry(tmp_path).spans
    run = one(spans, "ai.run")
    stage = one(spans, "ai.stage 1_initial_implementation")
    tasks = [s for s in spans if s.name.startswith("task ")]
    assert sorted(s.name for s in tasks) == ["task 0", "task 1", "task 2", "task 3"]
    assert {s.trace_id for s in spans} == {run.trace_id}, "one trace"
    assert stage.parent_span_id == run.span_id, "the child's stage joins the wrapper's run"
    assert {s.parent_span_id for s in tasks} == {stage.span_id}
    worker_pids = {s.resource["process.pid"] for s in tasks}
    assert stage.resource["process.pid"] not in worker_pids, "tasks ran in worker processes"
    assert run.attributes[semconv.RUN_OUTCOME] == "completed"
    assert len({s.span_id for s in spans}) == len(spans), "no span exported twice"


def test_a_bash_command_and_its_output_as_log_records(tmp_path: Path) -> None:
    script = "echo 'hello out'; echo 'ERROR: disk almost full' >&2; printf 'no newline at the end'"
    result = run_wrapped(tmp_path, ["bash", "-c", script], "--run-id", "bash-run")
    assert result.returncode == 0
    assert result.stdout == b"hello out\nno newline at the end"
    assert result.stderr == b"ERROR: disk almost full\n"
    data = telemetry(tmp_path)
    run = one(data.spans, "ai.run")
    assert run.attributes[semconv.RUN_OUTCOME] == "completed"
    assert run.attributes[semconv.RUN_EXIT_CODE] == 0
    assert run.attributes[semconv.RUN_COMMAND] == shlex.join(["bash", "-c", script])
    lines = {
        (r.attributes[semconv.LOG_IOSTREAM], r.body, r.severity_text) for r in data.logs if not r.event_name
    }
    assert lines == {
        ("stdout", "hello out", "INFO"),
        ("stdout", "no newline at the end", "INFO"),
        ("stderr", "ERROR: disk almost full", "ERROR"),
    }
    assert all(r.trace_id == run.trace_id for r in data.logs)
    # the watcher of the working directory reports its final sweep before the run ends
    assert [r.event_name for r in data.logs if r.event_name] == [
        "ai.run.started",
        "ai.watch.stopped",
        "ai.run.completed",
    ]
    assert not (tmp_path / "runs" / "state" / "bash-run.json").exists(), "state removed at a clean end"


def test_exit_code_is_passed_on_and_fails_the_run(tmp_path: Path) -> None:
    result = run_wrapped(tmp_path, [sys.executable, "-c", "import sys; sys.exit(3)"])
    assert result.returncode == 3
    run = one(telemetry(tmp_path).spans, "ai.run")
    assert run.attributes[semconv.RUN_OUTCOME] == "failed"
    assert run.attributes[semconv.ERROR_TYPE] == "exit code 3"
    assert run.status_code == "ERROR"


def test_a_command_killed_by_a_signal(tmp_path: Path) -> None:
    result = run_wrapped(tmp_path, ["bash", "-c", "kill -KILL $$"])
    assert result.returncode == 128 + 9
    run = one(telemetry(tmp_path).spans, "ai.run")
    assert run.attributes[semconv.ERROR_TYPE] == "SIGKILL"
    assert run.attributes[semconv.RUN_SIGNAL] == "SIGKILL"


def test_a_command_that_does_not_exist(tmp_path: Path) -> None:
    result = run_wrapped(tmp_path, ["no-such-command-here"])
    assert result.returncode == 127
    assert b"cannot start" in result.stderr
    run = one(telemetry(tmp_path).spans, "ai.run")
    assert run.attributes[semconv.RUN_OUTCOME] == "failed"
    assert run.attributes[semconv.ERROR_TYPE] == "FileNotFoundError"


def test_python_traceback_is_one_error_record_and_names_the_failure(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import otel_ai
        def train():
            raise RuntimeError("CUDA out of memory")
        with otel_ai.run() as run:
            with run.stage("2_baseline_tuning"):
                train()
        """
    )
    result = run_wrapped(tmp_path, [sys.executable, "-c", code])
    assert result.returncode == 1
    assert b"RuntimeError: CUDA out of memory" in result.stderr
    data = telemetry(tmp_path)
    run = one(data.spans, "ai.run")
    a = run.attributes
    assert (a[semconv.RUN_OUTCOME], a[semconv.RUN_FAILED_STAGE], a[semconv.ERROR_TYPE]) == (
        "failed",
        "2_baseline_tuning",
        "RuntimeError",
    )
    assert a[semconv.EXCEPTION_MESSAGE] == "CUDA out of memory"
    assert "in train" in a[semconv.EXCEPTION_STACKTRACE]
    (traceback_record,) = [r for r in data.logs if not r.event_name and "Traceback" in str(r.body)]
    assert traceback_record.severity_text == "ERROR"
    assert traceback_record.body.splitlines()[-1] == "RuntimeError: CUDA out of memory"
    assert [s.name for s in data.spans].count("ai.run") == 1, "no second ai.run from the child"


def test_sigterm_goes_to_the_command_and_cancels_the_run(tmp_path: Path) -> None:
    child = textwrap.dedent(
        """
        import signal, sys, time, pathlib
        def stop(signum, frame):
            pathlib.Path("got-sigterm").write_text("yes")
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    process = subprocess.Popen(
        [*OTEL_AI, "run", "--no-status", "--grace", "5", "--", sys.executable, "-c", child],
        cwd=tmp_path,
        env=wrapper_env(tmp_path / "runs"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    process.send_signal(signal.SIGTERM)
    finish(process)  # well before the command's 60 s sleep would end
    assert (tmp_path / "got-sigterm").read_text() == "yes"
    run = one(telemetry(tmp_path).spans, "ai.run")
    assert run.attributes[semconv.RUN_OUTCOME] == "canceled"
    assert run.attributes[semconv.RUN_CANCEL_REASON] == "SIGTERM received by otel-ai run"


def test_a_command_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    child = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    process = subprocess.Popen(
        [*OTEL_AI, "run", "--no-status", "--grace", "1", "--", sys.executable, "-c", child],
        cwd=tmp_path,
        env=wrapper_env(tmp_path / "runs"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    process.send_signal(signal.SIGTERM)
    assert finish(process) == 128 + 9
    run = one(telemetry(tmp_path).spans, "ai.run")
    assert run.attributes[semconv.RUN_OUTCOME] == "canceled"
    assert run.attributes[semconv.RUN_SIGNAL] == "SIGKILL"


def test_sigkill_of_the_wrapper_then_recover(tmp_path: Path) -> None:
    child = "import os, time; print(os.environ['TRACEPARENT'], flush=True); time.sleep(60)"
    env = wrapper_env(tmp_path / "runs")
    process = subprocess.Popen(
        [*OTEL_AI, "run", "--no-status", "--run-id", "doomed", "--", sys.executable, "-c", child],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None
    traceparent = process.stdout.readline().decode().strip()
    os.killpg(process.pid, signal.SIGKILL)  # the wrapper and its command, as an evicted pod
    finish(process)
    assert not one_or_none(telemetry(tmp_path).spans, "ai.run")
    first = subprocess.run([*OTEL_AI, "recover"], cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert first.returncode == 0, first.stderr.decode()
    assert b"recovered run doomed" in first.stdout
    second = subprocess.run([*OTEL_AI, "recover"], cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert second.returncode == 0 and b"no unfinished run" in second.stdout
    data = telemetry(tmp_path)
    run = one(data.spans, "ai.run")
    _, trace_id, span_id, _ = traceparent.split("-")
    assert (run.trace_id, run.span_id) == (trace_id, span_id), "the original ids"
    assert run.attributes[semconv.RUN_OUTCOME] == "abandoned"
    assert run.status_code == "ERROR"
    assert run.start_ns < run.end_ns
    started = [r for r in data.logs if r.event_name == "ai.run.started"][0]
    assert started.time_ns <= run.start_ns + 1_000_000_000
    assert Counter(s.span_id for s in data.spans).most_common(1)[0][1] == 1
    assert [r.event_name for r in data.logs if r.event_name == semconv.RUN_ABANDONED] == [
        semconv.RUN_ABANDONED
    ]


def finish(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """Wait for a wrapper started with pipes, and close them."""
    process.communicate(timeout=timeout)
    return process.returncode


def one_or_none(spans: list[SpanRecord], name: str) -> SpanRecord | None:
    found = [s for s in spans if s.name == name]
    assert len(found) <= 1
    return found[0] if found else None


def test_a_new_attempt_of_a_dead_run_is_linked_to_it(tmp_path: Path) -> None:
    env = wrapper_env(tmp_path / "runs")
    process = subprocess.Popen(
        [
            *OTEL_AI,
            "run",
            "--no-status",
            "--run-id",
            "again",
            "--",
            sys.executable,
            "-c",
            "import time; print('up', flush=True); time.sleep(60)",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None and process.stdout.readline() == b"up\n"
    os.killpg(process.pid, signal.SIGKILL)
    finish(process)
    result = run_wrapped(tmp_path, ["true"], "--run-id", "again")
    assert result.returncode == 0
    runs = sorted((s for s in telemetry(tmp_path).spans if s.name == "ai.run"), key=lambda s: s.start_ns)
    assert [r.attributes[semconv.RUN_OUTCOME] for r in runs] == ["abandoned", "completed"]
    assert [r.attributes[semconv.RUN_ATTEMPT] for r in runs] == [1, 2]
    (link,) = runs[1].links
    assert (link.trace_id, link.span_id) == (runs[0].trace_id, runs[0].span_id)
    assert link.attributes[semconv.LINK_TYPE] == semconv.LINK_PREVIOUS_ATTEMPT


def test_traceparent_given_to_the_wrapper_makes_the_run_its_child(tmp_path: Path) -> None:
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    result = run_wrapped(tmp_path, ["true"], TRACEPARENT=f"00-{trace_id}-{span_id}-01")
    assert result.returncode == 0
    run = one(telemetry(tmp_path).spans, "ai.run")
    assert (run.trace_id, run.parent_span_id) == (trace_id, span_id)


def test_heartbeats_and_a_stall_warning(tmp_path: Path) -> None:
    result = run_wrapped(tmp_path, ["sleep", "3"], "--heartbeat", "0.5", "--stall-timeout", "1.5")
    assert result.returncode == 0
    events = [r for r in telemetry(tmp_path).logs if r.event_name]
    names = [r.event_name for r in events]
    assert names.count("ai.run.heartbeat") >= 3
    (stalled,) = [r for r in events if r.event_name == semconv.RUN_STALLED]
    assert stalled.severity_text == "WARN"
    assert stalled.attributes[semconv.RUN_STALLED_FOR_S] >= 1.5


LOUD_CHILD = textwrap.dedent(
    """
    import os, sys
    n = int(sys.argv[1])
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for i in range(n):
        out.write(b"out %06d \\xff\\xfe binary\\n" % i)
        err.write(b"err %06d\\n" % i)
        if i % 1000 == 0:
            out.write(b"progress\\r" * 3)
    out.write(b"tail without newline")
    """
)


def test_lines_written_as_fast_as_possible_on_both_streams(tmp_path: Path) -> None:
    lines = 100_000  # per stream: 200,000 in all
    (tmp_path / "loud.py").write_text(LOUD_CHILD)
    direct = subprocess.run(
        [sys.executable, "loud.py", str(lines)], cwd=tmp_path, capture_output=True, timeout=120
    )
    # a generous flush deadline: this machine must export 200,000 records after the burst
    wrapped = run_wrapped(
        tmp_path, [sys.executable, "loud.py", str(lines)], "--shutdown-timeout", "300", timeout=600
    )
    assert wrapped.returncode == 0
    assert wrapped.stdout == direct.stdout, "the terminal gets the command's bytes unchanged"
    assert wrapped.stderr == direct.stderr
    records = [r for r in telemetry(tmp_path).logs if not r.event_name]
    err = [r.body for r in records if r.attributes[semconv.LOG_IOSTREAM] == "stderr"]
    out = [r.body for r in records if r.attributes[semconv.LOG_IOSTREAM] == "stdout"]
    assert err == [f"err {i:06d}" for i in range(lines)], "none lost, in order"
    # a carriage-return progress bar keeps its last state: the line that follows it
    assert out == [f"out {i:06d} \ufffd\ufffd binary" for i in range(lines)] + ["tail without newline"], (
        "none lost, in order"
    )


WRITER_CHILD = textwrap.dedent(
    """
    import pathlib, struct, time, zlib
    exp = pathlib.Path("experiments")
    (exp / "logs").mkdir(parents=True, exist_ok=True)
    with open(exp / "train.log", "a") as log:
        for i in range(5):
            log.write(f"epoch {i} loss={1 / (i + 1):.3f}\\n")
            log.flush()
        log.write("WARNING: learning rate too high\\n")
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    png = b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)) + chunk(
        b"IDAT", zlib.compress(b"\\x00\\x00")) + chunk(b"IEND", b"")
    (exp / "loss_plot.png").write_bytes(png)
    time.sleep(0.5)
    """
)


def test_watched_log_files_and_artifacts_uploaded(tmp_path: Path, s3: S3Env) -> None:
    (tmp_path / "writer.py").write_text(WRITER_CHILD)
    (tmp_path / "experiments").mkdir()
    env = {k: os.environ[k] for k in os.environ if k.startswith("AWS_")}
    result = run_wrapped(
        tmp_path,
        [sys.executable, "writer.py"],
        "--run-id",
        "watched",
        "--watch",
        str(tmp_path / "experiments"),
        "--artifacts",
        f"s3://{s3.bucket}/lab",
        **env,
    )
    assert result.returncode == 0, result.stderr.decode()
    data = telemetry(tmp_path)
    lines = [r for r in data.logs if not r.event_name and r.attributes.get(semconv.LOG_FILE_PATH)]
    assert [r.body for r in lines] == [f"epoch {i} loss={1 / (i + 1):.3f}" for i in range(5)] + [
        "WARNING: learning rate too high"
    ]
    assert {r.attributes[semconv.LOG_SOURCE] for r in lines} == {"train.log"}
    assert lines[-1].severity_text == "WARN"
    run = one(data.spans, "ai.run")
    events = {e.name: e.attributes for e in run.events}
    assert events["ai.artifact.detected"][semconv.ARTIFACT_PATH] == "loss_plot.png"
    registered = events["ai.artifact.registered"]
    assert registered[semconv.ARTIFACT_KEY] == "lab/runs/watched/loss_plot.png"
    assert registered[semconv.ARTIFACT_URI] == f"s3://{s3.bucket}/lab/runs/watched/loss_plot.png"
    body, _ = s3.get("lab/runs/watched/loss_plot.png")
    assert hashlib.sha256(body).hexdigest() == registered[semconv.ARTIFACT_SHA256]


def test_a_huge_traceback_is_truncated_keeping_its_head_and_its_exception(tmp_path: Path) -> None:
    """1,000 frames of 60 KB each: one bounded ERROR record (head, marker, the exception
    line at its end), not a 60 MB record dropped as too large."""
    code = textwrap.dedent(
        """
        import sys
        out = sys.stderr
        out.write("Traceback (most recent call last):\\n")
        for i in range(1000):
            out.write(f'  File "train.py", line {i}, in step_{i}: ' + "x" * 60_000 + "\\n")
        out.write("ValueError: the real reason " + "y" * 100 + "\\n")
        out.flush()
        print("after the traceback", flush=True)
        """
    )
    result = run_wrapped(tmp_path, [sys.executable, "-c", code])
    assert result.returncode == 0
    data = telemetry(tmp_path)
    records = [r for r in data.logs if not r.event_name and "Traceback" in str(r.body)]
    assert len(records) == 1, [len(str(r.body)) for r in records]
    body = records[0].body
    assert isinstance(body, str) and len(body) <= 64 * 1024
    assert body.startswith("Traceback (most recent call last):\n")
    assert body.splitlines()[-1].startswith("ValueError: the real reason yyy")
    assert "…[truncated " in body
    assert records[0].severity_text == "ERROR"
    assert records[0].attributes[semconv.LOG_TRUNCATED] is True
    assert any(r.body == "after the traceback" for r in data.logs)


def test_recover_skips_damaged_state_files_by_name_and_recovers_the_rest(tmp_path: Path) -> None:
    import json

    from otel_ai.runner.state import RunState, state_path, write_state

    data_dir = tmp_path / "runs"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    good = RunState("good-run", "ab" * 16, "cd" * 8, 1_700_000_000_000_000_000, int(dead.stdout), 1.0)
    write_state(data_dir, good)
    wrong = RunState("wrong-typed", "12" * 16, "34" * 8, 1_700_000_000_000_000_000, int(dead.stdout), 1.0)
    path = write_state(data_dir, wrong)
    data = json.loads(path.read_text())
    data["start_ns"] = "yesterday"
    path.write_text(json.dumps(data))
    truncated = state_path(data_dir, "truncated")
    truncated.write_text(json.dumps({**data, "run_id": "truncated"})[:40])
    env = wrapper_env(data_dir)
    result = subprocess.run(
        [*OTEL_AI, "recover"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "recovered run good-run" in result.stdout
    assert "Traceback" not in result.stderr
    assert f"damaged state file {path}" in result.stderr and "'start_ns'" in result.stderr
    assert f"damaged state file {truncated}" in result.stderr
    (run,) = [s for s in telemetry(tmp_path).spans if s.name == "ai.run"]
    assert run.attributes[semconv.RUN_ID] == "good-run" and run.attributes[semconv.RUN_OUTCOME] == "abandoned"


def test_the_wrapper_closes_each_pipe_of_the_command_once(tmp_path: Path) -> None:
    """Each pipe is closed by its file object, once. Closing its bare fd left the object
    to close the number again at exit, when it may belong to another file by then (on
    Python 3.13, "Exception ignored ... Bad file descriptor" after every run; on 3.11
    with -X dev)."""
    result = subprocess.run(
        [sys.executable, "-X", "dev", *OTEL_AI[1:], "run", "--no-status", "--no-watch", "--"]
        + [sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"],
        cwd=tmp_path,
        env=wrapper_env(tmp_path / "runs"),
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert result.stdout.decode().splitlines() == ["out"]
    assert result.stderr.decode().splitlines() == ["err"]


def test_a_command_that_ends_at_once_reports_only_what_it_wrote(tmp_path: Path) -> None:
    """The watcher's first scan runs in the background and the command may end before it
    does: what existed before the run (plots, a log) is still not the run's (not reported,
    not read again), what the command wrote is."""
    work = tmp_path / "work"
    old = time.time() - 3600
    for index in range(300):  # enough for a first scan still under way at the end
        figure = work / f"old{index // 50}" / f"figure_{index}.png"
        figure.parent.mkdir(parents=True, exist_ok=True)
        figure.write_bytes(b"an old figure")
        os.utime(figure, (old, old))
    (work / "old.log").write_text("a line from an earlier run\n")
    os.utime(work / "old.log", (old, old))
    write = "open('new_plot.png', 'wb').write(b'drawn by the run')"
    result = subprocess.run(
        [*OTEL_AI, "run", "--no-status", "--", sys.executable, "-c", write],
        cwd=work,
        env=wrapper_env(tmp_path / "runs"),
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    data = telemetry(tmp_path)
    run = one(data.spans, "ai.run")
    detected = [
        e.attributes[semconv.ARTIFACT_PATH] for e in run.events if e.name == semconv.ARTIFACT_DETECTED
    ]
    assert detected == ["new_plot.png"]
    assert not [r for r in data.logs if r.body == "a line from an earlier run"]
