"""Watching a run's directories: tailing throughput and latency, upload memory, idle CPU.

Four questions, each answered in its own fresh process (``--part`` runs one):

throughput
    A writer appends ``--lines`` lines (default 1,000,000) to a log file as fast as it can
    while a :class:`otel_ai.watch.Watcher` tails it into otel_ai's real log pipeline
    (BatchLogRecordProcessor, redaction, queue of 65536). The innermost log exporter is
    replaced by one that only counts (``--exporter noop``, default) or is the embedded
    default writing OTLP/JSON files (``--exporter file``). Lines per second = lines / time
    from the first write to the export of the last line. Loss is checked: every line must
    reach the exporter exactly once, in order. Also the tailer alone (lines handed to a
    sink that only counts), for scale.
latency
    Lines written at a steady ``--rate`` for ``--seconds``, each carrying its write time;
    the exporter notes when it gets each one. Write-to-export percentiles, with the SDK's
    default batch delay (OTEL_BLRP_SCHEDULE_DELAY=1000 ms) and with 200 ms.
upload
    A 2 GiB sparse file uploaded with :class:`otel_ai.artifacts.S3ArtifactStore` to moto's
    S3 server (another process, 127.0.0.1): the uploading process's peak RSS
    (``ru_maxrss``), against the same process before uploading and against the seed's way
    (``f.read()`` of the whole file, then hashing it).
idle
    A tree of 100,000 files (1000 directories) with no changes. CPU time (user + sys) of
    a process running otel_ai's watcher for ``--idle-seconds`` after its start, against a
    process doing what the seed's ``ExperimentMonitor`` did every 5 s over the same tree
    (13 recursive globs, log files re-opened at their positions, every JSON/YAML file
    re-hashed), over the same window after its first pass (ours: after 3 s of start-up).
    Start-up costs are reported apart, and otel_ai without a watcher as the floor.

    python benchmarks/bench_watch.py                 # everything (about 4 minutes)
    python benchmarks/bench_watch.py --part idle --idle-seconds 60
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()


# ---------------------------------------------------------------------------------------
# a counting exporter behind otel_ai's own pipeline (benchmark-only seam, as bench_emit)
class _Counting:
    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.count = 0
        self.out_of_order = 0
        self.last_seq = 0
        self.last_at = 0.0
        self.latencies: list[float] = []
        self.done = threading.Event()
        self.expected = -1

    def export(self, batch: Sequence[Any]) -> Any:
        from opentelemetry.sdk._logs.export import LogRecordExportResult

        now_ns = time.time_ns()
        for item in batch:
            record = getattr(item, "log_record", item)
            body = record.body
            if not isinstance(body, str) or not body.startswith(self.marker):
                continue
            _marker, number, written_ns = body.split(" ")
            if int(number) != self.count:
                self.out_of_order += 1
            self.count += 1
            if written_ns != "0":
                self.latencies.append((now_ns - int(written_ns)) / 1e9)
        self.last_at = time.perf_counter()
        if self.count == self.expected:
            self.done.set()
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _configure(exporter: str, data_dir: str, counting: _Counting) -> None:
    from opentelemetry.sdk._logs.export import LogRecordExporter

    import otel_ai
    from otel_ai.export import providers

    original = providers._exporters

    class Wrapped(LogRecordExporter):
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def export(self, batch: Sequence[Any]) -> Any:
            if self.inner is not None:
                self.inner.export(batch)
            return counting.export(batch)

        def shutdown(self) -> None:
            if self.inner is not None:
                self.inner.shutdown()

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return True

    def exporters(settings: Any) -> Any:
        span, log, metric = original(settings)
        return span, Wrapped(log if exporter == "file" else None), metric

    providers._exporters = exporters  # type: ignore[assignment]
    otel_ai.configure(data_dir=data_dir)


# ---------------------------------------------------------------------------------------
def part_throughput(args: argparse.Namespace) -> dict[str, Any]:
    import otel_ai
    from otel_ai.watch import Watcher

    total = args.lines
    results: dict[str, Any] = {"lines": total, "exporter": args.exporter}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "exp"
        root.mkdir()
        counting = _Counting("flood")
        counting.expected = total
        _configure(args.exporter, str(Path(tmp) / "data"), counting)

        # the tailer alone
        class CountingSink:
            count = 0

            def room(self) -> int:
                return 1 << 30

            def deliver(self, source: Any, lines: Sequence[Any]) -> None:
                self.count += len(lines)

        sink = CountingSink()
        watcher = Watcher(
            None, [root], line_sink=sink, artifact_patterns=(), state_dir=Path(tmp) / "s1"
        ).start()
        started = time.perf_counter()
        _write_lines(root / "alone.log", total, "tail")
        watcher.stop(120)
        results["tailer_only_lines_per_s"] = round(total / (time.perf_counter() - started))
        results["tailer_only_delivered"] = sink.count

        with otel_ai.run("bench-watch") as run:
            watcher = Watcher(run, [root], artifact_patterns=()).start()
            started = time.perf_counter()
            writer = threading.Thread(target=_write_lines, args=(root / "flood.log", total, "flood"))
            writer.start()
            writer.join()
            write_s = time.perf_counter() - started
            counting.done.wait(600)
            summary = watcher.stop(60)
        otel_ai.shutdown(60)
        elapsed = counting.last_at - started
        results.update(
            write_s=round(write_s, 2),
            delivered=counting.count,
            out_of_order=counting.out_of_order,
            lines_per_s=round(counting.count / elapsed),
            watcher_lines=summary.lines,
        )
    return results


def _write_lines(path: Path, total: int, marker: str) -> None:
    with open(path, "ab", buffering=0) as handle:
        handle.writelines(
            b"".join(b"%s %d 0\n" % (marker.encode(), i) for i in range(start, min(start + 10_000, total)))
            for start in range(0, total, 10_000)
        )


def part_latency(args: argparse.Namespace) -> dict[str, Any]:
    import otel_ai
    from otel_ai.watch import Watcher

    if args.schedule_delay is not None:
        os.environ["OTEL_BLRP_SCHEDULE_DELAY"] = str(args.schedule_delay)
    counting = _Counting("lat")
    total = int(args.rate * args.seconds)
    counting.expected = total
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "exp"
        root.mkdir()
        _configure("noop", str(Path(tmp) / "data"), counting)
        handed = _handover_latencies(root / "first", args.rate, min(args.seconds, 5.0), Path(tmp) / "state")
        with otel_ai.run("bench-latency") as run:
            watcher = Watcher(run, [root], artifact_patterns=()).start()
            interval = 1.0 / args.rate
            with open(root / "steady.log", "ab", buffering=0) as handle:
                next_at = time.perf_counter()
                for i in range(total):
                    handle.write(b"lat %d %d\n" % (i, time.time_ns()))
                    next_at += interval
                    delay = next_at - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
            counting.done.wait(30)
            watcher.stop(10)
        otel_ai.shutdown(10)
    lat = sorted(counting.latencies)
    return {
        "handover_p50_ms": round(_pct(handed, 50) * 1000, 1),
        "handover_p95_ms": round(_pct(handed, 95) * 1000, 1),
        "handover_max_ms": round(handed[-1] * 1000, 1),
        "schedule_delay_ms": args.schedule_delay or 1000,
        "lines": len(lat),
        "rate_per_s": args.rate,
        "p50_ms": round(_pct(lat, 50) * 1000, 1),
        "p95_ms": round(_pct(lat, 95) * 1000, 1),
        "p99_ms": round(_pct(lat, 99) * 1000, 1),
        "max_ms": round(lat[-1] * 1000, 1),
        "mean_ms": round(statistics.fmean(lat) * 1000, 1),
    }


def _handover_latencies(root: Path, rate: float, seconds: float, state_dir: Path) -> list[float]:
    """Write-to-sink latency of the tailer alone (before otel_ai's export pipeline)."""
    from otel_ai.watch import Watcher

    root.mkdir()
    latencies: list[float] = []

    class Timing:
        def room(self) -> int:
            return 1 << 30

        def deliver(self, source: Any, lines: Sequence[Any]) -> None:
            now = time.time_ns()
            latencies.extend((now - int(line.data.split(b" ")[2])) / 1e9 for line in lines)

    watcher = Watcher(None, [root], line_sink=Timing(), artifact_patterns=(), state_dir=state_dir).start()
    interval = 1.0 / rate
    with open(root / "steady.log", "ab", buffering=0) as handle:
        next_at = time.perf_counter()
        for i in range(int(rate * seconds)):
            handle.write(b"lat %d %d\n" % (i, time.time_ns()))
            next_at += interval
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
    watcher.stop(10)
    return sorted(latencies)


def _pct(values: list[float], pct: float) -> float:
    return values[min(len(values) - 1, int(len(values) * pct / 100))]


# ---------------------------------------------------------------------------------------
_MOTO = """
import sys, time
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
"""

_UPLOAD = """
import json, os, resource, sys, time
import boto3
from otel_ai.artifacts import S3ArtifactStore
endpoint, bucket, root, name, mode = sys.argv[1:6]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
if mode == "otel_ai":
    store = S3ArtifactStore(f"s3://{bucket}/bench")
    stored = store.upload_file(root, name, run_id="bench")
    result = {"sha256": stored.sha256, "parts": stored.parts, "size": stored.size_bytes}
else:  # the seed's way: the whole file in memory, then hashed
    import hashlib
    with open(os.path.join(root, name), "rb") as handle:
        data = handle.read()
    result = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
result.update(seconds=round(time.perf_counter() - started, 1),
              rss_before_mb=round(before / 1024, 1),
              peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
print(json.dumps(result))
"""


def part_upload(args: argparse.Namespace) -> dict[str, Any]:
    size = args.upload_gib << 30
    with tempfile.TemporaryDirectory() as tmp:
        free = shutil.disk_usage(tmp).free
        if free < 3 * size:
            return {"skipped": f"needs {3 * size >> 30} GiB free in {tmp}, has {free >> 30}"}
        root = Path(tmp) / "exp"
        root.mkdir()
        with open(root / "model.safetensors", "wb") as handle:  # sparse: no disk, reads as zeros
            handle.truncate(size)
        env = dict(os.environ, TMPDIR=tmp)
        moto = subprocess.Popen(
            [sys.executable, "-c", _MOTO],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        try:
            assert moto.stdout is not None
            endpoint = f"http://127.0.0.1:{moto.stdout.readline().strip()}"
            env.update(
                AWS_ENDPOINT_URL_S3=endpoint,
                AWS_ACCESS_KEY_ID="bench",
                AWS_SECRET_ACCESS_KEY="bench",
                AWS_DEFAULT_REGION="us-east-1",
            )
            import boto3

            boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint,
                region_name="us-east-1",
                aws_access_key_id="bench",
                aws_secret_access_key="bench",
            ).create_bucket(Bucket="bench")
            results: dict[str, Any] = {"file_gib": args.upload_gib}
            for mode in ("otel_ai", "seed"):
                out = subprocess.run(
                    [sys.executable, "-c", _UPLOAD, endpoint, "bench", str(root), "model.safetensors", mode],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        finally:
            if moto.stdin is not None:
                moto.stdin.close()
            moto.wait(30)
    return results


# ---------------------------------------------------------------------------------------
_KINDS = [("py", 60), ("json", 20), ("png", 10), ("npy", 5), ("txt", 4), ("log", 1)]


def _build_tree(root: Path, files: int) -> None:
    per_dir = 100
    payload = b"x" * 100
    for d in range(files // per_dir):
        directory = root / f"stage_{d % 4}" / f"node_{d:04d}" / ("logs" if d % 10 == 0 else "work")
        directory.mkdir(parents=True, exist_ok=True)
        n = 0
        for ext, count in _KINDS:
            for _ in range(count):
                (directory / f"f{n:03d}.{ext}").write_bytes(payload)
                n += 1


_IDLE_OURS = """
import json, sys, time
t0 = time.process_time()
import otel_ai
from otel_ai.watch import Watcher
otel_ai.configure(data_dir=sys.argv[2])
watching = sys.argv[5] == "watch"
with otel_ai.run("idle") as run:
    watcher = Watcher(run, [sys.argv[1]]).start() if watching else None
    time.sleep(3.0)  # the first state save and exports after start count as start-up
    ready = time.process_time()
    time.sleep(float(sys.argv[3]))
    idle = time.process_time() - ready
    summary = watcher.stop(30) if watcher else None
print(json.dumps({"startup_cpu_s": round(ready - t0, 3), "idle_cpu_s": round(idle, 3),
                  "observer": summary.observer if summary else None,
                  "files_tailed": summary.files_tailed if summary else 0}))
"""


def _seed_like_pass(root: Path, positions: dict[str, int], seen: set[str]) -> None:
    """The work the seed's monitor did on each 5-second pass (emits left out)."""
    base = str(root)
    for pattern in ("**/*.png", "**/*.jpg", "**/*.jpeg", "**/*plot*.pdf"):
        for path in glob.glob(os.path.join(base, pattern), recursive=True):
            if path not in seen:
                seen.add(path)
                os.stat(path)
    logs = glob.glob(os.path.join(base, "**/*.log"), recursive=True) + glob.glob(
        os.path.join(base, "**/logs/**/*.txt"), recursive=True
    )
    for path in logs:
        try:
            with open(path) as handle:
                handle.seek(positions.get(path, 0))
                handle.readlines()
                positions[path] = handle.tell()
        except OSError:
            pass
    glob.glob(os.path.join(base, "**/experiment_data.npy"), recursive=True)
    glob.glob(os.path.join(base, "**/metrics.json"), recursive=True)
    for pattern in ("**/*.pt", "**/*.pth", "**/*.ckpt"):
        glob.glob(os.path.join(base, pattern), recursive=True)
    for pattern in ("**/*.yaml", "**/*.json"):
        for path in glob.glob(os.path.join(base, pattern), recursive=True):
            with open(path, "rb") as handle:
                hashlib.md5(handle.read()).hexdigest()


_IDLE_SEED = """
import json, sys, time
sys.path.insert(0, sys.argv[4])
from bench_watch import _seed_like_pass
from pathlib import Path
root, seconds = Path(sys.argv[1]), float(sys.argv[3])
positions, seen = {}, set()
t0 = time.process_time()
_seed_like_pass(root, positions, seen)
ready = time.process_time()
end = time.monotonic() + seconds
passes = 0
while time.monotonic() < end:
    time.sleep(min(5.0, max(end - time.monotonic(), 0)))
    if time.monotonic() < end:
        _seed_like_pass(root, positions, seen)
        passes += 1
print(json.dumps({"startup_cpu_s": round(ready - t0, 3), "idle_cpu_s": round(time.process_time() - ready, 3), "passes": passes}))
"""


def part_idle(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "tree"
        started = time.perf_counter()
        _build_tree(root, args.files)
        built = time.perf_counter() - started
        results: dict[str, Any] = {
            "files": args.files,
            "idle_seconds": args.idle_seconds,
            "build_s": round(built, 1),
        }
        variants = (
            ("otel_ai", _IDLE_OURS, "watch"),
            ("otel_ai_without_watcher", _IDLE_OURS, "none"),
            ("seed", _IDLE_SEED, ""),
        )
        for name, script, mode in variants:
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    script,
                    str(root),
                    str(Path(tmp) / "data"),
                    str(args.idle_seconds),
                    str(HERE.parent),
                    mode,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        ours = max(results["otel_ai"]["idle_cpu_s"], 0.001)
        watcher_only = max(ours - results["otel_ai_without_watcher"]["idle_cpu_s"], 0.001)
        results["idle_cpu_ratio_seed_over_otel_ai"] = round(results["seed"]["idle_cpu_s"] / ours, 1)
        results["idle_cpu_ratio_seed_over_watcher_alone"] = round(
            results["seed"]["idle_cpu_s"] / watcher_only, 1
        )
    return results


# ---------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("throughput", "latency", "upload", "idle", "all"), default="all")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--exporter", choices=("noop", "file"), default="noop")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--schedule-delay", type=int, default=None, help="OTEL_BLRP_SCHEDULE_DELAY in ms")
    parser.add_argument("--upload-gib", type=int, default=2)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.part != "all":
        runner = {
            "throughput": part_throughput,
            "latency": part_latency,
            "upload": part_upload,
            "idle": part_idle,
        }[args.part]
        print(json.dumps(runner(args)), flush=True)
        return 0
    print(f"# {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}", flush=True)
    runs: list[list[str]] = [
        ["--part", "throughput", "--lines", str(args.lines), "--exporter", args.exporter],
        ["--part", "latency", "--rate", str(args.rate), "--seconds", str(args.seconds)],
        [
            "--part",
            "latency",
            "--rate",
            str(args.rate),
            "--seconds",
            str(args.seconds),
            "--schedule-delay",
            "200",
        ],
        ["--part", "upload", "--upload-gib", str(args.upload_gib)],
        ["--part", "idle", "--files", str(args.files), "--idle-seconds", str(args.idle_seconds)],
    ]
    for extra in runs:
        out = subprocess.run([sys.executable, str(HERE), *extra], capture_output=True, text=True, check=False)
        line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr.strip()[-2000:]
        print(f"{extra[1]}: {line}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
