"""`otel-ai run` starts its command first: the run span's ids chosen before OpenTelemetry is
loaded and handed to the command, the wrapper's own priority lowered once the command
runs, and what the command writes before the watcher starts still recorded."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from test_run_wrapper import OTEL_AI, one, run_wrapped, telemetry, wrapper_env
from watch_helpers import Collector, append, logs_only, wait_for

from otel_ai import semconv
from otel_ai.propagation import parse_traceparent
from otel_ai.read import SpanRecord
from otel_ai.runner.launch import PIPE_BYTES, WRAPPER_NICE

REPORTER = textwrap.dedent(
    """
    import fcntl, json, os, time
    report = {
        "started_ns": time.time_ns(),
        "traceparent": os.environ.get("TRACEPARENT"),
        "tracestate": os.environ.get("TRACESTATE"),
        "run_id": os.environ.get("OTEL_AI_RUN_ID"),
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "wrapper_nice": os.getpriority(os.PRIO_PROCESS, os.getppid()),
    }
    size = getattr(fcntl, "F_GETPIPE_SZ", None)
    if size is not None:
        report["stdout_pipe"] = fcntl.fcntl(1, size)
    # the wrapper lowers its priority just after starting us
    time.sleep(0.5)
    report["wrapper_nice_later"] = os.getpriority(os.PRIO_PROCESS, os.getppid())
    print(json.dumps(report))
    """
)


def _reported_under_the_run(
    tmp_path: Path, *options: str, **env: str
) -> tuple[dict[str, object], SpanRecord]:
    """What the command reported, after checking it ran as the child of the run span."""
    (tmp_path / "reporter.py").write_text(REPORTER)
    result = run_wrapped(tmp_path, [sys.executable, "reporter.py"], *options, **env)
    assert result.returncode == 0, result.stderr.decode()
    stdout = result.stdout.decode()
    report = dict(json.loads(next(line for line in stdout.splitlines() if line.startswith("{"))))
    run = one(telemetry(tmp_path).spans, semconv.SPAN_RUN)
    parsed = parse_traceparent(str(report["traceparent"]))
    assert parsed is not None
    assert (f"{parsed[0]:032x}", f"{parsed[1]:016x}") == (run.trace_id, run.span_id)
    return report, run


def test_the_command_gets_the_run_span_it_runs_under_and_a_lower_priority_wrapper(tmp_path: Path) -> None:
    report, run = _reported_under_the_run(tmp_path, "--run-id", "launched")
    assert report["run_id"] == "launched" == run.attributes[semconv.RUN_ID]
    # the span starts when the command was started, not when the wrapper got round to it
    assert run.start_ns <= int(str(report["started_ns"]))
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert report["nice"] == base, "the command runs at the priority it was given"
    assert report["wrapper_nice_later"] == min(base + WRAPPER_NICE, 19)
    if "stdout_pipe" in report:  # Linux: room for what the command writes before it is read
        assert int(str(report["stdout_pipe"])) >= PIPE_BYTES


def test_with_another_id_generator_the_span_starts_first_and_the_command_still_joins_it(
    tmp_path: Path,
) -> None:
    report, run = _reported_under_the_run(tmp_path, OTEL_PYTHON_ID_GENERATOR="random")
    assert report["run_id"] == run.attributes[semconv.RUN_ID]


SESSION_REPORTER = textwrap.dedent(
    """
    import json, os
    print(json.dumps({
        "sid": os.getsid(0), "pgid": os.getpgid(0), "pid": os.getpid(),
        "wrapper_pid": os.getppid(), "wrapper_sid": os.getsid(os.getppid()),
    }))
    """
)


def _session_report(tmp_path: Path, *, terminal: bool) -> dict[str, int]:
    """Run the wrapper as the leader of a new session, with a pseudo-terminal as its
    controlling terminal or none; what the command reports of its session and group."""
    import pty
    import termios

    (tmp_path / "session.py").write_text(SESSION_REPORTER)
    command = [*OTEL_AI, "run", "--no-status", "--", sys.executable, "session.py"]
    env = wrapper_env(tmp_path / "runs")
    if not terminal:
        result = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, timeout=120, start_new_session=True
        )
    else:
        leader, follower = pty.openpty()
        try:
            result = subprocess.run(
                command,
                cwd=tmp_path,
                env=env,
                stdin=follower,
                capture_output=True,
                timeout=120,
                start_new_session=True,
                # the pseudo-terminal becomes the new session's controlling terminal
                preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
            )
        finally:
            os.close(follower)
            os.close(leader)
    assert result.returncode == 0, result.stderr.decode()
    line = next(x for x in result.stdout.decode().splitlines() if x.startswith("{"))
    return dict(json.loads(line))


def test_without_a_terminal_the_command_shares_the_wrappers_session_in_a_group_of_its_own(
    tmp_path: Path,
) -> None:
    # Linux shares CPU time between sessions first ("autogroup"): in the same session as
    # the command, the wrapper's lower priority holds against the command's processes
    report = _session_report(tmp_path, terminal=False)
    assert report["pgid"] == report["pid"], "its own process group: signals reach its whole tree"
    assert report["sid"] == report["wrapper_sid"], "the wrapper's session"


def test_with_a_terminal_the_command_gets_a_session_of_its_own(tmp_path: Path) -> None:
    # a group in the background of the terminal's session would be stopped on reading it
    report = _session_report(tmp_path, terminal=True)
    assert report["pgid"] == report["pid"] == report["sid"]
    assert report["sid"] != report["wrapper_sid"]


ORCHESTRATOR_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ORCHESTRATOR_SPAN = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("tracestate", "passed_on"),
    [
        ("vendor=opaque , other@tenant=x:1", "vendor=opaque,other@tenant=x:1"),
        ("Not A Key=1,vendor=opaque", None),  # invalid: dropped whole, as the SDK does
        ("a=1,a=2", None),  # a key twice
    ],
)
def test_an_orchestrators_tracestate_reaches_the_command_as_the_sdk_would_pass_it(
    tmp_path: Path, tracestate: str, passed_on: str | None
) -> None:
    report, run = _reported_under_the_run(
        tmp_path,
        TRACEPARENT=f"00-{ORCHESTRATOR_TRACE}-{ORCHESTRATOR_SPAN}-01",
        TRACESTATE=tracestate,
    )
    assert (run.trace_id, run.parent_span_id) == (ORCHESTRATOR_TRACE, ORCHESTRATOR_SPAN)
    assert report["tracestate"] == passed_on


@pytest.mark.skipif(not hasattr(fcntl, "F_GETPIPE_SZ"), reason="pipe sizes are Linux's")
def test_a_burst_of_output_at_start_is_all_recorded(tmp_path: Path) -> None:
    # more than a default pipe holds, written before the wrapper reads anything
    burst = "import sys\nfor i in range(20000): sys.stdout.write(f'line {i:05d} ' + 'x' * 40 + '\\n')\n"
    (tmp_path / "burst.py").write_text(burst)
    result = run_wrapped(tmp_path, [sys.executable, "burst.py"])
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().count("\n") == 20000
    lines = [r.body for r in telemetry(tmp_path).logs if r.attributes.get(semconv.LOG_IOSTREAM) == "stdout"]
    assert lines == [f"line {i:05d} " + "x" * 40 for i in range(20000)]


def test_files_changed_since_the_command_started_are_new_to_a_later_watcher(tmp_path: Path) -> None:
    old = tmp_path / "old.log"
    old.write_text("before the run\n")
    past = time.time() - 60
    os.utime(old, (past, past))
    started_ns = time.time_ns()
    fresh = tmp_path / "fresh.log"
    fresh.write_text("written by the command before the watcher started\n")
    sink = Collector()
    watcher = logs_only(tmp_path, sink, new_since_ns=started_ns, state_dir=tmp_path / "state")
    try:
        append(old, "after the watcher started\n")
        wait_for(lambda: len(sink) >= 2, what="both lines")
    finally:
        watcher.stop(2.0)
    assert sink.texts("fresh.log") == ["written by the command before the watcher started"]
    assert sink.texts("old.log") == ["after the watcher started"], "an older file is tailed from its end"


BROKEN_SUPERVISOR = textwrap.dedent(
    """
    import sys
    import otel_ai.runner.supervisor as supervisor
    from otel_ai.cli import main

    def broken(self):
        raise RuntimeError("the pipeline could not be built")

    supervisor.Supervisor.run = broken
    sys.exit(main(sys.argv[1:]))
    """
)


def test_a_command_started_before_telemetry_failed_is_still_followed_to_its_end(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text(BROKEN_SUPERVISOR)
    (tmp_path / "child.py").write_text(
        "import sys\nprint('out ' * 3)\nsys.stderr.write('err\\n')\nsys.exit(3)\n"
    )
    result = subprocess.run(
        [sys.executable, "broken.py", "run", "--no-status", "--", sys.executable, "child.py"],
        cwd=tmp_path,
        env=wrapper_env(tmp_path / "runs"),
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 3, result.stderr.decode()
    assert result.stdout.decode() == "out out out \n"
    assert "err\n" in result.stderr.decode()
    assert "telemetry failed to start" in result.stderr.decode()


def test_a_second_wrapper_of_a_running_run_id_is_refused_before_its_command_starts(tmp_path: Path) -> None:
    (tmp_path / "first.py").write_text("import time\ntime.sleep(60)\n")
    (tmp_path / "second.py").write_text("open('second-ran', 'w').close()\n")
    env = wrapper_env(tmp_path / "runs")
    first = subprocess.Popen(
        [*OTEL_AI, "run", "--no-status", "--run-id", "twice", "--", sys.executable, "first.py"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: (tmp_path / "runs" / "state" / "twice.json").exists(), 60, "the first run's state")
        second = subprocess.Popen(
            [*OTEL_AI, "run", "--no-status", "--run-id", "twice", "--", sys.executable, "second.py"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _out, err = second.communicate(timeout=60)
        assert second.returncode == 2
        assert f"run 'twice' is already running under otel-ai run (pid {first.pid})" in err.decode()
        assert not (tmp_path / "second-ran").exists(), "the command of a refused run never starts"
        sockets = [p for p in os.listdir(tempfile.gettempdir()) if p.startswith(f"otel-ai-{second.pid}-")]
        assert sockets == [], "the refused wrapper leaves no channel socket behind"
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(60)
