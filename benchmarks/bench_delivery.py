"""Delivery under failure: what an emit costs the experiment when the collector is up,
down or hanging, how many events per second go through with none lost, and what a
collector outage does to stock OpenTelemetry and to otel_ai.

Variants, one process (the collector stand-ins run in child processes, like a real
collector, so their work does not take this process's GIL):

emit latency
    ``otel_ai.EventEmitter.stage_progress`` over OTLP/HTTP (``--protocol grpc`` for gRPC)
    to a collector that is *up* (an OTLP receiver answering 200), *down* (nothing listens
    on the port) or *hanging* (accepts connections, never answers). Against the seed pod
    worker's synchronous emitter in the same run: one CloudEvents POST per event with
    ``requests``' 10 s timeout (here ``urllib.request``, also a new connection per
    event), to a control plane that is up, down or hanging. Only the calling thread is
    timed (``perf_counter_ns`` around each call).
throughput
    ``--events`` progress events as fast as one thread emits them with the collector up;
    rate = events / (time until the collector has every one of them, checked by
    ``ai.event.seq``). Then the same with the collector answering 503 while they are
    emitted (everything goes to the spool) and 200 afterwards: rate of the spool's drain.
outage
    ``--outage`` seconds of 503 from the start: a stock SDK pipeline
    (``BatchLogRecordProcessor`` + ``OTLPLogExporter``) and otel_ai each emit
    ``--outage-records`` log records spread over the first seconds; how many arrive.

    python benchmarks/bench_delivery.py                 # about 2 minutes
    python benchmarks/bench_delivery.py --quick         # a smaller run, for a smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RUN_ID = "bench-delivery"
STAGE = "Stage_1"
SEED_TIMEOUT_S = 10.0  # the seed's requests.post(..., timeout=10)


# --- collector stand-ins ---------------------------------------------------------------------
def serve_otlp() -> int:
    """Child process: an OTLP receiver (gRPC + HTTP) driven by commands on stdin."""
    sys.path.insert(0, str(ROOT / "tests"))
    from otlp_receiver import (
        OTLPReceiver,  # the tests' receiver: real OTLP, decoded with opentelemetry-proto
    )

    from otel_ai import semconv

    receiver = OTLPReceiver(hang_timeout=3600).start()
    grpc_port = receiver.grpc_endpoint.rsplit(":", 1)[1]
    http_port = receiver.http_endpoint.rsplit(":", 1)[1]
    print(grpc_port, http_port, flush=True)
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "mode":
            receiver.mode = arg  # type: ignore[assignment]
            print("ok", flush=True)
        elif command == "clear":
            receiver.clear()
            print("ok", flush=True)
        elif command == "count":
            records = seqs = 0
            seen: set[int] = set()
            for message in receiver.requests("logs"):
                for resource in message.resource_logs:
                    for scope in resource.scope_logs:
                        for record in scope.log_records:
                            records += 1
                            for attribute in record.attributes:
                                if attribute.key == semconv.EVENT_SEQ:
                                    seen.add(attribute.value.int_value)
                                    seqs += 1
            print(
                json.dumps(
                    {"records": records, "seqs": seqs, "distinct": len(seen), "max": max(seen, default=0)}
                ),
                flush=True,
            )
        elif command == "quit":
            break
    receiver.stop()
    return 0


class Collector:
    """The child-process OTLP receiver."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve-otlp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        grpc_port, http_port = self.process.stdout.readline().split()
        self.grpc = f"http://127.0.0.1:{grpc_port}"
        self.http = f"http://127.0.0.1:{http_port}"

    def ask(self, command: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def count(self) -> dict[str, int]:
        return json.loads(self.ask("count"))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask("quit")
        self.process.wait(10)


class BlackHole:
    """Accepts connections and never answers (a hanging collector or control plane)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(512)
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(sock)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for sock in self.held:
            sock.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_ok() -> int:
    """Child process: the seed's control plane, 200 to every POST."""
    import http.server

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b'{"accepted":true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    return 0


# --- the emitters ------------------------------------------------------------------------------
def values(i: int, n: int) -> tuple[Any, ...]:
    return (i / n, i, n, i, i // 7, i + i // 7, f"{0.5 + i / (2 * n):.4f}", float(n - i))


class SeedEmitter:
    """The seed pod worker's CloudEventEmitter: one synchronous POST per event."""

    def __init__(self, url: str) -> None:
        self.url = url

    def stage_progress(self, run_id: str, stage: str, *v: Any) -> bool:
        envelope = {
            "specversion": "1.0",
            "type": "ai.run.stage_progress",
            "source": "pod/bench",
            "id": str(uuid.uuid4()),
            "time": datetime.now(UTC).isoformat(),
            "datacontenttype": "application/json",
            "data": {"run_id": run_id, "stage": stage, "progress": v[0], "iteration": v[1]},
        }
        request = urllib.request.Request(
            self.url,
            data=json.dumps(envelope).encode(),
            headers={"Content-Type": "application/cloudevents+json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=SEED_TIMEOUT_S) as response:
                response.read()
            return True
        except OSError:
            return False


@contextlib.contextmanager
def otel_ai_pipeline(endpoint: str, protocol: str, directory: Path) -> Iterator[Any]:
    import otel_ai
    import otel_ai.testing

    os.environ["OTEL_EXPORTER_OTLP_TIMEOUT"] = "10"
    otel_ai.configure(
        endpoint=endpoint, protocol=protocol, data_dir=str(directory), service_name="bench-delivery"
    )
    emitter = otel_ai.EventEmitter("http://unused.invalid", "bench-pod")
    emitter.run_started(RUN_ID, "bench-pod", "none", "local")
    emitter.stage_started(RUN_ID, STAGE, "benchmark stage")
    try:
        yield emitter
    finally:
        emitter.run_completed(RUN_ID)
        otel_ai.testing.reset()


def timed(emit: Callable[..., Any], n: int, pause_s: float = 0.0) -> list[int]:
    out = []
    gc.collect()
    for i in range(n):
        t0 = time.perf_counter_ns()
        emit(RUN_ID, STAGE, *values(i, n))
        out.append(time.perf_counter_ns() - t0)
        if pause_s:
            time.sleep(pause_s)
    return out


def stats(ns: list[int]) -> dict[str, float]:
    ordered = sorted(ns)
    return {
        "n": len(ordered),
        "p50_us": statistics.median(ordered) / 1000,
        "p99_us": ordered[min(int(len(ordered) * 0.99), len(ordered) - 1)] / 1000,
        "max_us": ordered[-1] / 1000,
        "mean_us": statistics.fmean(ordered) / 1000,
    }


# --- the measurements --------------------------------------------------------------------------
def latency(args: argparse.Namespace, collector: Collector, work: Path) -> list[dict[str, Any]]:
    rows = []
    hole = BlackHole()
    seed_server = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve-ok"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert seed_server.stdout is not None
        seed_port = int(seed_server.stdout.readline())
        up = collector.grpc if args.protocol == "grpc" else collector.http
        targets = {
            "up": up,
            "down": f"http://127.0.0.1:{closed_port()}",
            "hanging": f"http://127.0.0.1:{hole.port}",
        }
        for state, endpoint in targets.items():
            with otel_ai_pipeline(endpoint, args.protocol, work / f"lat-{state}") as emitter:
                timed(emitter.stage_progress, 500)  # warm-up
                # events at the pace of a busy pod worker (a pause between them), so the
                # export threads do their work between events as they would in a run
                result = stats(timed(emitter.stage_progress, args.latency_events, pause_s=args.pause))
            rows.append({"variant": "otel_ai", "collector": state, **result})
            print(f"  otel_ai  {state:8s} {fmt(result)}", flush=True)
        seed_targets = {
            "up": f"http://127.0.0.1:{seed_port}/api/events",
            "down": targets["down"] + "/api/events",
            "hanging": targets["hanging"] + "/api/events",
        }
        for state, url in seed_targets.items():
            n = args.seed_hang_events if state == "hanging" else args.seed_events
            result = stats(timed(SeedEmitter(url).stage_progress, n))
            rows.append({"variant": "seed", "collector": state, **result})
            print(f"  seed     {state:8s} {fmt(result)}", flush=True)
    finally:
        hole.close()
        seed_server.terminate()
        seed_server.wait(5)
    return rows


def fmt(result: dict[str, float]) -> str:
    return f"n={result['n']:<6} p50 {result['p50_us']:9.1f} us  p99 {result['p99_us']:11.1f} us  max {result['max_us']:12.1f} us"


def throughput(args: argparse.Namespace, collector: Collector, work: Path) -> list[dict[str, Any]]:
    rows = []
    import otel_ai

    endpoint = collector.grpc if args.protocol == "grpc" else collector.http
    for scenario in ("up", "503 then up"):
        collector.ask("clear")
        collector.ask("mode unavailable" if scenario != "up" else "mode ok")
        with otel_ai_pipeline(endpoint, args.protocol, work / f"tp-{scenario.replace(' ', '-')}") as emitter:
            n = args.events
            started = time.perf_counter()
            for i in range(n):
                emitter.stage_progress(RUN_ID, STAGE, *values(i, n))
            emitted = time.perf_counter() - started
            if scenario != "up":
                otel_ai.force_flush(5.0)  # the collector refuses: everything to the spool
                spooled = sum(p.stat().st_size for p in (work / "tp-503-then-up" / "spool").rglob("*.pb"))
                collector.ask("mode ok")
                started = time.perf_counter()
            expected = n + 2  # run_started and stage_started, then the events
            deadline = time.monotonic() + 300
            while collector.count()["distinct"] < expected and time.monotonic() < deadline:
                time.sleep(0.2)
            delivered_s = time.perf_counter() - started
            count = collector.count()
        lost = expected - count["distinct"]
        row = {
            "scenario": scenario,
            "events": n,
            "emit_s": round(emitted, 2),
            "emit_per_s": round(n / emitted),
            "delivered_s": round(delivered_s, 2),
            "delivered_per_s": round(n / delivered_s),
            "lost": lost,
            "doubled": count["seqs"] - count["distinct"],
        }
        if scenario != "up":
            row["spooled_mb"] = round(spooled / 1e6, 1)
        rows.append(row)
        print(f"  {scenario:12s} {row}", flush=True)
    collector.ask("mode ok")
    return rows


def outage(args: argparse.Namespace, collector: Collector, work: Path) -> list[dict[str, Any]]:
    rows = []
    n = args.outage_records
    # stock OpenTelemetry: the SDK's batch processor and OTLP/HTTP log exporter
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    from otel_ai import semconv

    for variant in ("stock SDK", "otel_ai"):
        collector.ask("clear")
        collector.ask("mode unavailable")
        started = time.monotonic()
        if variant == "stock SDK":
            provider = LoggerProvider(
                resource=Resource.create({"service.name": "bench-stock"}), shutdown_on_exit=False
            )
            provider.add_log_record_processor(
                BatchLogRecordProcessor(
                    OTLPLogExporter(endpoint=collector.http + "/v1/logs", timeout=10), max_queue_size=65536
                )
            )
            logger = provider.get_logger("bench")
            for i in range(n):
                logger.emit(body=f"event {i}", attributes={semconv.EVENT_SEQ: i + 1})
                time.sleep(args.outage_spread / n)
            time.sleep(max(args.outage - (time.monotonic() - started), 0))
            collector.ask("mode ok")
            provider.force_flush(30_000)
            time.sleep(1.0)
            provider.shutdown()
            expected = n
        else:
            with otel_ai_pipeline(collector.http, "http/protobuf", work / "outage") as emitter:
                for i in range(n - 2):
                    emitter.stage_progress(RUN_ID, STAGE, *values(i, n))
                    time.sleep(args.outage_spread / n)
                time.sleep(max(args.outage - (time.monotonic() - started), 0))
                collector.ask("mode ok")
                deadline = time.monotonic() + 60
                while collector.count()["distinct"] < n and time.monotonic() < deadline:
                    time.sleep(0.2)
            expected = n + 2  # and the run's end: ai.run.completed, ai.run.stage_completed
        count = collector.count()
        row = {
            "variant": variant,
            "outage_s": args.outage,
            "emitted": expected,
            "arrived": count["distinct"],
            "lost": expected - count["distinct"],
            "doubled": count["seqs"] - count["distinct"],
        }
        rows.append(row)
        print(f"  {variant:10s} {row}", flush=True)
    collector.ask("mode ok")
    return rows


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--protocol", choices=("http/protobuf", "grpc"), default="http/protobuf")
    parser.add_argument("--latency-events", type=int, default=5000)
    parser.add_argument(
        "--pause", type=float, default=0.0002, help="seconds between timed events (default 0.2 ms)"
    )
    parser.add_argument("--seed-events", type=int, default=1000)
    parser.add_argument("--seed-hang-events", type=int, default=3, help="each takes the seed's 10 s timeout")
    parser.add_argument("--events", type=int, default=100_000, help="events of the throughput runs")
    parser.add_argument(
        "--outage", type=float, default=20.0, help="seconds the collector answers 503 in the outage run"
    )
    parser.add_argument("--outage-records", type=int, default=2000)
    parser.add_argument(
        "--outage-spread",
        type=float,
        default=5.0,
        help="seconds over which the outage run's records are emitted",
    )
    parser.add_argument("--only", choices=("latency", "throughput", "outage"), action="append")
    parser.add_argument("--quick", action="store_true", help="small numbers, for a smoke test")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--serve-otlp", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-ok", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_otlp:
        return serve_otlp()
    if args.serve_ok:
        return serve_ok()
    if args.quick:
        args.latency_events, args.seed_events, args.seed_hang_events = 1000, 200, 1
        args.events, args.outage, args.outage_records, args.outage_spread = 10_000, 12.0, 500, 2.0
    only = set(args.only or ("latency", "throughput", "outage"))
    print(f"bench_delivery: {machine()}, protocol {args.protocol}", flush=True)
    results: dict[str, Any] = {"machine": machine(), "protocol": args.protocol}
    collector = Collector()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            if "latency" in only:
                print("emit latency (calling thread):", flush=True)
                results["latency"] = latency(args, collector, work)
            if "throughput" in only:
                print("throughput with no loss:", flush=True)
                results["throughput"] = throughput(args, collector, work)
            if "outage" in only:
                print(f"a {args.outage:.0f} s outage (503) from the start:", flush=True)
                results["outage"] = outage(args, collector, work)
    finally:
        collector.close()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
