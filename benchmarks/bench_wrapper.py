"""What `otel-ai run` costs: its own CPU while the command is idle, the delay from a
line printed by the command to its log record leaving the wrapper, and what the bootstrap
adds to the start of a Python child that emits nothing (against plain python and
`opentelemetry-instrument python`, measured side by side in the same run).

    python benchmarks/bench_wrapper.py [--idle-seconds 20] [--lines 200] [--starts 15]

Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from otlp_receiver import OTLPReceiver  # noqa: E402

from otel_ai.bootstrap import SITE_DIR  # noqa: E402

OTEL_AI = [sys.executable, "-m", "otel_ai"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACEPARENT"))}
    env.update(extra)
    return env


def wrapper_idle_cpu(seconds: float) -> float:
    """Percent of one core the wrapper itself uses while its command sleeps."""
    with tempfile.TemporaryDirectory() as tmp:
        process = subprocess.Popen(
            [*OTEL_AI, "run", "--no-status", "--", "sleep", str(seconds + 10)],
            env=clean_env(OTEL_AI_DATA_DIR=tmp),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wrapper = psutil.Process(process.pid)
        time.sleep(3)  # start-up is not idle time
        before = wrapper.cpu_times()
        start = time.monotonic()
        time.sleep(seconds)
        after = wrapper.cpu_times()
        elapsed = time.monotonic() - start
        process.terminate()
        process.wait(30)
    used = (after.user - before.user) + (after.system - before.system)
    return 100.0 * used / elapsed


LINE_PRINTER = """
import sys, time
for i in range(int(sys.argv[1])):
    print(f"line {i} printed_at_ns={time.time_ns()}", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def line_latency(lines: int, interval: float) -> list[float]:
    """Seconds from a line printed by the command to its record reaching a receiver."""
    arrivals: dict[int, float] = {}
    with OTLPReceiver() as receiver, tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "printer.py"
        script.write_text(LINE_PRINTER)
        subprocess.run(
            [*OTEL_AI, "run", "--no-status", "--", sys.executable, str(script), str(lines), str(interval)],
            env=clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.http_endpoint, OTEL_AI_DATA_DIR=tmp),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
            timeout=600,
        )
        # the receiver stamps arrivals with time.monotonic(): the same clock for every
        # process of this machine, shifted here to wall-clock time like the printed stamps
        offset = time.time() - time.monotonic()
        for request in receiver.received("logs"):
            arrived = int((request.received_at + offset) * 1e9)
            for resource_logs in request.message.resource_logs:
                for scope_logs in resource_logs.scope_logs:
                    for record in scope_logs.log_records:
                        body = record.body.string_value
                        if body.startswith("line ") and "printed_at_ns=" in body:
                            printed = int(body.rsplit("=", 1)[1])
                            arrivals[int(body.split()[1])] = (arrived - printed) / 1e9
    return [arrivals[i] for i in sorted(arrivals)]


# VmHWM (peak RSS of this address space, in kB): ru_maxrss would carry the parent's peak
# across fork and exec
_REPORT_RSS = "import sys; sys.stdout.write([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"


def child_start(env: dict[str, str], prefix: list[str], starts: int) -> tuple[float, float]:
    """Median wall time (s) and median peak RSS (MB) of a Python child that does nothing
    but report its own peak RSS."""
    times, rss = [], []
    for _ in range(starts):
        start = time.perf_counter()
        out = subprocess.run(
            [*prefix, sys.executable, "-c", _REPORT_RSS], env=env, check=True, capture_output=True, text=True
        )
        times.append(time.perf_counter() - start)
        rss.append(int(out.stdout.strip().splitlines()[-1]) / 1024)
    return statistics.median(times), statistics.median(rss)


def bootstrap_cost(starts: int) -> list[tuple[str, float, float]]:
    rows = []
    variants: list[tuple[str, dict[str, str], list[str]]] = [
        ("plain python", clean_env(), []),
        (
            "otel-ai bootstrap (as under otel-ai run)",
            clean_env(
                PYTHONPATH=str(SITE_DIR),
                OTEL_AI_RUN_ID="bench",
                OTEL_AI_CHANNEL="/nonexistent",
                TRACEPARENT="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            [],
        ),
    ]
    instrument = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
    if instrument:
        variants.append(
            (
                "opentelemetry-instrument python",
                clean_env(
                    OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none"
                ),
                [instrument],
            )
        )
    for name, env, prefix in variants:
        wall, rss = child_start(env, prefix, starts)
        rows.append((name, wall, rss))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--starts", type=int, default=15)
    args = parser.parse_args(argv)
    print(f"# bench_wrapper: {os.cpu_count()}-core {platform.machine()}, Python {platform.python_version()}")

    cpu = wrapper_idle_cpu(args.idle_seconds)
    print(f"wrapper CPU while the command is idle: {cpu:.2f}% of one core (target <= 1%)")

    latency = sorted(line_latency(args.lines, args.interval))
    p50 = latency[len(latency) // 2]
    p95 = latency[int(len(latency) * 0.95) - 1]
    print(
        f"line -> log record at the receiver: {len(latency)} lines, p50 {p50 * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms, max {latency[-1] * 1000:.0f} ms (target p95 < 1 s)"
    )

    rows = bootstrap_cost(args.starts)
    base_wall, base_rss = rows[0][1], rows[0][2]
    print(
        f"{'start of an idle Python child':45s} {'median wall':>12s} {'added':>9s} {'max RSS':>9s} {'added':>8s}"
    )
    for name, wall, rss in rows:
        print(
            f"{name:45s} {wall * 1000:10.1f}ms {(wall - base_wall) * 1000:7.1f}ms {rss:7.1f}MB {rss - base_rss:6.1f}MB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
