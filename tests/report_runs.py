"""Runs for the report tests: the simulated AI-Scientist search, the demo pod worker, and
a synthetic search of N nodes.

Run as a script, it writes a synthetic run with otel_ai's context managers (the embedded
default, OTEL_AI_DATA_DIR): ``python tests/report_runs.py DATA_DIR NODES [RUN_ID]``. Four
stages; each node is derived from a random earlier node of its stage (or is a fresh
draft), a quarter of them buggy, each with an execution and one LLM call span (the
gen_ai.* attributes an LLM instrumentation records), and the stage selects its best node.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from otel_ai import semconv
from otel_ai.read import SpanRecord

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "pod_worker_demo.py"
SIMULATED_BFTS = REPO / "examples" / "simulated_bfts.py"
OTEL_AI = Path(sys.executable).parent / "otel-ai"
STAGES = ("1_initial_implementation", "2_baseline_tuning", "3_creative_research", "4_ablation_studies")
KINDS = {
    "1_initial_implementation": "improve",
    "2_baseline_tuning": "hyperparam",
    "3_creative_research": "improve",
    "4_ablation_studies": "ablation",
}

_GENERATED: dict[tuple[int, str], Path] = {}


def clean_env(data_dir: Path | None = None, **extra: str) -> dict[str, str]:
    """The caller's environment without OTel/otel_ai settings or terminal settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUNPOD_"))}
    for name in ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR"):
        env.pop(name, None)
    if data_dir is not None:
        env["OTEL_AI_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def synthetic_run(root: Path, nodes: int, run_id: str = "synthetic") -> Path:
    """The data directory of a synthetic run of ``nodes`` nodes (made once per process)."""
    key = (nodes, run_id)
    if key not in _GENERATED:
        data_dir = root / f"synthetic-{nodes}"
        result = subprocess.run(
            [sys.executable, __file__, str(data_dir), str(nodes), run_id],
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
            env=clean_env(data_dir),
        )
        assert result.returncode == 0, result.stderr
        _GENERATED[key] = data_dir
    return _GENERATED[key]


def demo_run(
    root: Path, run_id: str, *extra: str, wrapped: bool = False
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The demo pod worker as a real process (under ``otel-ai run`` when ``wrapped``:
    then the wrapper samples CPU and memory too). Returns its data directory and result."""
    data_dir = root / f"runs-{run_id}"
    command = [
        sys.executable,
        str(DEMO),
        "--run-id",
        run_id,
        "--seed",
        "5",
        "--workdir",
        str(root / f"work-{run_id}"),
        *extra,
    ]
    if wrapped:
        command = [str(OTEL_AI), "run", "--run-id", run_id, "--no-status", "--", *command]
    result = subprocess.run(
        command,
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
        env=clean_env(data_dir, OTEL_METRIC_EXPORT_INTERVAL="200"),
        cwd=root,
    )
    return data_dir, result


def simulated_search(root: Path, run_id: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """examples/simulated_bfts.py under ``otel-ai run``: AI-Scientist-v2's search through
    the instrumentor, a process pool of two workers, LLM calls to a local stub."""
    data_dir = root / f"runs-{run_id}"
    command = [
        str(OTEL_AI),
        "run",
        "--run-id",
        run_id,
        "--no-status",
        "--",
        sys.executable,
        str(SIMULATED_BFTS),
        "--workers",
        "2",
        "--workdir",
        str(root / f"work-{run_id}"),
    ]
    result = subprocess.run(
        command,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_env(data_dir, OTEL_METRIC_EXPORT_INTERVAL="500"),
        cwd=root,
    )
    return data_dir, result


def span_record(
    name: str,
    span_id: str,
    parent: str | None,
    start: float,
    end: float,
    attributes: dict[str, Any],
    pid: int,
) -> SpanRecord:
    """A finished span of run "lanes" in trace abab..., made by process ``pid``."""
    return SpanRecord(
        trace_id="ab" * 16,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        kind=1,
        start_ns=int(start * 1e9),
        end_ns=int(end * 1e9),
        attributes={semconv.RUN_ID: "lanes", **attributes},
        events=[],
        links=[],
        status_code="UNSET",
        status_message="",
        resource={semconv.HOST_NAME: "pod", semconv.PROCESS_PID: pid, semconv.SERVICE_NAME: "ai-scientist"},
        scope="otel_ai",
    )


def _generate(data_dir: str, count: int, run_id: str) -> None:
    from opentelemetry import trace

    import otel_ai
    from otel_ai import semconv

    otel_ai.configure(data_dir=data_dir)
    llm = trace.get_tracer("llm-instrumentation-stand-in")
    rng = random.Random(9)
    per_stage = [count // len(STAGES) + (1 if i < count % len(STAGES) else 0) for i in range(len(STAGES))]
    carried: str | None = None
    with otel_ai.run(run_id, pod_id="synthetic-pod") as run:
        for stage_name, stage_nodes in zip(STAGES, per_stage, strict=False):
            with run.stage(stage_name, description=f"synthetic {stage_name}") as stage:
                ids: list[str] = []
                best: tuple[str, float] | None = None
                buggy_count = 0
                for i in range(stage_nodes):
                    node_id = f"{stage_name[0]}-{i:05d}-{rng.getrandbits(24):06x}"
                    if not ids:
                        parent = carried
                    elif rng.random() < 0.05:
                        parent = None
                    else:
                        parent = ids[max(0, len(ids) - 1 - int(rng.expovariate(0.02)))]
                    kind = "draft" if parent is None else KINDS[stage_name]
                    buggy = rng.random() < 0.25
                    metric = None if buggy else round(rng.random(), 4)
                    with stage.node(node_id, parent_id=parent, kind=kind) as node:
                        with llm.start_as_current_span(
                            "chat gpt-4o",
                            attributes={
                                semconv.GEN_AI_OPERATION_NAME: "chat",
                                semconv.GEN_AI_REQUEST_MODEL: "gpt-4o",
                                semconv.GEN_AI_USAGE_INPUT_TOKENS: 1000 + i % 500,
                                semconv.GEN_AI_USAGE_OUTPUT_TOKENS: 200 + i % 100,
                            },
                        ):
                            pass
                        with node.executing("experiment"):
                            pass
                        node.completed(buggy, metric, 0.001, exc_type="ValueError" if buggy else None)
                    ids.append(node_id)
                    buggy_count += buggy
                    if metric is not None and (best is None or metric > best[1]):
                        best = (node_id, metric)
                        stage.selected_best(node_id, metric)
                    if i % 25 == 0 or i == stage_nodes - 1:
                        stage.progress(
                            i + 1,
                            stage_nodes,
                            good_nodes=i + 1 - buggy_count,
                            buggy_nodes=buggy_count,
                            total_nodes=i + 1,
                        )
                carried = best[0] if best is not None else carried
    otel_ai.shutdown(60.0)


if __name__ == "__main__":
    started = time.monotonic()
    _generate(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "synthetic")
    print(f"generated {sys.argv[2]} nodes in {time.monotonic() - started:.1f}s")
