"""Cost of reading a run back (``otel_ai.read.load_directory``), per record.

``otel-ai show``, ``otel-ai report`` and ``otel-ai replay`` read a run's OTLP/JSON lines
files. This times the whole read of one run directory (files opened, each line parsed
from JSON, decoded into span, log and metric records) against the floor of that work:
only ``json.loads`` of every line, and against the baseline: the hand-written decoder
``otel_ai.export.otlp_json`` had before the read side existed (taken from git history,
commit ``15b5f8a``, or ``--baseline FILE``), all in the same process, in interleaved
rounds. Decoding alone (the same parsed lines into records) is timed too. The run is the
demo pod worker's (``examples/pod_worker_demo.py`` under ``otel-ai run``, so system and
process metrics are there too), made once in a temporary directory unless
``--data-dir`` names one.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


BASELINE_COMMIT = "15b5f8a"  # the last commit with the hand-written decoder
BASELINE_PATH = "otel_ai/export/otlp_json.py"


def _reader() -> Any:
    for name in ("otel_ai.read", "otel_ai.export.otlp_json"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise SystemExit("no otel_ai reader importable")


def _baseline(path: Path | None) -> Any:
    """The hand-written decoder (a module of the standard library only), or None."""
    if path is not None:
        source = path.read_text(encoding="utf-8")
    else:
        command = ["git", "-C", str(ROOT), "show", f"{BASELINE_COMMIT}:{BASELINE_PATH}"]
        try:
            source = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return None
    module = types.ModuleType("baseline_otlp_json")
    sys.modules[module.__name__] = module  # its dataclasses look their module up
    exec(compile(source, f"{BASELINE_COMMIT}:{BASELINE_PATH}", "exec"), module.__dict__)
    return module


def _make_run(root: Path) -> Path:
    data_dir = root / "runs"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AI_"))}
    env.update(OTEL_AI_DATA_DIR=str(data_dir), OTEL_METRIC_EXPORT_INTERVAL="200")
    command = [sys.executable, "-m", "otel_ai", "run", "--run-id", "bench-read", "--no-status", "--"]
    command += [sys.executable, str(ROOT / "examples" / "pod_worker_demo.py"), "--seed", "5"]
    command += ["--workdir", str(root / "work")]
    subprocess.run(command, check=True, env=env, capture_output=True, timeout=300)
    return data_dir


def _best(function: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def _row(name: str, seconds: float, records: int, floor_s: float, baseline_s: float | None) -> str:
    against = f"{seconds / baseline_s:6.2f}x" if baseline_s else "      -"
    return (
        f"{name:44} {seconds * 1000:8.1f} ms {seconds / records * 1e6:7.1f} us/record "
        f"{seconds / floor_s:6.1f}x {against}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="a run directory to read (default: make one)")
    parser.add_argument("--repeat", type=int, default=7, help="repeats per round; the best is reported")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--baseline", type=Path, help="the hand-written decoder's source (default: git)")
    args = parser.parse_args()
    reader = _reader()
    baseline = _baseline(args.baseline)
    with tempfile.TemporaryDirectory() as temporary:
        data_dir = args.data_dir or _make_run(Path(temporary))
        files = sorted(data_dir.glob("*.jsonl"))
        loaded = reader.load_directory(data_dir)
        records = len(loaded.spans) + len(loaded.logs) + len(loaded.metrics)
        lines = [
            json.loads(line) for file in files for line in file.read_bytes().splitlines() if line.strip()
        ]
        if baseline is not None:
            old = baseline.load_directory(data_dir)
            assert (len(old.spans), len(old.logs), len(old.metrics)) == (
                len(loaded.spans),
                len(loaded.logs),
                len(loaded.metrics),
            ), "the two decoders read different runs"

        def floor() -> None:
            for file in files:
                with open(file, "rb") as handle:
                    for line in handle:
                        json.loads(line)

        timings: dict[str, Any] = {"floor": floor, "read": lambda: reader.load_directory(data_dir)}
        timings["decode"] = lambda: reader.Telemetry.from_requests(lines)
        if baseline is not None:
            timings["read (baseline)"] = lambda: baseline.load_directory(data_dir)
            timings["decode (baseline)"] = lambda: baseline.Telemetry.from_requests(lines)
        best = dict.fromkeys(timings, float("inf"))
        for _ in range(args.rounds):
            for name, function in timings.items():
                best[name] = min(best[name], _best(function, args.repeat))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, {reader.__name__}, "
        f"{os.cpu_count()} CPUs, load {load:.1f}"
    )
    print(
        f"# {len(files)} files, {sum(f.stat().st_size for f in files) / 1024:.0f} KiB, {len(loaded.spans)} spans, "
        f"{len(loaded.logs)} log records, {len(loaded.metrics)} metric points; "
        f"best of {args.repeat} x {args.rounds} interleaved rounds"
    )
    print(f"{'':44} {'time':>11} {'per record':>17} {'/floor':>7} {'/baseline':>7}")
    print(_row("json.loads only (floor)", best["floor"], records, best["floor"], None))
    for name, label in (("read", "load_directory"), ("decode", "decode parsed lines")):
        old_s = best.get(f"{name} (baseline)")
        if old_s is not None:
            print(_row(f"{label} (hand-written baseline)", old_s, records, best["floor"], old_s))
        print(_row(f"{label} ({reader.__name__})", best[name], records, best["floor"], old_s))


if __name__ == "__main__":
    main()
