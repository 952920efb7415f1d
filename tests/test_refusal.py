"""SPEC section 5: a backend that refuses a signal for good, and signals turned off.

Real servers on 127.0.0.1: an OTLP/HTTP receiver serving only ``/v1/traces`` (404 for
logs and metrics, as MLflow), one answering 405, a gRPC server whose logs and metrics
services are not registered (UNIMPLEMENTED), one answering 422 with a JSON body. The
exporting programs are real processes; what arrived is decoded from the wire, what was
spooled or written is read from the data directory, and stderr is read as the user sees it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from otlp_receiver import OTLPReceiver

import otel_ai
import otel_ai.testing
from otel_ai.export.requests import REQUEST_TYPES
from otel_ai.export.spool import OwnSpool

OTEL_AI = [sys.executable, "-m", "otel_ai"]

# a run with events (log records), a metric, spans; flushed twice so that the refused
# signals are offered again after the refusal
PROGRAM = textwrap.dedent(
    """
    import sys, otel_ai
    for round in range(2):
        with otel_ai.run(run_id=f"refusal-{round}") as run:
            with run.stage("1_initial_implementation") as stage:
                for i in range(3):
                    with stage.node(node_id=f"n{round}-{i}", kind="draft") as node:
                        node.completed(is_buggy=False, metric=0.5 + i, exec_time_s=0.1)
        print("flushed", otel_ai.force_flush(10.0), flush=True)
    print("shutdown", otel_ai.shutdown(10.0), flush=True)
    """
)


def environment(data_dir: Path, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUNPOD_"))}
    env.update(OTEL_AI_DATA_DIR=str(data_dir), OTEL_EXPORTER_OTLP_TIMEOUT="2", PYTHONUNBUFFERED="1")
    env.update(variables)
    return env


def run_program(data_dir: Path, program: str = PROGRAM, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", program],
        check=False,
        env=environment(data_dir, **variables),
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_wrapped(
    cwd: Path, run_id: str, program: Path, data_dir: Path, endpoint: str
) -> subprocess.CompletedProcess[str]:
    """``program`` under ``otel-ai run`` with OTLP to ``endpoint``."""
    return subprocess.run(
        [
            *OTEL_AI,
            "run",
            "--no-watch",
            "--no-status",
            "--run-id",
            run_id,
            "--",
            sys.executable,
            str(program),
        ],
        env=environment(data_dir, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint),
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def spooled(data_dir: Path, signal: str | None = None) -> list[Path]:
    root = data_dir / "spool"
    return sorted(root.glob(f"*/{signal or '*'}/*.pb")) if root.is_dir() else []


def refusal_lines(stderr: str, signal: str) -> list[str]:
    return [line for line in stderr.splitlines() if f"refuses {signal} for good" in line]


def endpoint_of(receiver: OTLPReceiver, protocol: str) -> str:
    return receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint


# --------------------------------------------------------------------------- live export


@pytest.mark.parametrize(
    ("protocol", "answer"),
    [("http/protobuf", 404), ("http/protobuf", 405), ("grpc", "UNIMPLEMENTED")],
    ids=["http-404", "http-405", "grpc-unimplemented"],
)
def test_a_traces_only_backend_gets_the_traces_and_nothing_is_kept_for_the_rest(
    tmp_path: Path, protocol: str, answer: int | str
) -> None:
    data_dir = tmp_path / "data"
    with OTLPReceiver(signals=("traces",) if answer != 405 else ("traces", "logs", "metrics")) as receiver:
        if answer == 405:
            receiver.answers.update(
                {"logs": (405, b"Method Not Allowed"), "metrics": (405, b"Method Not Allowed")}
            )
        result = run_program(
            data_dir,
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint_of(receiver, protocol),
            OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        )
        assert result.returncode == 0, result.stderr
        # the refused signals do not hold the others back: every flush succeeds
        assert result.stdout.split() == ["flushed", "True", "flushed", "True", "shutdown", "True"], (
            result.stdout
        )
        transport = "grpc" if protocol == "grpc" else "http"
        spans = receiver.spans()
        assert {s.name for s in spans} >= {"ai.run", "ai.stage 1_initial_implementation", "ai.node draft"}
        assert len([s for s in spans if s.name == "ai.node draft"]) == 6
        assert receiver.logs() == [] and receiver.metrics() == []
        # asked once, then never again: the signal is no longer exported
        assert receiver.rejected("logs", transport) == 1
        assert receiver.rejected("metrics", transport) == 1
    # said once, naming signal, endpoint and answer
    status = f"HTTP {answer}" if isinstance(answer, int) else f"gRPC {answer}"
    for signal in ("logs", "metrics"):
        lines = refusal_lines(result.stderr, signal)
        assert len(lines) == 1, result.stderr
        assert status in lines[0] and "127.0.0.1" in lines[0], lines[0]
    assert "cannot deliver" not in result.stderr
    # nothing spooled for them, and no embedded-default file either
    assert spooled(data_dir) == []
    assert not list(data_dir.glob("*.jsonl"))


def test_4xx_is_printed_with_its_body_once_and_the_data_is_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    body = b'{"error_code": "INVALID_PARAMETER_VALUE", "message": "Missing header x-mlflow-experiment-id\x1b[2J\x07"}'
    with OTLPReceiver() as receiver:
        receiver.answers["traces"] = (422, body)
        result = run_program(data_dir, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.http_endpoint)
        assert result.returncode == 0, result.stderr
        assert receiver.rejected("traces", "http") >= 2  # tried again: a 422 may be fixed
        assert receiver.logs()  # the other signals go on
    lines = [line for line in result.stderr.splitlines() if "HTTP 422" in line]
    assert len(lines) == 1, result.stderr
    assert "Missing header x-mlflow-experiment-id" in lines[0]
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    # not a refusal for good: the spans wait in the spool for a fixed configuration
    assert spooled(data_dir, "traces")
    assert not spooled(data_dir, "logs")


def test_the_processes_of_one_otel_ai_run_say_a_refusal_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    child = tmp_path / "child.py"
    child.write_text(PROGRAM)
    with OTLPReceiver(signals=("traces",)) as receiver:
        result = run_wrapped(tmp_path, "wrapped", child, data_dir, receiver.http_endpoint)
        assert result.returncode == 0, result.stderr
        names = {s.name for s in receiver.spans()}
        assert {"ai.run", "ai.node draft"} <= names
        assert receiver.logs() == []
        # the wrapper and its child each asked once
        assert receiver.rejected("logs", "http") == 2
    assert len(refusal_lines(result.stderr, "logs")) == 1, result.stderr
    assert len(refusal_lines(result.stderr, "metrics")) == 1, result.stderr
    assert spooled(data_dir) == []
    # the markers that kept the second process quiet are gone with the run
    assert not list(Path(tempfile.gettempdir()).glob("otel-ai-*.sock.refused-*"))


POOL_PROGRAM = textwrap.dedent(
    """
    import concurrent.futures, multiprocessing, os
    import otel_ai
    from opentelemetry import trace

    def work(i):
        with trace.get_tracer("experiment").start_as_current_span(f"task {i}"):
            pass
        return os.getpid()

    if __name__ == "__main__":
        with otel_ai.run() as run:
            with run.stage("1_initial_implementation"):
                context = multiprocessing.get_context("fork")
                with concurrent.futures.ProcessPoolExecutor(3, mp_context=context) as pool:
                    print("pids", len(set(pool.map(work, range(12)))), flush=True)
    """
)


def test_the_processes_of_one_otel_ai_run_say_an_outage_once_a_minute(tmp_path: Path) -> None:
    """A collector that answers 503: the wrapper, the command and each of its pool
    workers meet it; one line says it for all of them (each used to say it itself)."""
    data_dir = tmp_path / "data"
    (tmp_path / "child.py").write_text(POOL_PROGRAM)
    with OTLPReceiver(mode="unavailable") as receiver:
        result = run_wrapped(tmp_path, "outage", tmp_path / "child.py", data_dir, receiver.http_endpoint)
        assert result.returncode == 0, result.stderr
        # the wrapper, the command and its workers all tried, and were all refused
        assert receiver.rejected("traces", "http") >= 3
    said = [line for line in result.stderr.splitlines() if "cannot deliver traces" in line]
    assert len(said) == 1, result.stderr
    assert "(HTTP 503" in said[0] and "spooling to" in said[0]
    # nothing lost: every process's spans are in the spool
    assert spooled(data_dir, "traces")
    assert not list(Path(tempfile.gettempdir()).glob("otel-ai-*.sock.outage-*"))


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_what_an_outage_spooled_of_a_signal_goes_once_the_backend_refuses_it(
    protocol: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Down first (everything spooled), then back as a traces-only backend: the spooled
    traces arrive, the spooled logs and metrics are deleted, and the traces go on."""
    from test_durability import TcpProxy, scenario, upstream_port, wait_until

    from otel_ai.export import durable

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    data_dir = Path(os.environ["OTEL_AI_DATA_DIR"])
    with OTLPReceiver(signals=("traces",)) as receiver:
        proxy = TcpProxy(upstream_port(receiver, protocol))  # not started: the backend is down
        otel_ai.configure(endpoint=proxy.endpoint, protocol=protocol)
        made = scenario("outage")
        assert not otel_ai.force_flush(5.0)
        assert spooled(data_dir, "logs") and spooled(data_dir, "traces")
        proxy.start()
        try:
            with caplog.at_level("WARNING", logger="otel_ai"):
                # (a gRPC channel reconnects after a backoff of its own)
                wait_until(lambda: otel_ai.force_flush(5.0), 30.0, "the spooled traces delivered")
                assert otel_ai.force_flush(10.0)  # the metrics, collected again, are refused at once
                scenario("after")
                assert otel_ai.force_flush(10.0)
            assert spooled(data_dir) == []
            names = [s.name for s in receiver.spans() if s.name != "ai.run.live"]
            assert len(names) == 2 * made["spans"] and len({s.span_id for s in receiver.spans()}) == len(
                receiver.spans()
            )
            assert receiver.rejected("logs") == 1 and receiver.rejected("metrics") == 1
            refusals = [r.getMessage() for r in caplog.records if "for good" in r.getMessage()]
            assert len(refusals) == 2 and {"logs", "metrics"} == {
                m.split(" refuses ")[1].split()[0] for m in refusals
            }
            assert durable.dropped_totals()[("logs", durable.DROP_REFUSED)] > 0
        finally:
            otel_ai.testing.reset()
            proxy.stop()


def test_what_a_refusal_drops_is_counted_in_the_dropped_metric(otlp_receiver: OTLPReceiver) -> None:
    from test_durability import scenario

    from otel_ai import semconv

    otlp_receiver.answers["logs"] = (405, b"")
    otel_ai.configure(endpoint=otlp_receiver.http_endpoint)
    try:
        scenario("counted")
        assert otel_ai.force_flush(10.0)
        scenario("counted-again")
        assert otel_ai.force_flush(10.0)
        assert otel_ai.force_flush(10.0)  # the counter, observed after the last records
        offered = 2 * len(
            [s for s in otlp_receiver.spans() if s.name == "ai.node draft"]
        )  # >= 1 record per node
        dropped = [
            p
            for p in otlp_receiver.metrics()
            if p.name == semconv.TELEMETRY_DROPPED
            and p.attributes[semconv.TELEMETRY_DROP_REASON] == "refused"
        ]
        assert dropped and {p.attributes[semconv.TELEMETRY_SIGNAL] for p in dropped} == {"logs"}
        assert max(p.value for p in dropped) >= offered  # type: ignore[type-var]
        assert otlp_receiver.rejected("logs") == 1 and otlp_receiver.logs() == []
    finally:
        otel_ai.testing.reset()


def test_a_request_that_slipped_in_during_the_refusal_is_cleared_not_resent(
    otlp_receiver: OTLPReceiver,
) -> None:
    """The race of a batch queued while the refusal came in: sent once more, refused,
    cleared; never a loop of requests against the refusing endpoint."""
    import time

    from test_durability import scenario

    from otel_ai.export import durable
    from otel_ai.export.providers import get_pipeline

    otlp_receiver.answers["logs"] = (404, b"")
    otel_ai.configure(endpoint=otlp_receiver.http_endpoint)
    try:
        scenario("race")
        assert otel_ai.force_flush(10.0)
        # the logs delivery of this process's pipeline
        processor = get_pipeline().logger_provider._multi_log_record_processor._log_record_processors[0]  # type: ignore[union-attr]
        delivery = processor._delivering.inner.delivery
        assert isinstance(delivery, durable.Delivery) and delivery.refused
        slipped = durable._Entry((10**9,), 1, 0, data=b"")
        with delivery.cond:
            delivery.pending.append(slipped)
            delivery.cond.notify_all()
        assert otel_ai.force_flush(10.0)
        time.sleep(1.0)
        assert otlp_receiver.rejected("logs") == 2
        assert not delivery.pending
    finally:
        otel_ai.testing.reset()


# --------------------------------------------------------------------------- recover, replay


def _spool_of_a_dead_process(data_dir: Path, endpoint: str) -> dict[str, int]:
    """What a process killed during an outage left: one request per signal."""
    spool = OwnSpool(data_dir, {"endpoints": {"traces": endpoint, "logs": endpoint}})
    items = {}
    for index, signal in enumerate(("traces", "logs", "metrics")):
        request = REQUEST_TYPES[signal]()
        layout = {"traces": "resource_spans", "logs": "resource_logs", "metrics": "resource_metrics"}[signal]
        resource = getattr(request, layout).add()
        if signal == "traces":
            span = resource.scope_spans.add().spans.add()
            span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, "spooled span"
        elif signal == "logs":
            for _ in range(3):
                resource.scope_logs.add().log_records.add().body.string_value = "spooled record"
        else:
            metric = resource.scope_metrics.add().metrics.add()
            metric.name = "spooled.metric"
            metric.gauge.data_points.add().as_int = 1
        count = {"traces": 1, "logs": 3, "metrics": 1}[signal]
        spool.write(signal, (index + 1,), count, request.SerializeToString())
        items[signal] = count
    spool.close(remove_if_empty=False)  # the process is gone: its lock with it
    return items


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_recover_delivers_what_the_backend_takes_and_deletes_the_rest_with_a_count(
    tmp_path: Path, protocol: str
) -> None:
    data_dir = tmp_path / "data"
    with OTLPReceiver(signals=("traces",)) as receiver:
        endpoint = endpoint_of(receiver, protocol)
        _spool_of_a_dead_process(data_dir, endpoint)
        assert len(spooled(data_dir)) == 3
        result = subprocess.run(
            [*OTEL_AI, "recover", "--timeout", "20"],
            env=environment(
                data_dir, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_EXPORTER_OTLP_PROTOCOL=protocol
            ),
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert [s.name for s in receiver.spans()] == ["spooled span"]
    assert spooled(data_dir) == []
    assert not any((data_dir / "spool").iterdir())
    assert "3 spooled logs deleted" in result.stdout, result.stdout
    assert "1 spooled metrics deleted" in result.stdout, result.stdout
    assert "logs refused for good by" in result.stdout


def test_replay_skips_a_refused_signal_with_a_count_and_leaves_its_files_unmarked(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    written = run_program(data_dir)  # the embedded default's files
    assert written.returncode == 0, written.stderr
    logs_files = sorted(data_dir.glob("logs-*.jsonl"))
    assert logs_files and list(data_dir.glob("traces-*.jsonl"))
    records = sum(
        len(json.loads(line)["resourceLogs"][0]["scopeLogs"][0]["logRecords"])
        for f in logs_files
        for line in f.read_text().splitlines()
        if line.strip()
    )
    with OTLPReceiver(signals=("traces",)) as receiver:
        result = subprocess.run(
            [*OTEL_AI, "replay", str(data_dir), "--endpoint", receiver.http_endpoint, "--timeout", "20"],
            env=environment(data_dir),
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert len([s for s in receiver.spans() if s.name == "ai.node draft"]) == 6
        assert receiver.rejected("logs", "http") == 1  # asked once, then skipped
    assert f"{records} logs not sent: refused for good by" in result.stdout, result.stdout
    assert "HTTP 404" in result.stdout
    assert not list(data_dir.glob("logs-*.jsonl.delivered"))  # kept for a collector that takes them
    assert list(data_dir.glob("traces-*.jsonl.delivered"))


# --------------------------------------------------------------------------- OTEL_*_EXPORTER=none


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_exporter_none_turns_a_signal_off_over_otlp(tmp_path: Path, protocol: str) -> None:
    data_dir = tmp_path / "data"
    with OTLPReceiver() as receiver:
        result = run_program(
            data_dir,
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint_of(receiver, protocol),
            OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
            OTEL_LOGS_EXPORTER="none",
            OTEL_METRICS_EXPORTER="None",
        )
        assert result.returncode == 0, result.stderr
        assert len([s for s in receiver.spans() if s.name == "ai.node draft"]) == 6
        assert receiver.received("logs") == [] and receiver.received("metrics") == []
        assert receiver.rejected() == 0
    assert result.stderr == ""
    assert spooled(data_dir) == [] and not list(data_dir.glob("*.jsonl"))


def test_exporter_none_writes_no_file_for_the_signal(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = run_program(data_dir, OTEL_TRACES_EXPORTER="none")
    assert result.returncode == 0, result.stderr
    assert not list(data_dir.glob("traces-*.jsonl"))
    assert list(data_dir.glob("logs-*.jsonl")) and list(data_dir.glob("metrics-*.jsonl"))


def test_exporter_none_in_otel_ai_run_and_its_children(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    child = tmp_path / "child.py"
    child.write_text(PROGRAM)
    result = subprocess.run(
        [
            *OTEL_AI,
            "run",
            "--no-watch",
            "--no-status",
            "--run-id",
            "quiet-logs",
            "--",
            sys.executable,
            str(child),
        ],
        env=environment(data_dir, OTEL_LOGS_EXPORTER="none"),
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    traces = list(data_dir.glob("traces-*.jsonl"))
    assert len(traces) >= 2  # the wrapper's and the child's
    assert not list(data_dir.glob("logs-*.jsonl"))


# in-process too, the wrapper closes its command's pipes (once each), nothing left to the
# garbage collector (an unraisable warning fails the test)
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_turned_off_by_argument_in_the_wrapper_is_off_in_its_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otel_ai.runner.supervisor import RunOptions, Supervisor

    data_dir = Path(os.environ["OTEL_AI_DATA_DIR"])
    child = tmp_path / "child.py"
    child.write_text(PROGRAM)
    monkeypatch.setenv("OTEL_AI_SHUTDOWN_TIMEOUT", "5")
    options = RunOptions(
        command=[sys.executable, str(child)], run_id="off-by-argument", no_watch=True, status=False
    )
    priority = os.getpriority(os.PRIO_PROCESS, 0)
    assert Supervisor(options, {"traces_exporter": "none"}).run() == 0
    assert os.getpriority(os.PRIO_PROCESS, 0) == priority, "only `otel-ai run` lowers its own priority"
    assert not list(data_dir.glob("traces-*.jsonl"))
    assert len(list(data_dir.glob("logs-*.jsonl"))) >= 2  # the wrapper's and the child's


def test_an_unknown_exporter_is_a_clear_error(tmp_path: Path) -> None:
    result = run_program(tmp_path / "data", OTEL_LOGS_EXPORTER="zipkin")
    assert result.returncode != 0
    assert "OTEL_LOGS_EXPORTER='zipkin' is not valid: expected one of otlp, console, none" in result.stderr


def test_console_exporter_prints_spans_on_stdout(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = run_program(data_dir, OTEL_TRACES_EXPORTER="console")
    assert result.returncode == 0, result.stderr
    assert '"name": "ai.node draft"' in result.stdout
    assert not list(data_dir.glob("traces-*.jsonl")) and list(data_dir.glob("logs-*.jsonl"))


# --------------------------------------------------------------------------- doctor


def doctor(data_dir: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OTEL_AI, "doctor"],
        check=False,
        env=environment(data_dir, **variables),
        capture_output=True,
        text=True,
        timeout=120,
    )


def check_line(output: str, signal: str) -> str:
    found = [line for line in output.splitlines() if f"collector {signal}:" in line]
    assert len(found) == 1, output
    return found[0]


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_doctor_sends_a_real_request_per_signal_and_fails_on_a_refused_one(
    tmp_path: Path, protocol: str
) -> None:
    with OTLPReceiver(signals=("traces",)) as receiver:
        result = doctor(
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint_of(receiver, protocol),
            OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
            OTEL_EXPORTER_OTLP_HEADERS="x-mlflow-experiment-id=7",
        )
        # the empty request really arrived, with the configured headers
        [probe] = receiver.received("traces")
        assert probe.headers["x-mlflow-experiment-id"] == "7"
    assert result.returncode == 1, result.stdout
    traces = check_line(result.stdout, "traces")
    assert traces.startswith("  [ok  ]") and (" HTTP 200 OK in " in traces or " gRPC OK in " in traces), (
        traces
    )
    for signal in ("logs", "metrics"):
        line = check_line(result.stdout, signal)
        assert line.startswith("  [FAIL]") and "REFUSED for good" in line, line
        assert ("HTTP 404 Not Found" if protocol != "grpc" else "gRPC UNIMPLEMENTED") in line
        assert " ms " in line
    assert "7" not in result.stdout.split("headers", 1)[1].split("\n", 1)[0]  # the header value stays hidden


def test_doctor_shows_a_422_with_its_body_and_is_happy_with_a_full_collector(tmp_path: Path) -> None:
    with OTLPReceiver() as receiver:
        receiver.answers["traces"] = (422, b'{"message": "Missing header x-mlflow-experiment-id"}')
        refused = doctor(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.http_endpoint)
        receiver.answers.clear()
        fine = doctor(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.http_endpoint)
    assert refused.returncode == 1
    line = check_line(refused.stdout, "traces")
    assert "HTTP 422" in line and "Missing header x-mlflow-experiment-id" in line and "[FAIL]" in line
    assert fine.returncode == 0, fine.stdout
    for signal in ("traces", "logs", "metrics"):
        assert "HTTP 200 OK" in check_line(fine.stdout, signal)


def test_doctor_skips_a_signal_turned_off_and_prints_effective_defaults(tmp_path: Path) -> None:
    with OTLPReceiver(signals=("traces",)) as receiver:
        result = doctor(
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.http_endpoint,
            OTEL_LOGS_EXPORTER="none",
            OTEL_METRICS_EXPORTER="none",
        )
        endpoint = receiver.http_endpoint
    assert result.returncode == 0, result.stdout
    assert "collector logs" not in result.stdout
    assert "logs     -> off (OTEL_LOGS_EXPORTER=none)" in result.stdout
    settings = {
        line.split()[0]: line
        for line in result.stdout.splitlines()
        if line.startswith("  ") and len(line.split()) > 1
    }
    assert "ai-scientist" in settings["service_name"]
    assert f"{endpoint}/v1/traces" in settings["traces_endpoint"]
    assert "http/protobuf" in settings["logs_protocol"]
    assert "None" not in result.stdout.split("checks:")[0]


def test_doctor_reports_an_unreachable_collector_per_signal(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = doctor(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}")
    assert result.returncode == 1
    for signal in ("traces", "logs", "metrics"):
        line = check_line(result.stdout, signal)
        assert "[FAIL]" in line and "UNREACHABLE" in line and "ConnectionRefusedError" in line, line
