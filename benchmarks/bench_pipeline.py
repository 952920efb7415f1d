"""The real pipeline's capacity and latency: otel_ai -> one agent (otelcol-ai, agent.yaml +
agent-direct.yaml) -> Jaeger v2, side by side with otel_ai straight to the same backends.

throughput
    A child process configures otel_ai towards the agent and emits ``--spans`` spans
    (one ``bench.span`` each, under a run) as fast as one thread can, then ``--logs`` log
    records (``EventEmitter.log``). The rate is items / (time from the first emit until
    the agent has exported every one of them: its ``otelcol_exporter_sent_*`` counters).
    Baseline in the same run: the same child towards an OTLP receiver of ours (child
    process) with no collector, rate = items / time until the receiver has them all.
latency
    ``--samples`` times, one span in a trace of its own, then polling Jaeger's
    ``/api/v3/traces/{id}`` every 50 ms until the span is there: event -> visible in
    Jaeger, p50 / p95. Through the agent, and straight from otel_ai to Jaeger's OTLP port
    (the baseline: what the agent's batching and queue add).

Needs the binaries of collector-config/build.sh.

    python benchmarks/bench_pipeline.py              # about 3 minutes
    python benchmarks/bench_pipeline.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from real_pipeline import Binaries, binaries, collector, http_get, jaeger, wait_until  # noqa: E402


def emit_child(endpoint: str, spans: int, logs: int, run_id: str) -> int:
    """Child process: emit, print the wall-clock start of the emits, flush."""
    from opentelemetry import trace

    import otel_ai

    otel_ai.configure(endpoint=endpoint, system_metrics=False)
    tracer = trace.get_tracer("bench")
    emitter = otel_ai.EventEmitter()
    with otel_ai.run(run_id):
        start = time.time()
        for i in range(spans):
            tracer.start_span("bench.span", attributes={"i": i}).end()
        for i in range(logs):
            emitter.log(run_id, f"line {i} of the experiment's output")
        emitted = time.time()
    otel_ai.shutdown()
    print(json.dumps({"start": start, "emitted": emitted}), flush=True)
    return 0


def receiver_child() -> int:
    """Child process: an OTLP receiver that prints its span and log counts on request."""
    from otlp_receiver import OTLPReceiver

    with OTLPReceiver() as receiver:
        print(receiver.http_endpoint, flush=True)
        for _ in sys.stdin:
            spans = sum(
                len(ss.spans)
                for r in receiver.requests("traces")
                for rs in r.resource_spans
                for ss in rs.scope_spans
            )
            logs = sum(
                len(sl.log_records)
                for r in receiver.requests("logs")
                for rl in r.resource_logs
                for sl in rl.scope_logs
            )
            print(json.dumps({"spans": spans, "logs": logs}), flush=True)
    return 0


class Receiver:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--receiver"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.endpoint = self.proc.stdout.readline().strip()

    def counts(self) -> dict[str, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return dict(json.loads(self.proc.stdout.readline()))

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


def emit(endpoint: str, spans: int, logs: int, run_id: str) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, __file__, "--emit", endpoint, str(spans), str(logs), run_id],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def rate(count: int, start: float, end: float) -> float:
    return count / max(end - start, 1e-9)


def throughput(bins: Binaries, work: Path, spans: int, logs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # baseline: otel_ai straight to a receiver
    receiver = Receiver()
    try:
        for kind, n_spans, n_logs in (("spans", spans, 0), ("logs", 0, logs)):
            before = receiver.counts()[kind]
            times = emit(receiver.endpoint, n_spans, n_logs, f"bench-direct-{kind}")
            n = n_spans or n_logs
            wait_until(
                f"{n} {kind} at the receiver",
                lambda k=kind, b=before, n=n: receiver.counts()[k] - b >= n,
                300,
                0.05,
            )
            out[f"direct_{kind}_per_s"] = rate(n, times["start"], time.time())
        # through the agent (its Loki and Prometheus exporters to the same receiver)
        server = jaeger(bins.jaeger, work).start(120)
        agent = collector(
            bins.otelcol,
            "agent",
            ["agent.yaml", "agent-direct.yaml"],
            work,
            {
                "JAEGER_OTLP_ENDPOINT": server.otlp_grpc_endpoint,
                "LOKI_OTLP_ENDPOINT": receiver.endpoint,
                "PROMETHEUS_OTLP_ENDPOINT": receiver.endpoint,
            },
        ).start()
        try:
            for kind, n_spans, n_logs, metric in (
                ("spans", spans, 0, "otelcol_exporter_sent_spans"),
                ("logs", 0, logs, "otelcol_exporter_sent_log_records"),
            ):
                before = agent.metric(metric)
                times = emit(agent.http_endpoint, n_spans, n_logs, f"bench-agent-{kind}")
                n = n_spans or n_logs
                # otel_ai's own run/live spans ride along: wait for at least n
                wait_until(
                    f"{n} {kind} exported by the agent",
                    lambda m=metric, b=before, n=n: agent.metric(m) - b >= n,
                    600,
                    0.05,
                )
                out[f"agent_{kind}_per_s"] = rate(n, times["start"], time.time())
            out["latency_agent"] = latency(agent.http_endpoint, server.url, samples)
            out["latency_direct"] = latency(
                f"http://127.0.0.1:{server.ports['otlp_http']}", server.url, samples
            )
        finally:
            agent.stop()
            server.stop()
    finally:
        receiver.close()
    return out


def latency_child(endpoint: str, jaeger_url: str, samples: int) -> int:
    """Child process: one span per trace, then poll Jaeger until it is there."""
    from opentelemetry import trace

    import otel_ai

    otel_ai.configure(endpoint=endpoint, system_metrics=False)
    tracer = trace.get_tracer("bench")
    seconds = []
    for i in range(samples):
        span = tracer.start_span("bench.latency", attributes={"i": i})
        trace_id = format(span.get_span_context().trace_id, "032x")
        span.end()
        ended = time.monotonic()
        while http_get(f"{jaeger_url}/api/v3/traces/{trace_id}", timeout=5)[0] != 200:
            time.sleep(0.05)
            if time.monotonic() - ended > 60:
                raise SystemExit(f"span {i} not in Jaeger after 60 s")
        seconds.append(time.monotonic() - ended)
        time.sleep(0.2)
    otel_ai.shutdown()
    print(json.dumps(seconds), flush=True)
    return 0


def latency(endpoint: str, jaeger_url: str, samples: int) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, __file__, "--latency", endpoint, jaeger_url, str(samples)],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seconds = sorted(json.loads(done.stdout.strip().splitlines()[-1]))
    return {
        "p50_s": statistics.median(seconds),
        "p95_s": seconds[min(len(seconds) - 1, int(0.95 * len(seconds)))],
        "max_s": seconds[-1],
        "samples": len(seconds),
    }


samples = 20


def main(argv: Sequence[str] | None = None) -> int:
    global samples
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--emit"]:
        return emit_child(argv[1], int(argv[2]), int(argv[3]), argv[4])
    if argv[:1] == ["--receiver"]:
        return receiver_child()
    if argv[:1] == ["--latency"]:
        return latency_child(argv[1], argv[2], int(argv[3]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=50_000)
    parser.add_argument("--logs", type=int, default=50_000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.spans, args.logs, args.samples = 5000, 5000, 5
    samples = args.samples
    found = binaries()
    if isinstance(found, str):
        print(found, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        result = throughput(found, Path(tmp), args.spans, args.logs)
    result.update(
        {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end",
            "spans": args.spans,
            "logs": args.logs,
        }
    )
    print(f"{'':24}{'otel_ai -> agent':>20}{'otel_ai direct':>18}{'ratio':>8}")
    for kind in ("spans", "logs"):
        a, d = result[f"agent_{kind}_per_s"], result[f"direct_{kind}_per_s"]
        print(f"{kind + '/s':24}{a:>20,.0f}{d:>18,.0f}{a / d:>8.2f}")
    for q in ("p50_s", "p95_s"):
        a, d = result["latency_agent"][q], result["latency_direct"][q]
        print(f"{'event -> Jaeger ' + q:24}{a:>20.2f}{d:>18.2f}{a / d:>8.2f}")
    print(result["machine"], result["date"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
