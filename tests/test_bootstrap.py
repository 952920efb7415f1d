"""The bootstrap of Python children, the channel to the wrapper, and the status line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from otel_ai.bootstrap import SITE_DIR
from otel_ai.propagation import format_traceparent, parse_traceparent
from otel_ai.runner.channel import ChannelServer
from otel_ai.runner.status import Status, StatusLine
from otel_ai.runner.streams import TerminalOut


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACEPARENT", "PYTEST_"))}
    env.update(extra)
    return env


def test_an_existing_sitecustomize_still_runs(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text("import os\nos.environ['THEIR_SITECUSTOMIZE'] = 'ran'\n")
    # otel_ai itself is imported only with the first module it hooks (an interpreter's
    # child running generated code pays nothing), and then the hook is in place
    code = (
        "import os, sys; loaded = 'otel_ai' in sys.modules; import concurrent.futures.process as p; "
        "print(os.environ.get('THEIR_SITECUSTOMIZE'), loaded, getattr(p.ProcessPoolExecutor.submit, '_otel_ai_wrapped', False))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env(PYTHONPATH=os.pathsep.join([str(SITE_DIR), str(theirs)])),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ran", "False", "True"]


def test_a_failing_sitecustomize_or_bootstrap_never_breaks_the_child(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text("raise RuntimeError('broken site setup')\n")
    # a shadowing "otel_ai" that cannot be imported stands for an interpreter without otel_ai
    broken = tmp_path / "broken"
    (broken / "otel_ai").mkdir(parents=True)
    (broken / "otel_ai" / "__init__.py").write_text("raise ImportError('no otel_ai here')\n")
    result = subprocess.run(
        [sys.executable, "-c", "import concurrent.futures.process; print('the experiment runs')"],
        env=child_env(
            PYTHONPATH=os.pathsep.join([str(SITE_DIR), str(broken), str(theirs)]), OTEL_AI_DEBUG="1"
        ),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,  # not the checkout: no otel_ai there
    )
    assert result.returncode == 0
    assert result.stdout == "the experiment runs\n"
    assert "broken site setup" in result.stderr and "no otel_ai here" in result.stderr, "failures are logged"


def test_the_bootstrap_imports_no_opentelemetry_until_used() -> None:
    code = "import sys; import concurrent.futures.process; print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env(PYTHONPATH=str(SITE_DIR)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_traceparent_round_trip() -> None:
    header = format_traceparent(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7)
    assert header == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert parse_traceparent(header) == (0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, 1)
    for bad in (
        "",
        "garbage",
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-xyz-01",
    ):
        assert parse_traceparent(bad) is None


def test_children_report_on_the_channel_without_blocking(tmp_path: Path) -> None:
    received: list[dict[str, object]] = []
    server = ChannelServer().start(received.append)
    code = textwrap.dedent(
        """
        import otel_ai
        with otel_ai.run() as run:
            with run.stage("1_initial_implementation") as stage:
                stage.progress(3, 10, 2, 1, 3, best_metric="0.91")
                with stage.node("n1", kind="draft") as node:
                    node.completed(False, "0.91", 1.0)
        """
    )
    env = child_env(
        PYTHONPATH=str(SITE_DIR),
        OTEL_AI_CHANNEL=server.path,
        OTEL_AI_RUN_ID="chan",
        TRACEPARENT="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        OTEL_AI_DATA_DIR=str(tmp_path / "runs"),
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 5
        while len(received) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop()
    kinds = [m["kind"] for m in received]
    assert kinds == ["stage", "progress", "node", "stage_end", "run_end"]
    progress = received[1]
    assert (
        progress["stage"],
        progress["progress"],
        progress["good"],
        progress["buggy"],
        progress["best"],
    ) == ("1_initial_implementation", 0.3, 2, 1, "0.91")
    assert received[0]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert received[-1]["outcome"] == "completed"


def _reports_to_a_busy_wrapper(code: str, expected: int) -> list[dict[str, object]]:
    """What a wrapper slower than its children (2 ms a report) receives from ``code``,
    once ``expected`` reports came (and a moment more, to see none doubled); the child
    must have said nothing about lost reports."""
    received: list[dict[str, object]] = []

    def busy(message: dict[str, object]) -> None:
        time.sleep(0.002)
        received.append(message)

    server = ChannelServer().start(busy)
    try:
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=child_env(OTEL_AI_CHANNEL=server.path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 10
        while len(received) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        server.stop()
    assert "lost" not in result.stderr
    return received


def test_a_burst_of_reports_reaches_a_busy_wrapper_whole_and_in_order() -> None:
    # The wrapper's socket holds a few datagrams (net.unix.max_dgram_qlen, 10 by default)
    # and the wrapper runs at a lower priority: a burst must wait in the child, not vanish.
    code = """
        from otel_ai import propagation
        for i in range(500):
            propagation.report("progress", stage="s", i=i)
        propagation.report("best", stage="s", node_id="last")
        """
    received = _reports_to_a_busy_wrapper(code, 501)
    assert [m.get("i") for m in received[:-1]] == list(range(500)), "every report, in order"
    assert received[-1]["kind"] == "best" and received[-1]["node_id"] == "last"


def test_a_forked_child_sends_its_own_reports_and_never_its_parents() -> None:
    code = """
        import os
        from otel_ai import propagation
        for i in range(100):
            propagation.report("progress", who="parent", i=i)
        pid = os.fork()  # most of the parent's reports still wait for room
        if pid == 0:
            for i in range(3):
                propagation.report("progress", who="child", i=i)
            propagation.drain_at_exit()  # as a pool worker's exit flush does
            os._exit(0)
        os.waitpid(pid, 0)
        """
    received = _reports_to_a_busy_wrapper(code, 103)
    assert [m["i"] for m in received if m["who"] == "parent"] == list(range(100))
    assert [m["i"] for m in received if m["who"] == "child"] == [0, 1, 2]


def test_reporting_to_a_vanished_wrapper_costs_nothing(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import time
        from otel_ai.propagation import report, _reporter
        start = time.perf_counter()
        for i in range(1000):
            report("progress", stage="s", progress=i / 1000)
        from otel_ai import propagation
        print(propagation._reporter.dropped, time.perf_counter() - start)
        """
    )
    env = child_env(OTEL_AI_CHANNEL=str(tmp_path / "gone.sock"))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    dropped, _elapsed = result.stdout.split()
    assert dropped == "1000", "every undeliverable report is counted"


def test_status_line_never_corrupts_the_commands_output() -> None:
    read_fd, write_fd = os.pipe()
    status = Status(
        "run-1", stage="1_initial_implementation", progress=0.4, good=3, buggy=1, total=4, best="0.91"
    )
    line = StatusLine(status, write_fd)
    out = TerminalOut(write_fd, line)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            data = os.read(read_fd, 65536)
            if not data:
                break
            chunks.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    line._at_line_start[write_fd] = True
    line.draw()
    out.write(b"partial ")
    line.draw()  # must not draw in the middle of the command's line
    out.write(b"line\nprogress 10%\rprogress 20%\r")
    line.draw()
    out.write(b"progress 100%\n")
    line.draw()
    line.stop()
    os.close(write_fd)
    reader.join()
    os.close(read_fd)
    seen = b"".join(chunks)
    clear = b"\r\x1b[2K"
    # every status drawing starts with a clear and sits alone between command output
    pieces = seen.split(clear)
    command_bytes = b"".join(p for p in pieces if b"otel-ai" not in p)
    assert command_bytes == b"partial line\nprogress 10%\rprogress 20%\rprogress 100%\n"
    drawn = [p for p in pieces if b"otel-ai" in p]
    assert len(drawn) == 2, "drawn at line starts only"
    assert b"1_initial_implementation" in drawn[0] and b"40%" in drawn[0]


def test_the_channel_server_ignores_garbage() -> None:
    received: list[dict[str, object]] = []
    server = ChannelServer().start(received.append)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        for data in (b"not json", b"[1, 2]", json.dumps({"kind": "stage", "name": "s"}).encode()):
            sock.sendto(data, server.path)
        sock.close()
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        server.stop()
    assert received == [{"kind": "stage", "name": "s"}]
    assert server.malformed == 2
