"""A whole AI-scientist run in a few seconds, with no LLM and no GPU.

This is the seed pod worker's flow (run -> four tree-search stages -> plots -> paper ->
automatic review) driven through otel_ai's context managers, with the LLM calls and the
experiments replaced by a deterministic simulation and tiny sleeps. Run it, then look
at what was recorded::

    python examples/pod_worker_demo.py --run-id demo-1
    otel-ai show demo-1

    python examples/pod_worker_demo.py --fail     # dies in stage 2, the run ends failed

With no OTEL_EXPORTER_OTLP_ENDPOINT set, the telemetry lands as OTLP/JSON lines files
under OTEL_AI_DATA_DIR (default ./otel-ai-runs); with one set, it goes to that collector.

What each part of the flow emits:

- ``otel_ai.run(...)``: the ``ai.run`` root span; ``ai.run.started`` now and
  ``ai.run.completed`` (or ``ai.run.failed`` when an exception escapes) at the end.
- ``run.stage(...)``: an ``ai.stage {name}`` span per stage of AI-Scientist-v2's search.
- ``stage.node(...)``: an ``ai.node {kind}`` span per search-tree node, linked to the node
  it was derived from; ``node.executing(...)`` an ``ai.node.execute`` span per execution.
- ``stage.progress``, ``stage.metric``, ``stage.selected_best``: span events on the stage
  and log-based events (every progress update is kept in the logs).
- ``run.log``: a log record correlated to the current span; ``run.artifact_detected`` and
  ``run.artifact_registered``: span events on the current span and log-based events.
- ``run.paper()`` and ``run.validation(...)``: the writeup and review spans.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import otel_ai

# AI-Scientist-v2's four main stages: the kind of node each one grows from a good node,
# and how many nodes the demo's search creates in it (30 in all).
STAGES: list[tuple[str, str, str, int]] = [
    (
        "1_initial_implementation",
        "Get a first working implementation of the idea on a small dataset",
        "improve",
        8,
    ),
    ("2_baseline_tuning", "Tune the baseline's hyperparameters; add more datasets", "hyperparam", 7),
    ("3_creative_research", "Explore creative improvements over the tuned baseline", "improve", 9),
    ("4_ablation_studies", "Ablate the components of the best model", "ablation", 6),
]
NUM_DRAFTS = 3  # stage 1 starts with this many independent drafts, as AI-Scientist-v2 does
EXC_TYPES = ["ValueError", "RuntimeError", "KeyError", "IndexError", "AssertionError"]
REVIEW_MODEL = "gpt-4o-2024-11-20"


@dataclass
class SearchNode:
    """What the search remembers about a node (AI-Scientist-v2's journal entry)."""

    node_id: str
    parent_id: str | None
    kind: str
    is_buggy: bool
    metric: float | None
    reference: float | None  # its metric, or the nearest good ancestor's for a buggy node
    debugged: bool = False


class DemoFailure(RuntimeError):
    """The crash that ``--fail`` injects into stage 2."""


# --- the simulated search ----------------------------------------------------------------
def choose_next(
    rng: random.Random,
    stage_index: int,
    grow_kind: str,
    journal: list[SearchNode],
    carried: SearchNode | None,
) -> tuple[str, str | None]:
    """Pick (kind, parent id) for the next node, best-first like AI-Scientist-v2.

    Stage 1 drafts first; a stage after that starts from the best node of the stage
    before. Then a buggy leaf gets a debug node now and then; otherwise the best good
    node is grown further.
    """
    if not journal:
        if carried is not None:
            return grow_kind, carried.node_id
        return "draft", None
    drafts = sum(1 for n in journal if n.kind == "draft")
    if stage_index == 0 and drafts < NUM_DRAFTS:
        return "draft", None
    buggy_leaves = [n for n in journal if n.is_buggy and not n.debugged]
    good = [n for n in journal if not n.is_buggy]
    if buggy_leaves and (not good or rng.random() < 0.6):
        target = rng.choice(buggy_leaves)
        target.debugged = True
        return "debug", target.node_id
    if not good:
        return "draft", None
    best = max(good, key=lambda n: n.metric or 0.0)
    return grow_kind, best.node_id


def simulate_outcome(
    rng: random.Random, kind: str, parent: SearchNode | None
) -> tuple[bool, float | None, str | None]:
    """(is_buggy, validation accuracy, exception type) of a node's experiment."""
    bug_rate = {"draft": 0.35, "debug": 0.3}.get(kind, 0.25)
    if rng.random() < bug_rate:
        return True, None, rng.choice(EXC_TYPES)
    base = (
        parent.reference if parent is not None and parent.reference is not None else 0.55 + 0.1 * rng.random()
    )
    # an ablation removes a component: it usually costs accuracy
    change = -abs(rng.gauss(0.02, 0.015)) if kind == "ablation" else rng.gauss(0.012, 0.02)
    return False, round(min(0.99, base + change), 4), None


def generated_code(node_id: str, kind: str, parent_id: str | None, rng: random.Random) -> str:
    """Stand-in for the LLM's answer: a small training script."""
    lr = rng.choice(["1e-3", "3e-4", "1e-4"])
    hidden = rng.choice([64, 128, 256])
    return (
        f"# node {node_id} ({kind}, parent {parent_id})\n"
        "import numpy as np\n"
        "import torch\n\n"
        f"model = torch.nn.Sequential(torch.nn.Linear(32, {hidden}), torch.nn.ReLU(), torch.nn.Linear({hidden}, 2))\n"
        f"optimizer = torch.optim.Adam(model.parameters(), lr={lr})\n"
        "for epoch in range(10):\n"
        "    loss = train_one_epoch(model, optimizer)\n"
        "    print(f'epoch {epoch}: validation loss {loss:.4f}')\n"
        "np.save('experiment_data.npy', evaluate(model))\n"
    )


# --- plots: tiny but valid PNG files, no matplotlib -----------------------------------------
def png_bytes(width: int, height: int, pixel: Callable[[int, int], int]) -> bytes:
    """An 8-bit grayscale PNG whose pixel (x, y) is ``pixel(x, y)`` (0..255)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    rows = b"".join(b"\x00" + bytes(pixel(x, y) for x in range(width)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def write_plot(path: Path, values: list[float]) -> int:
    """A crude line plot of ``values`` as a PNG; returns its size in bytes."""
    width, height = 64, 32
    lo, hi = min(values, default=0.0), max(values, default=1.0)
    span = (hi - lo) or 1.0

    def pixel(x: int, y: int) -> int:
        value = values[min(len(values) - 1, x * len(values) // width)] if values else 0.0
        level = height - 1 - int((value - lo) / span * (height - 1))
        return 0 if y == level else 255

    data = png_bytes(width, height, pixel)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


@contextlib.contextmanager
def _report_failure(stage_name: str, journal: list[SearchNode]) -> Iterator[None]:
    """Print the stage's line when it dies too; the exception goes on unchanged."""
    try:
        yield
    except BaseException as exc:
        print(f"  {stage_name:<26} {len(journal):2d} nodes, then failed: {type(exc).__name__}")
        raise


# --- one stage of the search ---------------------------------------------------------------
def run_stage(
    run: otel_ai.Run,
    rng: random.Random,
    stage_index: int,
    carried: SearchNode | None,
    *,
    fail: bool,
) -> tuple[SearchNode | None, list[float]]:
    """Grow one stage's search tree; returns its best node and the metrics seen."""
    name, description, grow_kind, max_iterations = STAGES[stage_index]
    journal: list[SearchNode] = []
    metrics: list[float] = []
    best: SearchNode | None = None
    started = time.perf_counter()
    with run.stage(name, description=description) as stage, _report_failure(name, journal):
        run.log(f"stage {name} started: {description}", "info", "agent_manager")
        for iteration in range(1, max_iterations + 1):
            kind, parent_id = choose_next(rng, stage_index, grow_kind, journal, carried)
            parent = next((n for n in journal if n.node_id == parent_id), carried if parent_id else None)
            node_id = f"{rng.getrandbits(48):012x}"
            is_buggy, metric, exc_type = simulate_outcome(rng, kind, parent)

            with stage.node(node_id, parent_id=parent_id, kind=kind) as node:
                node.code_generated(generated_code(node_id, kind, parent_id, rng))
                exec_started = time.perf_counter()
                with node.executing("experiment"):
                    time.sleep(0.03 + 0.03 * rng.random())
                    if fail and stage_index == 1 and iteration == 4:
                        # an uncaught error, unlike a buggy node's: the whole run dies (kept on
                        # one long line: the run view must show a long traceback line whole)
                        # fmt: off
                        raise DemoFailure("experiment worker crashed: CUDA error: an illegal memory access was encountered")
                        # fmt: on
                if not is_buggy:
                    with node.executing("metrics"):
                        time.sleep(0.005)
                    with node.executing("plotting"):
                        time.sleep(0.01)
                exec_time_s = round(time.perf_counter() - exec_started, 4)
                node.completed(is_buggy, metric, exec_time_s, exc_type=exc_type)

            reference = metric if metric is not None else (parent.reference if parent is not None else None)
            journal.append(SearchNode(node_id, parent_id, kind, is_buggy, metric, reference))
            if is_buggy:
                run.log(f"node {node_id} ({kind}) is buggy: {exc_type}", "warning", "parallel_agent")
            else:
                assert metric is not None
                metrics.append(metric)
                if best is None or metric > (best.metric or 0.0):
                    best = journal[-1]
                    stage.selected_best(node_id, metric)
                    run.log(f"new best node {node_id}: validation accuracy {metric:.4f}", "info", "journal")

            good = sum(1 for n in journal if not n.is_buggy)
            elapsed = time.perf_counter() - started
            stage.progress(
                iteration,
                max_iterations,
                good_nodes=good,
                buggy_nodes=len(journal) - good,
                total_nodes=len(journal),
                best_metric=best.metric if best is not None else None,
                eta_s=round(elapsed / iteration * (max_iterations - iteration), 3),
            )

        if best is not None:
            stage.metric("best_validation_accuracy", best.metric)
        stage.metric("buggy_node_ratio", round(sum(n.is_buggy for n in journal) / len(journal), 4))

    good = sum(1 for n in journal if not n.is_buggy)
    best_text = f"best {best.metric:.4f} (node {best.node_id})" if best is not None else "no good node"
    print(
        f"  {name:<26} {len(journal):2d} nodes ({good} good, {len(journal) - good} buggy)  "
        f"{best_text}  {time.perf_counter() - started:.2f}s"
    )
    return (best or carried), metrics


# --- the pod worker ------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-id", help="the run's id (default: OTEL_AI_RUN_ID, else a new one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated search (default 0)")
    parser.add_argument(
        "--workdir", type=Path, help="where the plots are written (default: a new temporary directory)"
    )
    parser.add_argument("--fail", action="store_true", help="crash in stage 2 with an uncaught exception")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rng = random.Random(args.seed)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ai-scientist-demo-"))
    settings = otel_ai.configure()  # from OTEL_* / OTEL_AI_* variables; explicit arguments would win
    try:
        with otel_ai.run(
            args.run_id,
            pod_id=os.environ.get("RUNPOD_POD_ID", "demo-pod"),
            region=os.environ.get("RUNPOD_DATACENTER", "local"),
        ) as run:
            print(f"run {run.run_id}: 4 stages, plots in {workdir}")
            run.log(f"experiment started in {workdir}", "info", "pod_worker")

            best: SearchNode | None = None
            all_metrics: list[float] = []
            for stage_index in range(len(STAGES)):
                best, metrics = run_stage(run, rng, stage_index, best, fail=args.fail)
                all_metrics.extend(metrics)
                run.heartbeat()

            # The experiment's plots, found by the pod worker's monitor and then uploaded.
            plots = {
                "figures/validation_accuracy.png": all_metrics,
                "figures/ablation_summary.png": sorted(all_metrics[-6:]),
            }
            for relative, values in plots.items():
                size = write_plot(workdir / relative, values)
                run.artifact_detected(relative, "plot", size)
            for relative in plots:
                data = (workdir / relative).read_bytes()
                run.artifact_registered(
                    f"runs/{run.run_id}/{Path(relative).name}",
                    len(data),
                    hashlib.sha256(data).hexdigest(),
                    "image/png",
                    "plot",
                )

            with run.paper() as paper:
                time.sleep(0.05)  # gather citations, write LaTeX, compile
                paper.generated(f"runs/{run.run_id}/paper.pdf")

            with run.validation(REVIEW_MODEL) as review:
                time.sleep(0.05)  # the LLM reviewer reads the paper
                review.completed(
                    "pass",
                    {"overall": 0.75, "soundness": 3},
                    "Clear idea and honest ablations; the evaluation needs more datasets.",
                )
            if best is not None:
                print(f"done: best node {best.node_id}, validation accuracy {best.metric:.4f}")
    finally:
        otel_ai.shutdown()  # flush the batch processors before the process exits

    if settings.uses_otlp:
        print(f"telemetry sent over OTLP to {settings.signal_endpoint('traces')}")
    else:
        print(f"telemetry in {settings.data_dir}; see it with: otel-ai show {run.run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
