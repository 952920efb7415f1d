"""``otel-ai show [RUN_ID | PATH]``: a run's tree, read back from its telemetry files.

Stages with durations and node counts, each stage's search tree (from
``ai.node.parent_id``) with buggy nodes and the best node marked, paper and review,
artifacts, and the failure with its stage. Colour on a terminal, plain text otherwise.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from .. import semconv
from ..config import resolve
from ..read.runview import NodeView, RunView, StageView
from ..read.sources import RunNotFound, find_run
from .sources import add_source_arguments, links_for, service_name

_SPARK = "▁▂▃▄▅▆▇█"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "show",
        help="print a run's tree: stages, nodes, best and buggy nodes, artifacts, failure",
        description="Print the tree of a run. With no argument: the latest run in OTEL_AI_DATA_DIR.",
    )
    parser.add_argument("target", nargs="?", help="a run id, or a directory or file of OTLP/JSON lines")
    parser.add_argument(
        "--data-dir", help="where to look for runs (default: OTEL_AI_DATA_DIR or ./otel-ai-runs)"
    )
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    add_source_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir) if args.data_dir else resolve().data_dir
    try:
        view, runs = find_run(args.target, data_dir, jaeger=args.jaeger, service=service_name(args))
    except RunNotFound as exc:
        print(f"otel-ai show: {exc}", file=sys.stderr)
        return 1
    render(view, sys.stdout, color=args.color, other_runs=[r for r in runs if r is not view])
    for link in links_for(view, args):
        print(f"{link.label}: {link.url}")
    return 0


def render(
    view: RunView, out: TextIO, *, color: str = "auto", other_runs: list[RunView] | None = None
) -> None:
    force = {"always": True, "never": False}.get(color)
    terminal = force if force is not None else out.isatty()
    console = Console(
        file=out,
        force_terminal=force,
        no_color=color == "never" or not terminal,
        highlight=False,
        # a terminal wraps at its width; a pipe or file gets whole lines, for grep
        width=None if terminal else 4096,
    )
    console.print(run_tree(view))
    if other_runs:
        recent = ", ".join(r.run_id for r in other_runs[-5:])
        console.print(Text(f"({len(other_runs)} other run(s) here: {recent})", style="dim"))


_OUTCOME_STYLE = {
    "completed": "bold green",
    "failed": "bold red",
    "canceled": "bold yellow",
    "abandoned": "bold magenta",
}


def _secs(value: float | None) -> str:
    if value is None:
        return "?"
    if not math.isfinite(value):
        return f"{value}s"  # "infs", "nans": what was recorded, as recorded
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _short(node_id: str) -> str:
    return node_id[:8] if len(node_id) > 12 else node_id


def run_tree(view: RunView) -> Tree:
    resource = view.resource
    head = Text()
    head.append(f"Run {view.run_id}", style="bold")
    head.append("  ")
    head.append(view.outcome, style=_OUTCOME_STYLE.get(view.outcome, "bold"))
    head.append(f"  {_secs(view.duration_s)}")
    head.append(f"  trace {view.trace_id}", style="dim")
    # what the run said about itself beats what the reporting process's resource says
    run_attrs = view.span.attributes if view.span is not None else {}
    details = [
        f"service {resource.get(semconv.SERVICE_NAME, '?')}",
        f"pod {run_attrs.get(semconv.POD_ID) or resource.get(semconv.POD_ID, '?')}",
    ]
    gpu = run_attrs.get(semconv.GPU_NAME) or resource.get(semconv.GPU_NAME)
    if gpu and gpu != "unknown":
        count = resource.get(semconv.GPU_COUNT)
        details.append(f"gpu {gpu}" + (f" x{count}" if count else ""))
    head.append("\n" + "  ".join(details), style="dim")
    if view.span is None:
        head.append("\nrun span missing: the process may have died before the run ended", style="yellow")
    tree = Tree(head)
    _resources(tree, view)
    for stage in view.stages:
        _stage(tree, stage)
    if view.paper is not None:
        label = Text("Paper  ", style="bold")
        ok = view.paper.status_code != "ERROR"
        label.append("generated" if ok else "not generated", style="green" if ok else "red")
        key = view.paper.attributes.get(semconv.ARTIFACT_KEY)
        if key:
            label.append(f"  {key}")
        label.append(f"  {_secs(view.paper.duration_s)}", style="dim")
        tree.add(label)
    if view.validation is not None:
        a = view.validation.attributes
        label = Text("Review  ", style="bold")
        label.append(str(a.get(semconv.VALIDATION_MODEL, "?")))
        verdict = a.get(semconv.VALIDATION_VERDICT)
        if verdict is not None:
            label.append(
                f"  verdict {verdict}",
                style="green" if str(verdict).lower() in ("pass", "accept") else "yellow",
            )
        scores = [
            f"{k[len(semconv.VALIDATION_SCORE_PREFIX) :]}={v:g}"
            if isinstance(v, (int, float))
            else f"{k[len(semconv.VALIDATION_SCORE_PREFIX) :]}={v}"
            for k, v in sorted(a.items())
            if k.startswith(semconv.VALIDATION_SCORE_PREFIX)
        ]
        if scores:
            label.append("  " + " ".join(scores))
        tree.add(label)
    if view.artifacts:
        branch = tree.add(Text(f"Artifacts ({len(view.artifacts)})", style="bold"))
        for artifact in view.artifacts:
            text = Text(artifact.path or artifact.key or "?")
            info = [x for x in (artifact.kind, _bytes(artifact.size_bytes)) if x]
            if info:
                text.append(f"  ({', '.join(info)})", style="dim")
            if artifact.uri:
                text.append(f"  {artifact.uri}", style="cyan")
            elif artifact.event == semconv.ARTIFACT_DETECTED:
                text.append("  detected", style="dim")
            branch.add(text)
    counts = view.log_counts()
    if counts:
        tree.add(Text("Logs  " + "  ".join(f"{k} {v}" for k, v in sorted(counts.items())), style="dim"))
    if view.failure is not None:
        failure = view.failure
        text = Text("Failure", style="bold red")
        text.append(f" in stage {failure.stage or '?'}: ", style="red")
        text.append(f"{failure.error_type or '?'}: {failure.message or ''}")
        branch = tree.add(text)
        if failure.stacktrace:
            lines = failure.stacktrace.rstrip().splitlines()
            for line in lines[-8:]:
                branch.add(Text(line, style="dim red"))
    return tree


def _pct(share: float | None) -> str:
    return "?" if share is None else f"{share * 100:.0f}%"


def _resources(tree: Tree, view: RunView) -> None:
    """Peak memory, mean CPU and GPU use from the run's metrics (none: no line)."""
    usage = view.usage()
    if usage.empty:
        return
    label = Text("Resources", style="bold")
    parts = []
    if usage.memory_peak is not None:
        parts.append(f"memory peak {_bytes(usage.memory_peak)}")
    if usage.cpu_mean is not None:
        cpus = f" of {usage.cpus} CPUs" if usage.cpus else ""
        parts.append(f"cpu mean {_pct(usage.cpu_mean)}{cpus} (peak {_pct(usage.cpu_peak)})")
    if usage.processes_peak is not None:
        parts.append(f"up to {usage.processes_peak} process{'es' if usage.processes_peak != 1 else ''}")
    if parts:
        label.append("  process tree: " + ", ".join(parts))
    if usage.system_memory_peak is not None:
        limit = f" of {_bytes(usage.system_memory_limit)}" if usage.system_memory_limit else ""
        label.append(f"  machine memory peak {_pct(usage.system_memory_peak)}{limit}", style="dim")
    label.append(f"  ({usage.samples} samples)", style="dim")
    branch = tree.add(label)
    for gpu in usage.gpus:
        text = Text(f"{gpu.name or gpu.hw_id} {gpu.model or ''}".rstrip(), style="bold")
        if gpu.utilization_mean is not None:
            text.append(f"  util mean {_pct(gpu.utilization_mean)} (peak {_pct(gpu.utilization_peak)})")
        if gpu.memory_peak is not None:
            limit = f" of {_bytes(gpu.memory_limit)}" if gpu.memory_limit else ""
            text.append(f"  memory peak {_bytes(gpu.memory_peak)}{limit}")
        extra = []
        if gpu.temperature_peak is not None:
            extra.append(f"{gpu.temperature_peak:.0f} °C peak")
        if gpu.power_mean is not None:
            extra.append(f"{gpu.power_mean:.0f} W mean")
        if extra:
            text.append("  " + "  ".join(extra), style="dim")
        branch.add(text)


def _bytes(size: float | None) -> str | None:
    if size is None:
        return None
    value = float(size)
    if not math.isfinite(value):
        return f"{value} B"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return None


def _stage(tree: Tree, stage: StageView) -> None:
    good, buggy, total = stage.counts()
    label = Text()
    label.append(f"Stage {stage.name}", style="bold cyan")
    if stage.description:
        label.append(f"  {stage.description}", style="dim")
    label.append(f"\n{_secs(stage.duration_s)}  nodes {total} ({good} good, ")
    label.append(f"{buggy} buggy", style="red" if buggy else "")
    label.append(")")
    if stage.best_node_id:
        label.append(f"  best {_short(stage.best_node_id)}", style="bold green")
        if stage.best_metric:
            label.append(f" {stage.best_metric}", style="green")
    if stage.status == "ERROR":
        label.append("  ended with error", style="red")
    if len(stage.progress) > 1:
        label.append("  progress " + sparkline([p for _, p in stage.progress]), style="blue")
    branch = tree.add(label)
    for node in stage.roots:
        _node(branch, node)


def sparkline(values: list[float], width: int = 24) -> str:
    if len(values) > width:
        step = len(values) / width
        values = [values[int(i * step)] for i in range(width - 1)] + [values[-1]]
    return "".join(
        _SPARK[min(int(max(v, 0.0) * (len(_SPARK) - 1) + 0.5), len(_SPARK) - 1)] if math.isfinite(v) else "?"
        for v in values
    )


def _node(branch: Tree, node: NodeView) -> None:
    text = Text()
    if node.is_best:
        text.append("★ ", style="bold green")
    elif node.is_buggy:
        text.append("✗ ", style="red")
    elif node.is_buggy is False:
        text.append("● ", style="green")
    else:
        text.append("○ ", style="dim")
    text.append(f"{node.kind} ", style="bold" if node.is_best else "")
    text.append(_short(node.node_id), style="dim")
    if node.is_buggy:
        text.append(f"  {node.exc_type or 'buggy'}", style="red")
    elif node.metric is not None:
        text.append(f"  {node.metric}", style="bold green" if node.is_best else "")
    if node.is_best:
        text.append("  (best)", style="bold green")
    extra = []
    if node.exec_time_s is not None:
        extra.append(f"exec {_secs(node.exec_time_s)}")
    extra.append(_secs(node.duration_s))
    text.append("  " + "  ".join(extra), style="dim")
    if node.parent_stage:
        text.append(f"  ↳ from {node.parent_stage} ({_short(node.parent_id or '')})", style="dim")
    sub = branch.add(text)
    for child in node.children:
        _node(sub, child)
