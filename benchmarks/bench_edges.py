"""What ``otel-ai run`` adds to a command's wall time at its two edges: before the command
starts, and after it ends, until the wrapper has exited.

The command is a Python one-liner that prints ``time.time_ns()`` at its first line and
again just before it leaves (after ``--sleep`` seconds). Run bare and under ``otel-ai run``,
alternating, ``--rounds`` times each:

- start: the command's first stamp minus the moment its launcher started it;
- exit: the moment its launcher saw it (or the wrapper) exit minus its last stamp.

The differences of the medians are what the wrapper adds; so is the CPU time (user +
system) of the run's process tree, wrapped minus bare: the wrapper's own. ``--tree-files N``
runs both in a working directory of N files in directories of 100 (what ``otel-ai run``
watches by default), named as a checkout's are (``.py``, ``.json``, ``.txt``...); with
``--venv-files M`` it also holds a Python environment of M files under ``env/`` (a
``pyvenv.cfg``, not named ``.venv``), with ``--modules-packages P`` a ``node_modules`` of P
packages (three directories each). The probe also reports how many inotify watches the
process that started it holds just before it leaves (the wrapper's, wrapped; Linux). ``--python`` measures another installation's code
the same way (a before/after comparison).

    python benchmarks/bench_edges.py --rounds 10
    python benchmarks/bench_edges.py --rounds 5 --tree-files 300000
    python benchmarks/bench_edges.py --rounds 3 --tree-files 100000 --venv-files 100000
    python benchmarks/bench_edges.py --rounds 10 --python ../before-venv/bin/python

Nothing leaves 127.0.0.1: telemetry goes to the embedded default's files.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

PROBE = (
    "import os, sys, time; print(time.time_ns(), flush=True); time.sleep(float(sys.argv[1]))\n"
    "def watches(pid):\n"  # the inotify watches the process that started the probe holds
    "    n = 0\n"
    "    for fd in os.listdir(f'/proc/{pid}/fdinfo'):\n"
    "        try:\n"
    "            n += sum(line.startswith('inotify wd:') for line in open(f'/proc/{pid}/fdinfo/{fd}'))\n"
    "        except OSError:\n"
    "            pass\n"
    "    return n\n"
    "print('watches', watches(os.getppid()) if sys.platform.startswith('linux') else -1)\n"
    "print(time.time_ns())"
)


SUFFIXES = (".py", ".json", ".txt", ".csv", ".yaml", ".md", ".pyc", ".so")


def make_tree(directory: Path, files: int) -> None:
    for index in range(files):
        sub = directory / f"d{index // 10000}" / f"e{(index // 100) % 100}"
        if index % 100 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{index}{SUFFIXES[index % len(SUFFIXES)]}").write_bytes(b"x")


def make_modules(directory: Path, packages: int) -> None:
    """A ``node_modules`` as npm makes one: a package per directory, a few levels deep."""
    for index in range(packages):
        package = directory / f"pkg{index}" / "lib" / "util"
        package.mkdir(parents=True)
        (package / "index.js").write_bytes(b"x")
        (package.parent.parent / "package.json").write_bytes(b"{}")


def make_environment(directory: Path, files: int) -> None:
    """A virtual environment as venv makes one: ``pyvenv.cfg``, then the installed files."""
    directory.mkdir(parents=True)
    (directory / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\n")
    make_tree(directory / "lib" / "python3.11" / "site-packages", files)


def once(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, float, float]:
    """(start, exit) latency in seconds of one run of the probe behind ``command``, the
    CPU seconds of its process tree, and the inotify watches of the probe's parent."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    launched = time.time_ns()
    process = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=True)
    ended = time.time_ns()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stamps = [int(line) for line in process.stdout.split() if line.isdigit()]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    watches = next(
        int(line.split()[1]) for line in process.stdout.splitlines() if line.startswith("watches ")
    )
    return (stamps[0] - launched) / 1e9, (ended - stamps[-1]) / 1e9, cpu, watches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds the command runs")
    parser.add_argument("--tree-files", type=int, default=0, help="files in the working directory")
    parser.add_argument("--venv-files", type=int, default=0, help="files of a Python environment in it")
    parser.add_argument("--modules-packages", type=int, default=0, help="packages of a node_modules in it")
    parser.add_argument("--python", default=sys.executable, help="the interpreter otel-ai run runs with")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-edges-") as tmp:
        cwd = Path(tmp) / "work"
        cwd.mkdir()
        if args.tree_files:
            make_tree(cwd, args.tree_files)
        if args.venv_files:
            make_environment(cwd / "env", args.venv_files)
        if args.modules_packages:
            make_modules(cwd / "node_modules", args.modules_packages)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACEPARENT"))}
        env["OTEL_AI_DATA_DIR"] = str(Path(tmp) / "telemetry")
        probe = [sys.executable, "-c", PROBE, str(args.sleep)]
        wrapped = [args.python, "-m", "otel_ai", "run", "--no-status", "--", *probe]
        results: dict[str, list[tuple[float, float, float, float]]] = {"bare": [], "wrapped": []}
        for round_ in range(args.rounds):
            order = ("bare", "wrapped") if round_ % 2 == 0 else ("wrapped", "bare")
            for mode in order:
                results[mode].append(once(probe if mode == "bare" else wrapped, cwd, env))

    load = os.getloadavg()
    print(
        f"# bench_edges  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {platform.machine()} {os.cpu_count()} CPUs  "
        f"python {platform.python_version()}  load {load[0]:.1f}  rounds {args.rounds}  "
        f"tree {args.tree_files} files  environment {args.venv_files} files  "
        f"node_modules {args.modules_packages} packages  otel-ai run with {args.python}"
    )
    medians = {}
    for mode, rows in results.items():
        start = statistics.median(r[0] for r in rows) * 1000
        end = statistics.median(r[1] for r in rows) * 1000
        cpu = statistics.median(r[2] for r in rows) * 1000
        medians[mode] = (start, end, cpu)
        watches = int(statistics.median(r[3] for r in rows))
        print(
            f"{mode:8s} start {start:7.1f} ms   exit {end:7.1f} ms   cpu {cpu:7.1f} ms   "
            f"inotify watches of the probe's parent {watches}"
        )
    added = [medians["wrapped"][i] - medians["bare"][i] for i in range(3)]
    print(f"added by otel-ai run: start +{added[0]:.1f} ms, exit +{added[1]:.1f} ms, cpu +{added[2]:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
