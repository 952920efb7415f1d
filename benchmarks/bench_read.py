"""Cost of reading a run back (``otel_ai.read.load_directory``), per record.

``otel-ai show``, ``otel-ai report`` and ``otel-ai replay`` read a run's OTLP/JSON lines
files. This times the whole read of one run directory (files opened, each line parsed
from JSON, decoded into span, log and metric records) against the floor of that work:
only ``json.loads`` of every line, in the same process. The run is the demo pod worker's
(``examples/pod_worker_demo.py`` under ``otel-ai run``, so system and process metrics are
there too), made once in a temporary directory unless ``--data-dir`` names one.

Run it on two checkouts to compare (``PYTHONPATH=<checkout> python benchmarks/bench_read.py
--data-dir DIR``, the same DIR for both): a checkout from before ``otel_ai.read`` existed
is read with ``otel_ai.export.otlp_json``.
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _reader() -> Any:
    for name in ("otel_ai.read", "otel_ai.export.otlp_json"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise SystemExit("no otel_ai reader importable")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="a run directory to read (default: make one)")
    parser.add_argument("--repeat", type=int, default=7, help="repeats; the best is reported (default 7)")
    args = parser.parse_args()
    reader = _reader()
    with tempfile.TemporaryDirectory() as temporary:
        data_dir = args.data_dir or _make_run(Path(temporary))
        files = sorted(data_dir.glob("*.jsonl"))
        loaded = reader.load_directory(data_dir)
        records = len(loaded.spans) + len(loaded.logs) + len(loaded.metrics)

        def floor() -> None:
            for file in files:
                with open(file, "rb") as handle:
                    for line in handle:
                        json.loads(line)

        floor_s = _best(floor, args.repeat)
        read_s = _best(lambda: reader.load_directory(data_dir), args.repeat)
    print(f"# {platform.python_implementation()} {platform.python_version()}, {reader.__name__}")
    print(
        f"# {len(files)} files, {sum(f.stat().st_size for f in files) / 1024:.0f} KiB, {len(loaded.spans)} spans, "
        f"{len(loaded.logs)} log records, {len(loaded.metrics)} metric points; best of {args.repeat}"
    )
    print(f"{'json.loads only':24} {floor_s * 1000:8.1f} ms {floor_s / records * 1e6:8.1f} us/record   1.0x")
    print(
        f"{'load_directory':24} {read_s * 1000:8.1f} ms {read_s / records * 1e6:8.1f} us/record "
        f"{read_s / floor_s:6.1f}x"
    )


if __name__ == "__main__":
    main()
