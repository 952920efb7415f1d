"""What ``otel-ai run`` costs a tree search: wall time, CPU per node, RSS per process.

Runs ``examples/simulated_bfts.py`` (four stages, a ``ProcessPoolExecutor`` per stage whose
workers are killed with SIGTERM at the stage's end, each node's code run in a fresh
``python`` child by the Interpreter, LLM calls over HTTP to a stub with ``--llm-latency``)
bare and under ``otel-ai run``, alternating, ``--rounds`` times each, and reports:

- the wall-time ratio wrapped / bare (median of the per-pair ratios, and of the medians);
- the CPU seconds added per node: (user + sys of the whole process tree, wrapped - bare)
  / nodes, from ``getrusage(RUSAGE_CHILDREN)`` (every process of the tree is waited for by
  its parent, so its time is counted; the wrapper's own time is part of the wrapped run);
- the RSS added per process: the peak RSS of each process of the tree, sampled from
  /proc every 0.2 s and grouped by role (the wrapper, the experiment's main process, pool
  workers, the interpreter's children), median per role, wrapped - bare.

``--accounting`` adds each generation's exact CPU time and minor page faults (the command,
its children, their children...; the wrapper apart) from Linux process accounting, which
counts the short-lived processes the sampling misses (root only; see
``benchmarks/accounting.py``).

Before the first round the Python sources of both sides are byte-compiled (otel_ai, this
checkout's ``examples/`` and ``tools/``, and the ``--cwd`` directory): an installed otel_ai
has its bytecode from ``pip install`` and a clone run before has its ``__pycache__``, but
where PYTHONDONTWRITEBYTECODE is set (some containers set it) every run would compile
them again, and the wrapped runs would be charged for compiling otel_ai in each process
that imports it. ``--no-compile`` leaves the sources as they are.

``--variant NAME=OPTIONS`` (repeatable) adds a run under ``otel-ai run OPTIONS`` to every
round, e.g. ``--variant "no-watch=--no-status --no-watch"`` for the directory watcher's
share. With variants, each round runs bare, wrapped and every variant in a random order
(seeded by the round), and each variant's wall ratio to the same round's bare run is
reported beside the wrapped one's, with the wrapped run's paired ratio to it.

``--command`` measures any other command the same way instead, e.g. the real
AI-Scientist-v2 search from a local clone (run offline against an OpenAI-compatible stub;
see docs/benchmarks.md)::

    python benchmarks/bench_search.py --rounds 5
    python benchmarks/bench_search.py --command "python launch_scientist_bfts.py ..." --cwd PATH_TO_CLONE

Telemetry of the wrapped runs goes to the embedded default (OTLP/JSON files in a
temporary OTEL_AI_DATA_DIR), whose span count is checked after each wrapped round.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import random
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from otel_ai import semconv
from otel_ai.read import load_directory

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accounting import ProcessAccounting, by_depth, read_records  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "simulated_bfts.py"


class TreeSampler:
    """Peak RSS (kB) of every process below ``root``, by pid, with its command line."""

    def __init__(self, root: int, interval: float = 0.2) -> None:
        self.root = root
        self.interval = interval
        self.peak: dict[int, int] = {}
        self.cmdline: dict[int, str] = {}
        self.parent: dict[int, int] = {}
        self.cpu: dict[int, float] = {}  # user + sys seconds, last seen
        self._tick = os.sysconf("SC_CLK_TCK")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        parents: dict[int, int] = {}
        stats: dict[int, bytes] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    stat = handle.read()
                fields = stat[stat.rindex(b")") + 2 :].split()
                parents[int(entry)] = int(fields[1])
                stats[int(entry)] = fields
            except (OSError, ValueError):
                continue
        tree = {self.root}
        changed = True
        while changed:
            changed = False
            for pid, ppid in parents.items():
                if ppid in tree and pid not in tree:
                    tree.add(pid)
                    changed = True
        for pid in tree:
            try:
                with open(f"/proc/{pid}/status") as handle:
                    rss = next((int(line.split()[1]) for line in handle if line.startswith("VmRSS:")), 0)
                if pid not in self.cmdline:
                    with open(f"/proc/{pid}/cmdline", "rb") as handle:
                        self.cmdline[pid] = handle.read().replace(b"\0", b" ").decode(errors="replace")
                    self.parent[pid] = parents.get(pid, 0)
            except OSError:
                continue
            if rss:
                self.peak[pid] = max(self.peak.get(pid, 0), rss)
                fields = stats[pid]
                self.cpu[pid] = (int(fields[11]) + int(fields[12])) / self._tick

    def role(self, pid: int) -> str:
        line = self.cmdline.get(pid, "")
        if "otel-ai run" in line or "otel_ai run" in line:
            return "wrapper"
        if "runfile.py" in line or line.rstrip().endswith(".py") and "/workspaces/" in line:
            return "interpreter child"
        if "try_upstream_search.py" in line:
            return "harness"  # runs the real search as its child, which is "main"
        if self.parent.get(pid) in self.peak and (
            "multiprocessing" in line or self.cmdline.get(self.parent[pid]) == line
        ):
            return "pool worker"
        return "main"

    def cpu_by_role(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, seconds in self.cpu.items():
            out[self.role(pid)] = out.get(self.role(pid), 0.0) + seconds
        return out

    def by_role(self) -> dict[str, list[int]]:
        roles: dict[str, list[int]] = {}
        for pid, rss in self.peak.items():
            role = self.role(pid)
            roles.setdefault(role, []).append(rss)
        return roles


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(
    command: list[str], cwd: Path, env: dict[str, str], accounting: Path | None = None, wrapped: bool = False
) -> dict[str, Any]:
    if accounting is not None:
        with ProcessAccounting(accounting):
            result = run_once(command, cwd, env)
        generations = by_depth(read_records(accounting), result["pid"])
        # by generation below the command (0: the command itself); the wrapper apart
        result["generations"] = {
            ("wrapper" if wrapped and depth == 0 else depth - 1 if wrapped else depth): totals
            for depth, totals in generations.items()
        }
        return result
    cpu_before = _children_cpu()
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with TreeSampler(process.pid) as sampler:
        out, err = process.communicate()
    wall = time.perf_counter() - started
    cpu = _children_cpu() - cpu_before
    if process.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed ({process.returncode}):\n{err.decode()[-3000:]}")
    match = re.search(rb"search done: \d+ stages, (\d+) nodes", out)
    for line in re.findall(
        rb"^(?:check|note): .*$", out, re.MULTILINE
    ):  # the command's own check of its telemetry
        print(f"  {line.decode(errors='replace')}", file=sys.stderr, flush=True)
    return {
        "pid": process.pid,
        "wall": wall,
        "cpu": cpu,
        "nodes": int(match.group(1)) if match else None,
        "rss": sampler.by_role(),
        "cpu_roles": sampler.cpu_by_role(),
    }


def _count_spans(directory: Path) -> tuple[int, int]:
    """(spans, ``ai.node`` spans) in the OTLP/JSON files of a wrapped run, read after its
    wall time was taken."""
    spans = load_directory(directory).spans
    return len(spans), sum(1 for s in spans if s.name.startswith(semconv.SPAN_NODE + " "))


def byte_compile(directories: list[Path]) -> list[str]:
    """Byte-compile the ``.py`` files under ``directories`` (as ``pip install`` does for an
    installed package, and as a first import does where bytecode may be written); the
    directories that failed to compile completely."""
    failed = []
    for directory in directories:
        if directory.is_dir() and not compileall.compile_dir(directory, quiet=1, workers=0):
            failed.append(str(directory))
    return failed


def median_interval(values: list[float], *, resamples: int = 10_000, seed: int = 1) -> tuple[float, float]:
    """A 95 % percentile-bootstrap interval of the median of ``values`` (the pairs' ratios:
    on a shared machine one sitting's median alone says little about the next)."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def parse_variants(specs: list[str], parser: argparse.ArgumentParser) -> dict[str, str]:
    """``NAME=OPTIONS`` specs: {name: the options of otel-ai run}."""
    variants: dict[str, str] = {}
    for spec in specs:
        name, sep, options = spec.partition("=")
        name = name.strip()
        if not sep or not name or name in ("bare", "wrapped") or name in variants:
            parser.error(f"--variant {spec!r}: expected NAME=OPTIONS with a new NAME (not bare or wrapped)")
        variants[name] = options
    return variants


def round_order(round_: int, wrapped_modes: list[str]) -> list[str]:
    """The runs of one round: bare and wrapped alternating who goes first, or, with
    variants, every mode in an order shuffled by the round (no mode always first)."""
    if wrapped_modes == ["wrapped"]:
        return ["bare", "wrapped"] if round_ % 2 == 0 else ["wrapped", "bare"]
    order = ["bare", *wrapped_modes]
    random.Random(round_).shuffle(order)
    return order


def report_variant(
    name: str,
    options: str,
    bare: list[dict[str, Any]],
    wrapped: list[dict[str, Any]],
    runs: list[dict[str, Any]],
) -> None:
    """A variant's wall ratio to the same round's bare run, and the wrapped run's to it."""
    to_bare = [v["wall"] / b["wall"] for b, v in zip(bare, runs, strict=False)]
    paired = [w["wall"] / v["wall"] for w, v in zip(wrapped, runs, strict=False)]
    line = f"variant {name} (otel-ai run {options}): median of pairs {statistics.median(to_bare):.3f}x"
    if len(to_bare) >= 4:
        low, high = median_interval(to_bare)
        line += f" ({low:.3f}x-{high:.3f}x)"
    line += f"; otel-ai run / {name}, paired: {statistics.median(paired):.3f}x"
    if len(paired) >= 4:
        low, high = median_interval(paired)
        line += f" ({low:.3f}x-{high:.3f}x)"
    print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="bare/wrapped pairs")
    parser.add_argument(
        "--llm-latency", type=float, default=0.05, help="seconds per LLM answer (simulated search)"
    )
    parser.add_argument("--max-iters", type=int, default=4, help="nodes per stage (simulated search)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--start-method", choices=("fork", "spawn"), default="fork")
    parser.add_argument(
        "--command", default=None, help="measure this command instead of the simulated search"
    )
    parser.add_argument("--cwd", type=Path, default=None, help="where --command runs")
    parser.add_argument("--otel-ai-options", default="--no-status", help="options of otel-ai run")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=OPTIONS",
        help="also run under otel-ai run OPTIONS in every round (repeatable; see above)",
    )
    parser.add_argument(
        "--accounting",
        action="store_true",
        help="exact CPU and page faults per generation of processes (Linux process accounting, root)",
    )
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="leave the sources as they are (see above: by default both sides are byte-compiled first)",
    )
    args = parser.parse_args(argv)
    variants = parse_variants(args.variant, parser)

    if not args.no_compile:
        import otel_ai

        sources = [Path(otel_ai.__file__).parent, ROOT / "examples", ROOT / "tools"]
        sources += [args.cwd] if args.cwd is not None else []
        for directory in byte_compile(sources):
            print(f"note: not every source under {directory} compiles", file=sys.stderr)

    tmp = Path(tempfile.mkdtemp(prefix="bench-search-"))
    base_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACEPARENT", "TRACESTATE"))
    }
    options = {"wrapped": args.otel_ai_options, **variants}
    results: dict[str, list[dict[str, Any]]] = {"bare": [], **{mode: [] for mode in options}}
    spans: dict[str, list[tuple[int, int]]] = {mode: [] for mode in options}
    for round_ in range(args.rounds):
        order = round_order(round_, list(options))
        for mode in order:
            workdir = tmp / f"{mode}-{round_}"
            workdir.mkdir()
            if args.command:
                command = shlex.split(args.command)
                cwd = args.cwd or workdir
            else:
                command = [
                    sys.executable,
                    str(EXAMPLE),
                    "--workdir",
                    str(workdir / "work"),
                    "--llm-latency",
                    str(args.llm_latency),
                    "--max-iters",
                    str(args.max_iters),
                    "--workers",
                    str(args.workers),
                    "--start-method",
                    args.start_method,
                ]
                cwd = workdir
            env = dict(base_env, OTEL_AI_DATA_DIR=str(workdir / "telemetry"))
            if mode != "bare":
                command = [
                    sys.executable,
                    "-m",
                    "otel_ai",
                    "run",
                    *shlex.split(options[mode]),
                    "--",
                    *command,
                ]
            accounting = tmp / "accounting" if args.accounting else None
            result = run_once(command, cwd, env, accounting, wrapped=mode != "bare")
            results[mode].append(result)
            if mode != "bare":
                spans[mode].append(_count_spans(workdir / "telemetry"))
                if result["nodes"] and spans[mode][-1][1] < result["nodes"]:
                    print(
                        f"  LOST ({mode}): {spans[mode][-1][1]} node spans for {result['nodes']} nodes",
                        file=sys.stderr,
                    )
            print(
                f"round {round_ + 1} {mode:7s} {result['wall']:6.2f} s wall {result['cpu']:6.2f} s cpu "
                f"nodes {result['nodes']}",
                file=sys.stderr,
                flush=True,
            )

    bare, wrapped = results["bare"], results["wrapped"]
    ratios = [w["wall"] / b["wall"] for b, w in zip(bare, wrapped, strict=False)]
    med_bare = statistics.median(r["wall"] for r in bare)
    med_wrapped = statistics.median(r["wall"] for r in wrapped)
    nodes = (
        statistics.median(r["nodes"] for r in bare + wrapped if r["nodes"])
        if any(r["nodes"] for r in bare)
        else None
    )
    cpu_added = statistics.median(r["cpu"] for r in wrapped) - statistics.median(r["cpu"] for r in bare)
    load = os.getloadavg()
    what = args.command or (
        f"examples/simulated_bfts.py --llm-latency {args.llm_latency} --max-iters {args.max_iters} "
        f"--workers {args.workers} --start-method {args.start_method}"
    )
    print(
        f"# bench_search  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {platform.machine()} {os.cpu_count()} CPUs  "
        f"python {platform.python_version()}  load {load[0]:.1f}/{load[1]:.1f}"
    )
    how = f"with {', '.join(variants)}, in a random order" if variants else "alternating"
    print(f"command: {what}; {args.rounds} bare/wrapped pairs, {how}; nodes per run: {nodes}")
    print(
        "sources: as they were"
        if args.no_compile
        else "sources: byte-compiled first (otel_ai, examples/, tools/" + (", --cwd)" if args.cwd else ")")
    )
    walls = {mode: ", ".join(f"{r['wall']:.2f}" for r in rows) for mode, rows in results.items()}
    print(f"wall bare         median {med_bare:.2f} s  ({walls['bare']})")
    for name in variants:
        print(
            f"wall {name:12s} median {statistics.median(r['wall'] for r in results[name]):.2f} s  ({walls[name]})"
        )
    print(f"wall otel-ai run  median {med_wrapped:.2f} s  ({walls['wrapped']})")
    print(
        f"wall ratio: median of pairs {statistics.median(ratios):.3f}x, of medians {med_wrapped / med_bare:.3f}x "
        f"(pairs: {', '.join(f'{r:.2f}' for r in ratios)})"
    )
    if len(ratios) >= 4:
        low, high = median_interval(ratios)
        print(
            f"  the median of pairs lies in {low:.3f}x-{high:.3f}x (95 %, bootstrap over the pairs): "
            "a target inside it is neither shown met nor missed"
        )
    for name in variants:
        report_variant(name, variants[name], bare, wrapped, results[name])
    if nodes:
        print(f"CPU added: {cpu_added:.2f} s per run, {cpu_added / nodes * 1000:.1f} ms per node")
    print("peak RSS by role (median over processes and rounds, MB): role | bare | wrapped | added")
    roles = sorted({role for r in bare + wrapped for role in r["rss"]})
    for role in roles:
        b = [v for r in bare for v in r["rss"].get(role, [])]
        w = [v for r in wrapped for v in r["rss"].get(role, [])]
        mb = statistics.median(b) / 1024 if b else 0.0
        mw = statistics.median(w) / 1024 if w else 0.0
        print(f"  {role:18s} | {mb:7.1f} | {mw:7.1f} | {mw - mb:+7.1f}   ({len(b)}/{len(w)} processes)")
    print(
        "CPU by role (median per run, s, sampled: processes shorter than 0.2 s are missed): role | bare | wrapped"
    )
    for role in roles:
        b = statistics.median(r["cpu_roles"].get(role, 0.0) for r in bare)
        w = statistics.median(r["cpu_roles"].get(role, 0.0) for r in wrapped)
        print(f"  {role:18s} | {b:6.2f} | {w:6.2f}")
    if args.accounting:
        print(
            "exact CPU (s) and minor faults by generation (process accounting; median per run; "
            "0 is the command, 1 its children...): generation | bare | wrapped | processes"
        )
        keys = sorted(
            {k for r in bare + wrapped for k in r["generations"]}, key=lambda k: (isinstance(k, str), k)
        )
        for key in keys:
            cells = []
            for rows in (bare, wrapped):
                totals = [r["generations"].get(key, (0.0, 0, 0)) for r in rows]
                cells.append(
                    f"{statistics.median(t[0] for t in totals):6.2f} s {statistics.median(t[1] for t in totals):8.0f}"
                )
            count = statistics.median(r["generations"].get(key, (0.0, 0, 0))[2] for r in wrapped)
            print(f"  {key!s:8s} | {cells[0]} | {cells[1]} | {count:g}")
    print(f"spans exported per wrapped run: {[n for n, _ in spans['wrapped']]}")
    nodes_seen = [r["nodes"] for r in wrapped]
    print(
        f"node spans per wrapped run: {[n for _, n in spans['wrapped']]} (nodes the search made: {nodes_seen})"
    )
    for name in variants:
        made = [r["nodes"] for r in results[name]]
        print(f"node spans per {name} run: {[n for _, n in spans[name]]} (nodes the search made: {made})")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
