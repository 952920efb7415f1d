"""The waits otel_ai puts on the experiment's path, one by one, in isolation.

A whole search (``bench_search.py``) on a busy machine varies by more than what is
measured here; these are the pieces, each timed on the experiment's side:

pool task
    ``otel_ai.pools.call_in_context`` (what a ``ProcessPoolExecutor`` task runs
    under ``otel-ai run``) around a task that creates a node, logs a line and completes
    the node: the task's own emit cost plus whatever otel_ai does before the task's
    result goes back to the pool. Median and p90 of ``--tasks`` tasks, 10 ms apart.
    With ``--otlp-latency S`` the same over OTLP/HTTP to a collector on 127.0.0.1 that
    answers after S seconds.
child start
    a Python child that imports nothing otel_ai hooks (as the Interpreter's runs of
    generated code): plain, and with the bootstrap on PYTHONPATH and the variables
    ``otel-ai run`` sets; ``--starts`` starts each, alternating; medians.

Run it with ``PYTHONPATH=<another checkout>`` to measure that checkout's otel_ai the same
way (the bootstrap is then taken from there too)::

    python benchmarks/bench_waits.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


class _SlowCollector:
    """OTLP/HTTP on 127.0.0.1 that takes every request and answers after ``latency``
    seconds (a collector across a network)."""

    def __init__(self, latency: float) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(latency)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"


def pool_task(tasks: int, otlp_latency: float | None = None) -> tuple[float, float]:
    import otel_ai
    from otel_ai import pools

    if otlp_latency is not None:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = _SlowCollector(otlp_latency).endpoint
        os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf"
    otel_ai.configure(data_dir=tempfile.mkdtemp(prefix="bench-waits-"))
    emitter = otel_ai.EventEmitter("http://unused.invalid", "bench-pod")
    emitter.run_started("bench-waits")
    emitter.stage_started("bench-waits", "1_initial_implementation")

    def task(i: int) -> int:
        emitter.node_created("bench-waits", "1_initial_implementation", f"n{i}")
        emitter.log("bench-waits", f"line {i}")
        emitter.node_completed("bench-waits", "1_initial_implementation", f"n{i}", False, 0.5, 1.0)
        return i

    samples = []
    for i in range(tasks):
        start = time.perf_counter()
        pools.call_in_context(None, task, (i,), {})
        samples.append(time.perf_counter() - start)
        time.sleep(0.01)
    otel_ai.shutdown(10)
    samples.sort()
    return statistics.median(samples) * 1000, samples[int(len(samples) * 0.9)] * 1000


def child_start(starts: int) -> tuple[float, float]:
    import otel_ai.bootstrap

    site = str(Path(otel_ai.bootstrap.__file__).resolve().parent / "site")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACEPARENT", "TRACESTATE"))}
    extra = os.environ.get("PYTHONPATH")
    wrapped = dict(
        base,
        PYTHONPATH=os.pathsep.join(p for p in (site, extra) if p),
        OTEL_AI_CHANNEL=os.path.join(tempfile.gettempdir(), "bench-waits-no-channel"),
        OTEL_AI_RUN_ID="bench-waits",
        TRACEPARENT="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    times: dict[str, list[float]] = {"plain": [], "bootstrap": []}
    command = [sys.executable, "-c", "import os, json; print(os.getpid())"]
    for i in range(starts):
        for name in ("plain", "bootstrap") if i % 2 == 0 else ("bootstrap", "plain"):
            start = time.perf_counter()
            subprocess.run(
                command,
                env=base if name == "plain" else wrapped,
                cwd=tempfile.gettempdir(),
                capture_output=True,
                check=True,
            )
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["plain"]) * 1000, statistics.median(times["bootstrap"]) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--starts", type=int, default=40)
    parser.add_argument(
        "--otlp-latency",
        type=float,
        default=None,
        help="the pool task over OTLP/HTTP to a collector on 127.0.0.1 answering after this many "
        "seconds (default: the embedded default's files)",
    )
    args = parser.parse_args(argv)
    import otel_ai

    print(
        f"# bench_waits  otel_ai from {Path(otel_ai.__file__).resolve().parent.parent.name}  "
        f"load {os.getloadavg()[0]:.1f}"
    )
    if args.starts:
        plain, boot = child_start(args.starts)
        print(
            f"child start: plain {plain:.1f} ms, with the bootstrap {boot:.1f} ms "
            f"(added {boot - plain:+.1f} ms)"
        )
    median, p90 = pool_task(args.tasks, args.otlp_latency)
    where = "files" if args.otlp_latency is None else f"OTLP, collector answering in {args.otlp_latency} s"
    print(f"pool task (emit + otel_ai's end of task; {where}): median {median:.2f} ms, p90 {p90:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
