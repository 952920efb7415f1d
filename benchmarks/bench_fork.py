"""What a forked child pays, before its first line, for otel_ai in the process it is forked from.

AI-Scientist-v2's Interpreter forks a child from a pool worker for every execution of a
node's code (60 and more a run). Whatever the at-fork hooks of otel_ai and the SDK do in
that child is on the node's path. Each variant runs in a fresh process of its own:

- ``off``: otel_ai imported, OTEL_SDK_DISABLED=true (no pipeline);
- ``main``: the embedded default's pipeline built and used (a span, a log record);
- ``worker``: a child forked from ``main`` that built and used its own pipeline, as a
  pool worker does, forks the children.

Each child writes its CPU time (which starts at zero at the fork) and its minor page
faults as its first act, then leaves with ``os._exit``. Medians over the children, the
variants alternating round by round.

    python benchmarks/bench_fork.py --children 40 --rounds 5
    python benchmarks/bench_fork.py --pythonpath ../other-checkout   # another version's code
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

VARIANTS = ("off", "main", "worker")

_PROBE = r"""
import json, os, resource, sys, time
variant, children = sys.argv[1], int(sys.argv[2])
import otel_ai
from otel_ai.export.providers import get_pipeline

def use_pipeline():
    pipeline = get_pipeline()
    with pipeline.tracer.start_as_current_span("parent work"):
        pipeline.logger.emit(body="a line")
    pipeline.tracer_provider.force_flush() if pipeline.tracer_provider else None

def fork_children(out):
    for _ in range(children):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            cpu = time.process_time()
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            os.write(write, f"{cpu} {faults}".encode())
            os._exit(0)
        os.close(write)
        answer = os.read(read, 100).decode().split()
        os.close(read)
        os.waitpid(pid, 0)
        out.append((float(answer[0]) * 1000, int(answer[1])))

results = []
if variant != "off":
    use_pipeline()
if variant == "worker":
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        use_pipeline()  # the worker's own pipeline, built on first use
        fork_children(results)
        os.write(write, json.dumps(results).encode())
        os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.waitpid(pid, 0)
    results = json.loads(data)
else:
    fork_children(results)
print(json.dumps(results))
"""


def run_variant(
    variant: str, children: int, data_dir: str, pythonpath: str | None
) -> list[tuple[float, int]]:
    env = dict(os.environ, OTEL_AI_DATA_DIR=data_dir, OTEL_AI_QUIET="1")
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    if variant == "off":
        env["OTEL_SDK_DISABLED"] = "true"
    else:
        env.pop("OTEL_SDK_DISABLED", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, variant, str(children)],
        env=env,
        cwd=data_dir,  # not this checkout: ``-c`` puts the working directory first on sys.path
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return [(float(cpu), int(faults)) for cpu, faults in json.loads(done.stdout.strip().splitlines()[-1])]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--children", type=int, default=40, help="children forked per variant and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pythonpath", help="put this checkout's code first (compare versions)")
    args = parser.parse_args()
    samples: dict[str, list[tuple[float, int]]] = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="bench-fork-") as data_dir:
        for round_ in range(args.rounds):
            order = VARIANTS[round_ % len(VARIANTS) :] + VARIANTS[: round_ % len(VARIANTS)]
            for variant in order:
                samples[variant].extend(run_variant(variant, args.children, data_dir, args.pythonpath))
    print(
        f"{'forked from':<10} {'children':>8} {'CPU ms, median':>15} {'p90':>7} {'minor faults, median':>21}"
    )
    for variant in VARIANTS:
        cpu = sorted(sample[0] for sample in samples[variant])
        faults = [sample[1] for sample in samples[variant]]
        p90 = cpu[int(len(cpu) * 0.9) - 1] if cpu else float("nan")
        print(
            f"{variant:<10} {len(cpu):>8} {statistics.median(cpu):>15.2f} {p90:>7.2f} "
            f"{statistics.median(faults):>21.0f}"
        )


if __name__ == "__main__":
    main()
