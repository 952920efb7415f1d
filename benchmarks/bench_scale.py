"""Does an event cost more as a run grows? Early vs late, every front door.

One process, otel_ai's own pipeline with discarding span and log exporters (as
``bench_emit.py --exporter noop``). Two runs side by side: "early" (one open stage,
nothing else) and "late" (``--nodes`` ended nodes, the default 10,000, a quarter in an
earlier ended stage, the rest in the open stage, as a long search leaves them). Each
event below is timed ``--calls`` times per run (per-call ``perf_counter_ns``, median),
the two runs alternating in ``--rounds`` rounds so the machine's load falls on both alike.

The events, through each front door, called as the seed's pod worker calls them (no span
of the run current on the calling thread):

- ``EventEmitter``: ``log``, ``artifact_detected``, ``artifact_registered``,
  ``stage_progress``, ``metric_computed``, ``run_heartbeat``, and one node's
  ``node_created`` + ``node_executing`` + ``node_completed`` (timed as one);
- ``event_callback`` (AI-Scientist-v2's dict events): the same seven;
- the context managers (``Run``/``Stage``/``Node``): ``run.log``,
  ``run.artifact_detected``, ``stage.progress``, one node's ``stage.node`` +
  ``executing`` + ``completed``.

Then the instrumentor: ``--instrumented-nodes`` (default 5,000) pool tasks of a simulated
tree search are run through its task hook (``ParallelAgent._process_node_wrapper`` as a
worker runs it: the parent's span looked up in the ledger, the node born, five LLM calls
recorded in the ledger, the interpreter run, the node completed); the per-node cost of
the first and the last ``--window`` tasks is compared.

Then the memory an ended node keeps (``tracemalloc``, over ``--memory-nodes`` nodes).

Last, the watcher of ``otel-ai run``: one save of its artifact state (what a restarted
run needs to upload nothing twice), as the watcher makes it at most once a second while
artifacts change: ten new artifacts since the last save, in a run that knows 100 of them
("early") and one that knows ``--artifacts`` (default 20,000: every plot of thousands of
nodes, and the matching files there when watching started). Timed ``--state-saves`` times
each, alternating, on the real files (fsync included). And one save of its tailing
positions (where a restarted run goes on reading each log file), after one line was
delivered from one of 10 tailed files ("early") or of ``--log-files`` (default 5,000).

    python benchmarks/bench_scale.py            # ~1-2 min
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STAGE = "2_baseline_tuning"
EARLIER = ("1_initial_implementation_1_preliminary",)


def _configure(directory: Path) -> Any:
    from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    import otel_ai
    from otel_ai.export import providers

    class DiscardSpans(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class DiscardLogs(LogRecordExporter):
        def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
            return LogRecordExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    build = providers._exporters

    def discarding(settings: Any, *args: Any) -> Any:
        _span, _log, metric = build(settings, *args)
        return DiscardSpans(), DiscardLogs(), metric

    providers._exporters = discarding  # type: ignore[assignment]  # benchmark-only seam
    otel_ai.configure(data_dir=str(directory / "otel_ai"), service_name="bench-scale")
    return otel_ai


# --- the front doors --------------------------------------------------------------------
def _emitter_events(emitter: Any, run_id: str) -> dict[str, Callable[[int], None]]:
    def node(i: int) -> None:
        nid = f"probe-e-{i}-{time.perf_counter_ns()}"
        emitter.node_created(run_id, STAGE, nid, None, "draft")
        emitter.node_executing(run_id, STAGE, nid)
        emitter.node_completed(run_id, STAGE, nid, False, 0.5, 1.0)

    return {
        "log": lambda i: emitter.log(run_id, f"epoch {i}: loss 0.123", "info", "stdout"),
        "artifact_detected": lambda i: emitter.artifact_detected(run_id, f"figures/f{i}.png", "figure", 1234),
        "artifact_registered": lambda i: emitter.artifact_registered(
            run_id, f"runs/x/f{i}.png", 1234, "ab" * 32, "image/png", "figure"
        ),
        "stage_progress": lambda i: emitter.stage_progress(run_id, STAGE, 0.5, i, 100, 3, 1, 4, 0.9, 12.0),
        "metric_computed": lambda i: emitter.metric_computed(run_id, STAGE, "val_loss", 0.25),
        "run_heartbeat": lambda i: emitter.run_heartbeat(run_id),
        "node (3 events)": node,
    }


def _callback_events(callback: Any, run_id: str) -> dict[str, Callable[[int], None]]:
    def node(i: int) -> None:
        nid = f"probe-c-{i}-{time.perf_counter_ns()}"
        callback("ai.node.created", {"run_id": run_id, "stage": STAGE, "node_id": nid, "kind": "draft"})
        callback("ai.node.executing", {"run_id": run_id, "stage": STAGE, "node_id": nid})
        callback(
            "ai.node.completed",
            {"run_id": run_id, "stage": STAGE, "node_id": nid, "is_buggy": False, "metric": 0.5},
        )

    return {
        "log": lambda i: callback(
            "ai.run.log", {"run_id": run_id, "message": f"epoch {i}: loss 0.123", "level": "info"}
        ),
        "artifact_detected": lambda i: callback(
            "ai.artifact.detected", {"run_id": run_id, "path": f"figures/f{i}.png", "type": "figure"}
        ),
        "artifact_registered": lambda i: callback(
            "ai.artifact.registered", {"run_id": run_id, "key": f"runs/x/f{i}.png", "bytes": 1234}
        ),
        "stage_progress": lambda i: callback(
            "ai.run.stage_progress", {"run_id": run_id, "stage": STAGE, "iteration": i, "max_iterations": 100}
        ),
        "metric_computed": lambda i: callback(
            "ai.run.stage_metric", {"run_id": run_id, "stage": STAGE, "name": "val_loss", "value": 0.25}
        ),
        "run_heartbeat": lambda i: callback("ai.run.heartbeat", {"run_id": run_id}),
        "node (3 events)": node,
    }


def _model_events(run: Any, stage: Any) -> dict[str, Callable[[int], None]]:
    def node(i: int) -> None:
        n = stage.node(f"probe-m-{i}-{time.perf_counter_ns()}", kind="draft")
        n.executing()
        n.completed(False, 0.5, 1.0)

    return {
        "log": lambda i: run.log(f"epoch {i}: loss 0.123", "info", "stdout"),
        "artifact_detected": lambda i: run.artifact_detected(f"figures/f{i}.png", "figure", 1234),
        "stage_progress": lambda i: stage.progress(i, 100, 3, 1, 4, 0.9),
        "node (3 events)": node,
    }


def _grow(emitter: Any, run_id: str, nodes: int) -> None:
    """``nodes`` ended nodes: a quarter in an earlier (ended) stage, the rest in STAGE."""
    early = nodes // 4
    for name in EARLIER:
        emitter.stage_started(run_id, name)
        for i in range(early):
            nid = f"old-{name}-{i}"
            emitter.node_created(run_id, name, nid, f"old-{name}-{i - 1}" if i else None, "improve")
            emitter.node_executing(run_id, name, nid)
            emitter.node_completed(run_id, name, nid, i % 4 == 0, 0.5, 1.0)
        emitter.stage_completed(run_id, name)
    emitter.stage_started(run_id, STAGE, "benchmark stage")
    for i in range(nodes - early * len(EARLIER)):
        nid = f"grown-{i}"
        emitter.node_created(run_id, STAGE, nid, f"grown-{i - 1}" if i else None, "improve")
        emitter.node_executing(run_id, STAGE, nid)
        emitter.node_completed(run_id, STAGE, nid, i % 4 == 0, 0.5, 1.0)


def bench_front_doors(args: argparse.Namespace, otel_ai: Any) -> list[tuple[str, str, float, float]]:
    """Two runs side by side in one process: "early" (one open stage, nothing else) and
    "late" (``--nodes`` ended nodes); their events alternate, round after round, so the
    machine's load falls on both alike."""
    from otel_ai.model.registry import registry

    emitter = otel_ai.EventEmitter("http://unused.invalid", "bench-pod")
    runs = {"early": "bench-scale-early", "late": "bench-scale-late"}
    doors: dict[str, dict[tuple[str, str], Callable[[int], None]]] = {}
    for phase, run_id in runs.items():
        emitter.run_started(run_id, "bench-pod", "none", "local")
        if phase == "late":
            started = time.perf_counter()
            _grow(emitter, run_id, args.nodes)
            otel_ai.force_flush(60)
            print(f"grew {args.nodes} ended nodes in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        else:
            emitter.stage_started(run_id, STAGE, "benchmark stage")
        run = registry.get(run_id)
        table: dict[tuple[str, str], Callable[[int], None]] = {}
        for door, events in (
            ("EventEmitter", _emitter_events(emitter, run_id)),
            ("event_callback", _callback_events(otel_ai.event_callback, run_id)),
            ("Run/Stage/Node", _model_events(run, run.stages[STAGE])),
        ):
            for name, fn in events.items():
                table[(door, name)] = fn
        doors[phase] = table

    samples: dict[tuple[str, str, str], list[float]] = {}
    per_round = max(1, args.calls // args.rounds)
    clock = time.perf_counter_ns
    for round_ in range(args.rounds):
        order = ("early", "late") if round_ % 2 == 0 else ("late", "early")
        for key in doors["early"]:
            for phase in order:
                fn = doors[phase][key]
                for i in range(args.warmup // args.rounds):
                    fn(i)
                out = samples.setdefault((phase, *key), [])
                for i in range(per_round):
                    start = clock()
                    fn(i)
                    out.append((clock() - start) / 1000.0)
        otel_ai.force_flush(60)
        gc.collect()
    for run_id in runs.values():
        emitter.stage_completed(run_id, STAGE)
        emitter.run_completed(run_id)
    otel_ai.force_flush(60)
    return [
        (
            door,
            name,
            statistics.median(samples[("early", door, name)]),
            statistics.median(samples[("late", door, name)]),
        )
        for door, name in doors["early"]
    ]


# --- the instrumentor -------------------------------------------------------------------
class _Child:
    """AI-Scientist's Node, as much of it as the instrumentor reads."""

    def __init__(self, node_id: str, parent: Any, code: str) -> None:
        self.id = node_id
        self.parent = parent
        self.code = code
        self.parse_metrics_code = None
        self.metric = 0.5
        self.is_buggy = False
        self.exec_time = 1.0
        self.exc_type = None


class _Result:
    exc_type = None
    exec_time = 1.0


def bench_instrumentor(args: argparse.Namespace, otel_ai: Any) -> tuple[list[float], int]:
    from opentelemetry import context as context_api
    from opentelemetry import trace as trace_api

    from otel_ai.instrumentation import _search
    from otel_ai.model import ledger
    from otel_ai.model.spans import Run

    run = Run("bench-instrumented-run")
    stage = run.stage(STAGE)
    trace_id = run.span_context.trace_id
    make = _search.node_maker("improve")
    execute = _search.interpreter_run
    counter = [0]

    def _improve(parent: Any) -> _Child:
        counter[0] += 1
        return _Child(f"inode-{counter[0]}", parent, f"print({counter[0]})\n")

    def _interpreter_run(code: str) -> _Result:
        return _Result()

    def _process_node_wrapper(
        node_data: Any,
        task_desc: Any,
        cfg: Any,
        stage_name: Any = None,
        new_ablation_idea: Any = None,
        new_hyperparam_idea: Any = None,
        seed_eval: bool = False,
    ) -> dict[str, Any]:
        parent = node_data.get("id") if node_data else None
        child = make(_improve, None, (parent,), {})
        for _ in range(5):  # the LLM calls of a node, as the LLM hook records them
            ledger.append(
                trace_id,
                {"k": "llm", "s": f"{stage.span_context.span_id:016x}", "n": None, "i": 1200, "o": 300},
            )
        execute(_interpreter_run, None, (child.code,), {})
        return {"id": child.id, "metric": 0.5, "is_buggy": False, "exec_time": 1.0}

    token = context_api.attach(trace_api.set_span_in_context(stage.span))  # as the pool task carries it
    samples: list[float] = []
    parent: dict[str, Any] | None = None
    try:
        for i in range(args.instrumented_nodes):
            start = time.perf_counter_ns()
            result = _search.process_node_task(
                _process_node_wrapper, None, (parent, "task", None), {"stage_name": STAGE}
            )
            samples.append((time.perf_counter_ns() - start) / 1000.0)
            parent = {"id": result["id"], "is_buggy": False} if i % 3 else None
    finally:
        context_api.detach(token)
    stage.complete()
    run.complete()
    otel_ai.force_flush(60)
    path = ledger.path_for(otel_ai.export.providers.get_pipeline().settings.data_dir, trace_id)
    lines = sum(1 for _ in open(path, "rb"))
    return samples, lines


# --- memory per ended node --------------------------------------------------------------
def bench_memory(args: argparse.Namespace, otel_ai: Any) -> float:
    emitter = otel_ai.EventEmitter("http://unused.invalid", "bench-pod")
    run_id = "bench-memory-run"
    emitter.run_started(run_id, "bench-pod")
    emitter.stage_started(run_id, STAGE)

    def nodes(prefix: str, count: int) -> None:
        for i in range(count):
            nid = f"{prefix}-{i}"
            emitter.node_created(run_id, STAGE, nid, f"{prefix}-{i - 1}" if i else None, "improve")
            emitter.node_code_generated(run_id, STAGE, nid, 2000, None)
            emitter.node_executing(run_id, STAGE, nid)
            emitter.node_completed(run_id, STAGE, nid, False, 0.5, 1.0)
        otel_ai.force_flush(60)

    nodes("warm", 200)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    nodes("mem", args.memory_nodes)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    emitter.stage_completed(run_id, STAGE)
    emitter.run_completed(run_id)
    return grown / args.memory_nodes


# --- the watcher's artifact state ------------------------------------------------------
def bench_watch_state(args: argparse.Namespace, directory: Path) -> tuple[float, float]:
    from otel_ai.watch.detector import ArtifactDetector
    from otel_ai.watch.events import WatchEvents
    from otel_ai.watch.state import WatchState

    directory.mkdir(parents=True, exist_ok=True)
    st = os.stat(directory)
    phases = {}
    for name, known in (("early", 100), ("late", args.artifacts)):
        detector = ArtifactDetector(
            WatchEvents(None), store=None, settle_s=1.0, workers=1, recheck=lambda p: None
        )
        state = WatchState(directory / name, f"bench-{name}", str(directory))
        state.load_artifacts()
        for i in range(known):
            detector.baseline(f"experiments/node_{i:06d}/plot_{i}.png", st)
        state.save_artifacts(detector.take_changes())  # the first save writes them all
        phases[name] = (detector, state, [0], [])
    for _ in range(args.state_saves):
        for detector, state, counter, samples in phases.values():
            for _ in range(10):
                counter[0] += 1
                detector.baseline(f"experiments/new_{counter[0]:06d}/plot.png", st)
            start = time.perf_counter_ns()
            state.save_artifacts(detector.take_changes())
            samples.append((time.perf_counter_ns() - start) / 1000.0)
    for detector, *_ in phases.values():
        detector.finish(time.monotonic() + 5)
    return statistics.median(phases["early"][3]), statistics.median(phases["late"][3])


def bench_log_positions(args: argparse.Namespace, directory: Path) -> tuple[float, float]:
    """One save of the tailing positions (``save_positions``, as the watcher calls it)
    after one of the tailed files got a line, with 10 and ``--log-files`` files tailed."""
    from otel_ai.watch.roots import Root, save_positions
    from otel_ai.watch.state import WatchState
    from otel_ai.watch.tailer import LogTailer, TailSource

    class Discard:
        def room(self) -> int:
            return 1 << 30

        def deliver(self, source: Any, lines: Any) -> None:
            pass

    phases = {}
    for name, files in (("early", 10), ("late", args.log_files)):
        root_dir = directory / name / "experiment"
        root_dir.mkdir(parents=True)
        root = Root(str(root_dir), "")
        root.state = WatchState(directory / name / "state", f"bench-{name}", str(root_dir))
        root.state.load_logs()
        tailer = LogTailer(Discard(), max_open_files=64)
        paths = []
        for i in range(files):
            path = root_dir / f"node_{i:05d}.log"
            path.write_text("started\n")
            tailer.track(TailSource(str(path), path.name, str(root_dir)), from_start=True)
            paths.append(path)
        save_positions([root], tailer, None)  # the first save writes them all
        phases[name] = (root, tailer, paths, [])
    for turn in range(args.state_saves):
        for root, tailer, paths, samples in phases.values():
            path = paths[turn % len(paths)]
            with open(path, "a") as handle:
                handle.write(f"line {turn}\n")
            tailer.changed(TailSource(str(path), path.name, root.path))
            start = time.perf_counter_ns()
            save_positions([root], tailer, None)
            samples.append((time.perf_counter_ns() - start) / 1000.0)
    for _root, tailer, _paths, _samples in phases.values():
        tailer.close()
    return statistics.median(phases["early"][3]), statistics.median(phases["late"][3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000, help="ended nodes between early and late")
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per event and phase")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10, help="early and late alternate this many times")
    parser.add_argument("--instrumented-nodes", type=int, default=5000)
    parser.add_argument("--window", type=int, default=500, help="tasks compared at the start and the end")
    parser.add_argument("--memory-nodes", type=int, default=2000)
    parser.add_argument("--artifacts", type=int, default=20_000, help="artifacts a late run's watcher knows")
    parser.add_argument("--state-saves", type=int, default=300, help="timed saves of the watcher's state")
    parser.add_argument("--log-files", type=int, default=5000, help="log files a late run's watcher tails")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        otel_ai = _configure(Path(tmp))
        importlib.import_module("otel_ai.export.providers")  # for bench_instrumentor's data dir

        rows = bench_front_doors(args, otel_ai)
        samples, ledger_lines = bench_instrumentor(args, otel_ai)
        per_node = bench_memory(args, otel_ai)
        state_early, state_late = bench_watch_state(args, Path(tmp) / "watch-state")
        logs_early, logs_late = bench_log_positions(args, Path(tmp) / "log-positions")
        otel_ai.shutdown(timeout=30)

    load = os.getloadavg()
    print(
        f"# bench_scale  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {platform.machine()} "
        f"{os.cpu_count()} CPUs  python {platform.python_version()}  load {load[0]:.1f}/{load[1]:.1f}"
    )
    print(
        f"\nper call, median over {args.calls} calls in {args.rounds} alternating rounds; "
        f"late = a run with {args.nodes} ended nodes\n"
    )
    print("| front door | event | early us | late us | late/early |")
    print("|---|---|---:|---:|---:|")
    for door, name, early, late in rows:
        print(f"| {door} | {name} | {early:.1f} | {late:.1f} | {late / early:.2f}x |")
    window = args.window
    first, last = statistics.median(samples[:window]), statistics.median(samples[-window:])
    print(
        f"\ninstrumentor, per pool task (median), {args.instrumented_nodes} nodes, ledger {ledger_lines} lines at the end:"
    )
    print(f"| first {window} us | last {window} us | last/first |")
    print("|---:|---:|---:|")
    print(f"| {first:.1f} | {last:.1f} | {last / first:.2f}x |")
    print(f"\nmemory kept per ended node: {per_node:.0f} bytes (tracemalloc, {args.memory_nodes} nodes)")
    print(f"\nthe watcher's artifact state, one save of 10 new artifacts (median of {args.state_saves}):")
    print(f"| 100 known us | {args.artifacts} known us | late/early |")
    print("|---:|---:|---:|")
    print(f"| {state_early:.1f} | {state_late:.1f} | {state_late / state_early:.2f}x |")
    print(
        f"\nthe watcher's tailing positions, one save after a line in one file (median of {args.state_saves}):"
    )
    print(f"| 10 files tailed us | {args.log_files} files tailed us | late/early |")
    print("|---:|---:|---:|")
    print(f"| {logs_early:.1f} | {logs_late:.1f} | {logs_late / logs_early:.2f}x |")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "front_doors": [
                        {"door": d, "event": n, "early_us": e, "late_us": late} for d, n, e, late in rows
                    ],
                    "instrumentor": {"first_us": first, "last_us": last, "ledger_lines": ledger_lines},
                    "bytes_per_ended_node": per_node,
                    "watch_state_save_us": {
                        "early": state_early,
                        "late": state_late,
                        "known": args.artifacts,
                    },
                    "log_positions_save_us": {
                        "early": logs_early,
                        "late": logs_late,
                        "files": args.log_files,
                    },
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
