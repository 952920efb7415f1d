"""Cost of one sampling pass over a process tree of 50 processes, and its CPU share.

The tree: this process, ``--workers`` children, each with ``--per-worker`` sleeping
grandchildren (10 x 4 = 50 descendants by default, 51 processes in all). Every process
sleeps (bounded: they exit by themselves after ``--lifetime`` seconds) and the whole tree
is killed at the end, whatever happens.

Measured on this thread, ``--passes`` times each, in a rotating order:

otel_ai tree pass
    ``otel_ai.metrics.process.ProcessTree.sample()``: the process tree walked with
    ``psutil.Process.children(recursive=True)`` and one ``oneshot()`` read of CPU times,
    RSS and threads per member.
otel_ai collection
    what the metric reader's thread does at one collection: every system and process
    instrument's callback through the SDK (``InMemoryMetricReader.get_metrics_data()`` on
    a ``MeterProvider`` with :func:`otel_ai.metrics.start`; no GPU here), aggregation
    included, export excluded.
naive full scan (baseline)
    what a straightforward implementation does: ``psutil.process_iter()`` over every
    process of the machine with ``ppid``, ``cpu_times``, ``memory_info`` and
    ``num_threads``, then the tree rebuilt from the parent pids and summed.

Wall time (``perf_counter``) and this thread's CPU time (``thread_time``) per pass; the CPU
share at the default 15 s interval is the mean CPU time of a collection divided by 15 s
(of one core).

    python benchmarks/bench_metrics.py
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import psutil
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import otel_ai.metrics
from otel_ai.metrics import DEFAULT_INTERVAL_S
from otel_ai.metrics.process import ProcessTree

WORKER = """
import subprocess, sys, time
sleepers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep({lifetime})"]) for _ in range({n})]
print("ready", flush=True)
time.sleep({lifetime})
"""


@contextmanager
def process_tree(workers: int, per_worker: int, lifetime: float) -> Iterator[list[subprocess.Popen[str]]]:
    """``workers`` children with ``per_worker`` sleeping children each; all killed on exit."""
    started: list[subprocess.Popen[str]] = []
    try:
        for _ in range(workers):
            started.append(
                subprocess.Popen(
                    [sys.executable, "-c", WORKER.format(n=per_worker, lifetime=lifetime)],
                    stdout=subprocess.PIPE,
                    text=True,
                    start_new_session=True,  # its own process group: killed with its children
                )
            )
        for child in started:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError("a worker did not start")
        yield started
    finally:
        for child in started:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for child in started:
            child.wait(10)
            if child.stdout is not None:
                child.stdout.close()


def naive_scan(root_pid: int) -> tuple[int, int, float]:
    """The baseline: every process of the machine, then the tree from the parent pids."""
    info = {}
    children: dict[int, list[int]] = defaultdict(list)
    for process in psutil.process_iter(["ppid", "cpu_times", "memory_info", "num_threads"]):
        data = process.info
        info[process.pid] = data
        if data["ppid"] is not None:
            children[data["ppid"]].append(process.pid)
    rss = threads = 0
    cpu = 0.0
    stack = [root_pid]
    count = 0
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, ()))
        data = info.get(pid)
        if data is None or data["memory_info"] is None:
            continue
        count += 1
        rss += data["memory_info"].rss
        threads += data["num_threads"]
        cpu += data["cpu_times"].user + data["cpu_times"].system
    return count, rss, cpu


@dataclass
class Result:
    name: str
    wall_ms: list[float]
    cpu_ms: list[float]

    def row(self) -> str:
        wall, cpu = self.wall_ms, self.cpu_ms
        p99 = sorted(wall)[max(int(len(wall) * 0.99) - 1, 0)]
        return (
            f"| {self.name} | {len(wall)} | {statistics.fmean(wall):.2f} | {statistics.median(wall):.2f} "
            f"| {p99:.2f} | {statistics.fmean(cpu):.2f} |"
        )


def measure(variants: dict[str, Callable[[], object]], passes: int, rounds: int) -> list[Result]:
    results = {name: Result(name, [], []) for name in variants}
    names = list(variants)
    for name in names:  # warm-up: imports, psutil caches
        for _ in range(3):
            variants[name]()
    per_round = max(passes // rounds, 1)
    for round_index in range(rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            fn = variants[name]
            result = results[name]
            gc.collect()
            for _ in range(per_round):
                cpu0, wall0 = time.thread_time(), time.perf_counter()
                fn()
                wall1, cpu1 = time.perf_counter(), time.thread_time()
                result.wall_ms.append((wall1 - wall0) * 1000)
                result.cpu_ms.append((cpu1 - cpu0) * 1000)
    return [results[name] for name in names]


def machine() -> str:
    return f"{os.cpu_count()}-core {platform.machine()}, {platform.python_implementation()} {platform.python_version()}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cost of one metrics sampling pass over a 50-process tree.")
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--per-worker", type=int, default=4)
    parser.add_argument("--passes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lifetime", type=float, default=300.0, help="seconds the sleepers live at most")
    args = parser.parse_args(argv)

    with process_tree(args.workers, args.per_worker, args.lifetime):
        root = os.getpid()
        tree = ProcessTree(root)
        members = tree.sample()
        assert members is not None
        expected = 1 + args.workers * (1 + args.per_worker)
        if members.processes != expected:
            raise RuntimeError(f"tree has {members.processes} processes, expected {expected}")
        scanned = naive_scan(root)
        assert scanned[0] == members.processes, (scanned, members)

        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        sampler = otel_ai.metrics.start(provider.get_meter("bench"), gpu=False, min_interval_s=0.0)

        def collection() -> object:
            return reader.get_metrics_data()

        results = measure(
            {
                "otel_ai tree pass": tree.sample,
                "otel_ai collection (system + tree, via the SDK)": collection,
                "naive full scan (baseline)": lambda: naive_scan(root),
            },
            args.passes,
            args.rounds,
        )
        passes_taken = sampler.passes
        sampler.stop()
        provider.shutdown()
        system_processes = len(psutil.pids())

    print(f"Machine: {machine()}, psutil {psutil.__version__}; {system_processes} processes on the machine")
    print(f"Tree: {expected} processes (this one, {args.workers} workers x (1 + {args.per_worker} sleepers))")
    print()
    print("| variant | passes | mean (ms) | p50 (ms) | p99 (ms) | CPU mean (ms) |")
    print("|---|---:|---:|---:|---:|---:|")
    for result in results:
        print(result.row())
    by_name = {r.name: r for r in results}
    ours = by_name["otel_ai tree pass"]
    full = by_name["otel_ai collection (system + tree, via the SDK)"]
    naive = by_name["naive full scan (baseline)"]
    print()
    print(
        f"tree pass / naive scan: {statistics.fmean(ours.wall_ms) / statistics.fmean(naive.wall_ms):.2f}x (mean wall), "
        f"{statistics.median(ours.wall_ms) / statistics.median(naive.wall_ms):.2f}x (p50)"
    )
    share = statistics.fmean(full.cpu_ms) / 1000 / DEFAULT_INTERVAL_S
    print(
        f"CPU share of one core at the default {DEFAULT_INTERVAL_S:.0f} s interval: {share * 100:.3f}% "
        f"(one collection every {DEFAULT_INTERVAL_S:.0f} s, {statistics.fmean(full.cpu_ms):.2f} ms CPU each)"
    )
    print(f"(sampler passes during the collection runs: {passes_taken})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
