"""Cost of one lifecycle event on the calling thread: otel_ai vs the raw SDK vs the seed.

Three ways to emit the same ``ai.run.stage_progress`` event, measured in one process:

raw SDK
    What a hand-written OpenTelemetry integration would do: a ``TracerProvider`` and a
    ``LoggerProvider`` with ``BatchSpanProcessor`` / ``BatchLogRecordProcessor``; per
    event ``span.add_event(name, attrs)`` on the open stage span and ``logger.emit(...)``
    of a log record with the same attributes, correlated to that span.
otel_ai
    ``otel_ai.EventEmitter.stage_progress(...)``: the seed's method, which becomes a span
    event on the stage span (kept first/latest) and a log-based event, and sets the
    progress gauges.
seed
    The seed pod worker's way: one synchronous HTTP POST of a CloudEvents JSON envelope
    per event to the control plane, here a stdlib ``ThreadingHTTPServer`` on 127.0.0.1 in
    a child process answering 200. The seed used ``requests.post``; this uses
    ``urllib.request`` (also a new connection per event, no dependency).

``--event artifact_detected`` times the pod worker's ``artifact_detected(run_id, path,
type, size)`` instead (also one span event and one log record per call, on the stage span
here since no node is open).

otel_ai hands each event to a thread of its own (:mod:`otel_ai.export.handoff`): the
caller's thread only queues it. Back to back (the default) that thread competes with the
caller for the GIL during the timed block; ``--pace-us N`` leaves N microseconds of
untimed pause after each call (the caller's own work between events, e.g. waiting for an
LLM), as the pod worker's calls come. ``CPU us/event`` is the process's CPU time (every
thread, the export included) over the block and its flush, per event: what an event costs
in all, wherever it is paid (the seed's server runs in another process, not counted).

What is timed is the calling thread only: ``time.perf_counter_ns()`` around each call.
Export happens on the batch processors' worker threads, which still share the GIL with
the caller. With ``--exporter noop`` (default) both OTel pipelines end in exporters
that discard the batch, so neither pays for encoding or I/O; otel_ai keeps its own
processors and its redacting wrappers (its real worker-thread work). With
``--exporter file`` both write OTLP/JSON lines to a temporary directory: the raw SDK
through the maintained ``opentelemetry-exporter-otlp-json-file`` exporters, otel_ai
through its embedded default (the same exporters behind redaction).

Each variant runs ``--rounds`` blocks of ``--events / --rounds`` events, in a rotating
order, after ``--warmup`` untimed events; after each block its pipeline is flushed
(untimed) so its export backlog does not land on the next variant. Statistics are over
all timed events. The raw SDK does not set otel_ai's two progress gauges; otel_ai's
number includes them (they are part of what its event does).

    python benchmarks/bench_emit.py --events 20000
    python benchmarks/bench_emit.py --events 20000 --event artifact_detected --pace-us 200
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import http.server
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

EVENT = "ai.run.stage_progress"
ARTIFACT_EVENT = "ai.artifact.detected"
EVENT_KIND = "stage_progress"  # or "artifact_detected" (--event)
RUN_ID = "bench-run"
STAGE = "2_baseline_tuning"
MAX_ITERATIONS = 100
QUEUE_SIZE = 65536  # otel_ai's default batch queue; the raw SDK gets the same


# --- exporters that discard ------------------------------------------------------------------
class DiscardSpanExporter(SpanExporter):
    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class DiscardLogExporter(LogRecordExporter):
    def __init__(self) -> None:
        self.exported = 0

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.exported += len(batch)
        return LogRecordExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def shutdown(self) -> None:
        pass


def event_values(i: int) -> dict[str, Any]:
    """The seed's stage_progress arguments for the i-th event."""
    iteration = i % MAX_ITERATIONS + 1
    good = iteration * 2 // 3
    return {
        "progress": iteration / MAX_ITERATIONS,
        "iteration": iteration,
        "max_iterations": MAX_ITERATIONS,
        "good_nodes": good,
        "buggy_nodes": iteration - good,
        "total_nodes": iteration,
        "best_metric": 0.5 + iteration / 1000,
        "eta_s": float(MAX_ITERATIONS - iteration),
    }


# --- (a) the raw SDK ---------------------------------------------------------------------------
class RawSdk:
    name = "raw SDK"

    def __init__(self, exporter: str, directory: Path) -> None:
        if exporter == "file":
            from opentelemetry.exporter.otlp.json.file import FileSpanExporter
            from opentelemetry.exporter.otlp.json.file._log_exporter import (
                FileLogExporter,
            )

            span_exporter: SpanExporter = FileSpanExporter(directory / "raw-traces.jsonl")
            log_exporter: LogRecordExporter = FileLogExporter(directory / "raw-logs.jsonl")
        else:
            span_exporter, log_exporter = DiscardSpanExporter(), DiscardLogExporter()
        resource = Resource.create({"service.name": "bench-raw-sdk"})
        self.tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter, max_queue_size=QUEUE_SIZE))
        self.logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        self.logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(log_exporter, max_queue_size=QUEUE_SIZE)
        )
        self.logger = self.logger_provider.get_logger("bench")
        tracer = self.tracer_provider.get_tracer("bench")
        self.run_span = tracer.start_span("ai.run", attributes={"ai.run.id": RUN_ID})
        self.stage_span = tracer.start_span(
            f"ai.stage {STAGE}",
            context=trace_api.set_span_in_context(self.run_span),
            attributes={"ai.run.id": RUN_ID, "ai.stage.name": STAGE},
        )
        self.context = trace_api.set_span_in_context(self.stage_span)
        self.seq = 0

    def emit(self, v: dict[str, Any]) -> None:
        if EVENT_KIND == "artifact_detected":
            self.emit_artifact(v)
            return
        attrs = {
            "ai.stage.name": STAGE,
            "ai.stage.progress": v["progress"],
            "ai.stage.iteration": v["iteration"],
            "ai.stage.max_iterations": v["max_iterations"],
            "ai.stage.nodes.good": v["good_nodes"],
            "ai.stage.nodes.buggy": v["buggy_nodes"],
            "ai.stage.nodes.total": v["total_nodes"],
            "ai.stage.best_metric": str(v["best_metric"]),
            "ai.stage.eta_s": v["eta_s"],
        }
        self.stage_span.add_event(EVENT, attrs)
        self.seq += 1
        self.logger.emit(
            timestamp=time.time_ns(),
            context=self.context,
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body=f"{EVENT} stage={STAGE} progress={v['progress']:.4g}",
            attributes={"ai.run.id": RUN_ID, "ai.event.seq": self.seq, "event.name": EVENT, **attrs},
            event_name=EVENT,
        )

    def emit_artifact(self, v: dict[str, Any]) -> None:
        attrs = {
            "ai.artifact.path": f"figures/loss_{v['iteration']}.png",
            "ai.artifact.type": "figure",
            "ai.artifact.size_bytes": 1000 + v["iteration"],
        }
        self.stage_span.add_event(ARTIFACT_EVENT, attrs)
        self.seq += 1
        self.logger.emit(
            timestamp=time.time_ns(),
            context=self.context,
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body=f"{ARTIFACT_EVENT} path={attrs['ai.artifact.path']}",
            attributes={
                "ai.run.id": RUN_ID,
                "ai.event.seq": self.seq,
                "event.name": ARTIFACT_EVENT,
                "ai.stage.name": STAGE,
                **attrs,
            },
            event_name=ARTIFACT_EVENT,
        )

    def settle(self) -> None:
        self.tracer_provider.force_flush()
        self.logger_provider.force_flush()

    def close(self) -> None:
        self.stage_span.end()
        self.run_span.end()
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()


# --- (b) otel_ai -------------------------------------------------------------------------------
class OtelAi:
    name = "otel_ai"

    def __init__(self, exporter: str, directory: Path) -> None:
        import otel_ai
        from otel_ai.export import providers

        if exporter == "noop":
            # Benchmark-only seam: keep otel_ai's providers, processors and redacting
            # wrappers, but let the innermost span and log exporters discard.
            build = providers._exporters

            def discarding(settings: Any) -> Any:
                _span, _log, metric = build(settings)
                return DiscardSpanExporter(), DiscardLogExporter(), metric

            providers._exporters = discarding  # type: ignore[assignment]
        otel_ai.configure(data_dir=str(directory / "otel_ai"), service_name="bench-otel-ai")
        self.otel_ai = otel_ai
        self.emitter = otel_ai.EventEmitter("http://unused.invalid", "bench-pod")
        self.emitter.run_started(RUN_ID, "bench-pod", "none", "local")
        self.emitter.stage_started(RUN_ID, STAGE, "benchmark stage")

    def emit(self, v: dict[str, Any]) -> None:
        if EVENT_KIND == "artifact_detected":
            self.emitter.artifact_detected(
                RUN_ID, f"figures/loss_{v['iteration']}.png", "figure", 1000 + v["iteration"]
            )
            return
        self.emitter.stage_progress(
            RUN_ID,
            STAGE,
            v["progress"],
            v["iteration"],
            v["max_iterations"],
            v["good_nodes"],
            v["buggy_nodes"],
            v["total_nodes"],
            v["best_metric"],
            v["eta_s"],
        )

    def settle(self) -> None:
        self.otel_ai.force_flush(10)

    def close(self) -> None:
        self.emitter.stage_completed(RUN_ID, STAGE)
        self.emitter.run_completed(RUN_ID)
        self.otel_ai.shutdown(timeout=10)


# --- (c) the seed: one HTTP POST per event -----------------------------------------------------
class _Ok(http.server.BaseHTTPRequestHandler):
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


def serve() -> int:
    """The control plane stand-in (run in a child process): 200 to every POST."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    return 0


class Seed:
    name = "seed (HTTP POST)"

    def __init__(self, exporter: str, directory: Path) -> None:
        # A separate process, like the real control plane: its work does not take this
        # process's GIL, so only the round trip lands on the caller.
        self.server = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve"], stdout=subprocess.PIPE, text=True
        )
        assert self.server.stdout is not None
        port = int(self.server.stdout.readline())
        self.url = f"http://127.0.0.1:{port}/api/events"
        self.source = "pod/bench-pod"
        _wait_for_port(port)

    def emit(self, v: dict[str, Any]) -> bool:
        data: dict[str, Any] = {"run_id": RUN_ID, "stage": STAGE, **v}
        if EVENT_KIND == "artifact_detected":
            data = {"run_id": RUN_ID, "path": f"figures/loss_{v['iteration']}.png", "type": "figure"}
        envelope = {
            "specversion": "1.0",
            "type": EVENT if EVENT_KIND == "stage_progress" else ARTIFACT_EVENT,
            "source": self.source,
            "id": str(uuid.uuid4()),
            "time": datetime.now(UTC).isoformat(),
            "datacontenttype": "application/json",
            "data": data,
        }
        request = urllib.request.Request(
            self.url,
            data=json.dumps(envelope).encode(),
            headers={"Content-Type": "application/cloudevents+json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()
            return True
        except OSError:
            return False

    def settle(self) -> None:
        pass

    def close(self) -> None:
        self.server.terminate()
        self.server.wait(5)


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise


# --- measurement -------------------------------------------------------------------------------
@dataclass
class Stats:
    name: str
    samples_ns: list[int]

    @property
    def mean_us(self) -> float:
        return statistics.fmean(self.samples_ns) / 1000

    def percentile_us(self, q: float) -> float:
        ordered = sorted(self.samples_ns)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def timed_block(
    emit: Callable[[dict[str, Any]], Any], values: list[dict[str, Any]], out: list[int], pace_s: float = 0.0
) -> None:
    clock = time.perf_counter_ns
    sleep = time.sleep
    for v in values:
        start = clock()
        emit(v)
        out.append(clock() - start)
        if pace_s:
            sleep(pace_s)  # untimed: the caller's own work between events (an LLM call's wait)


def timer_overhead_ns(n: int = 20000) -> float:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(n):
        start = clock()
        samples.append(clock() - start)
    return statistics.median(samples)


@contextlib.contextmanager
def variants(exporter: str, directory: Path, include_seed: bool) -> Iterator[list[Any]]:
    made: list[Any] = []
    try:
        made.append(RawSdk(exporter, directory))
        made.append(OtelAi(exporter, directory))
        if include_seed:
            made.append(Seed(exporter, directory))
        yield made
    finally:
        for variant in made:
            variant.close()


def machine() -> str:
    return f"{os.cpu_count()}-core {platform.machine()}, {platform.python_implementation()} {platform.python_version()}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Per-event cost: otel_ai EventEmitter vs raw OTel SDK vs HTTP POST."
    )
    parser.add_argument(
        "--events", type=int, default=20000, help="timed events per OTel variant (default 20000)"
    )
    parser.add_argument(
        "--seed-events", type=int, default=3000, help="timed events for the HTTP POST variant (default 3000)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved blocks per variant (default 5)")
    parser.add_argument(
        "--warmup", type=int, default=1000, help="untimed events per variant first (default 1000)"
    )
    parser.add_argument(
        "--exporter", choices=("noop", "file"), default="noop", help="where the OTel pipelines export"
    )
    parser.add_argument("--no-seed", action="store_true", help="skip the HTTP POST variant")
    parser.add_argument(
        "--event",
        choices=("stage_progress", "artifact_detected"),
        default="stage_progress",
        help="which seed call: each is one span event + one log record (default stage_progress)",
    )
    parser.add_argument(
        "--pace-us",
        type=float,
        default=0.0,
        help="untimed pause after each call, the caller's own work between events "
        "(default 0: back to back, the handoff thread competes with the caller for the GIL)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve()

    global EVENT_KIND
    EVENT_KIND = args.event
    rounds = max(1, args.rounds)
    with (
        tempfile.TemporaryDirectory(prefix="bench-emit-") as tmp,
        variants(args.exporter, Path(tmp), not args.no_seed) as made,
    ):
        counts = {v.name: (args.seed_events if isinstance(v, Seed) else args.events) for v in made}
        samples: dict[str, list[int]] = {v.name: [] for v in made}
        cpu_s: dict[str, float] = {v.name: 0.0 for v in made}
        for variant in made:
            timed_block(
                variant.emit, [event_values(i) for i in range(min(args.warmup, counts[variant.name]))], []
            )
            variant.settle()
        for r in range(rounds):
            order = made[r % len(made) :] + made[: r % len(made)]
            for variant in order:
                per_round = counts[variant.name] // rounds
                values = [event_values(r * per_round + i) for i in range(per_round)]
                gc.collect()
                cpu = time.process_time()
                timed_block(variant.emit, values, samples[variant.name], args.pace_us / 1e6)
                # untimed: export this variant's backlog so it does not slow the next one
                variant.settle()
                cpu_s[variant.name] += time.process_time() - cpu
        results = {name: Stats(name, s) for name, s in samples.items()}

    overhead = timer_overhead_ns()
    print(
        f"# bench_emit: {machine()}, load {os.getloadavg()[0]:.1f}, event={args.event}, "
        f"exporter={args.exporter}, rounds={rounds}, pace={args.pace_us:g} us"
    )
    print(f"# timer overhead ~{overhead:.0f} ns per sample (included in every number below)")
    print(f"{'variant':<18} {'events':>7} {'mean us':>9} {'p50 us':>9} {'p99 us':>9} {'CPU us/event':>13}")
    for stats in results.values():
        print(
            f"{stats.name:<18} {len(stats.samples_ns):>7} {stats.mean_us:>9.2f} "
            f"{stats.percentile_us(0.50):>9.2f} {stats.percentile_us(0.99):>9.2f} "
            f"{cpu_s[stats.name] / len(stats.samples_ns) * 1e6:>13.2f}"
        )
    raw = results[RawSdk.name]
    for stats in results.values():
        if stats is raw:
            continue
        print(
            f"{stats.name} / raw SDK: mean {stats.mean_us / raw.mean_us:.2f}x, "
            f"p50 {stats.percentile_us(0.5) / raw.percentile_us(0.5):.2f}x, "
            f"p99 {stats.percentile_us(0.99) / raw.percentile_us(0.99):.2f}x"
        )
    ours = results[OtelAi.name]
    met = ours.mean_us <= raw.mean_us and ours.percentile_us(0.99) <= raw.percentile_us(0.99)
    print(f"otel_ai target <= 1.0x raw SDK (mean and p99): {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
