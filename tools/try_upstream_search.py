#!/usr/bin/env python3
"""Run the REAL tree search of SakanaAI/AI-Scientist-v2 offline (its experiment phase).

Usage (with a Python environment that has what the experiment phase imports, and otel_ai
for ``otel-ai run``)::

    python tools/try_upstream_search.py /path/to/clone/of/AI-Scientist-v2 [--keep]
    otel-ai run -- python tools/try_upstream_search.py /path/to/clone   # the same, wrapped

What it does, all on 127.0.0.1:

- an OpenAI-compatible LLM stand-in (the one of ``tools/try_pod_worker.py``): every
  function call answered from the tool's JSON schema (no bug, stage complete, a metric...),
  every code prompt with a plan and a short script that prints a metric and saves
  ``experiment_data.npy`` and a plot;
- ``torch``, only when it is not installed: the stand-in of ``tools/try_pod_worker.py``
  (multi-seed evaluation prefixes every script with ``import torch; torch.manual_seed``);
- the experiment phase as ``launch_scientist_bfts.py`` runs it, in a child process whose
  working directory is the clone: upstream's ``idea_to_markdown`` and
  ``edit_bfts_config_file`` under ``experiments/``, then ``perform_experiments_bfts``
  (the agent manager, four stages, a fork ``ProcessPoolExecutor`` per stage, the
  Interpreter's child per node) with a small ``bfts_config.yaml`` (2 workers, a few nodes
  per stage). The writeup and review phases are skipped (they need LaTeX and the network).

It prints ``search done: S stages, N nodes`` (``benchmarks/bench_search.py`` reads it), the
nodes counted in the search's own journals. When ``OTEL_AI_DATA_DIR`` holds otel_ai's
OTLP/JSON files (a run under ``otel-ai run``), it also prints ``check: ...``: every node of
the journals has its node span there. The experiment directory is removed afterwards
unless ``--keep``. Exit code 0 when the search ran and nothing is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from importlib.util import find_spec
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from try_pod_worker import FAKE_TORCH, StandIns, small_config  # noqa: E402

CONFIG_EDITS = {
    ("agent", "num_workers"): 2,
    ("agent", "steps"): 3,
    ("agent", "stages", "stage1_max_iters"): 4,
    ("agent", "stages", "stage2_max_iters"): 3,
    ("agent", "stages", "stage3_max_iters"): 3,
    ("agent", "stages", "stage4_max_iters"): 3,
    ("agent", "multi_seed_eval", "num_seeds"): 3,  # upstream aggregates exactly three seeds
    ("agent", "search", "num_drafts"): 2,
    ("exec", "timeout"): 120,
}

IDEA = {
    "Name": "tiny_synthetic",
    "Title": "A tiny synthetic study",
    "Short Hypothesis": "Smaller learning rates help a tiny model on synthetic data.",
    "Related Work": "None needed.",
    "Abstract": "We train a tiny model on synthetic data and compare learning rates.",
    "Experiments": ["Train a tiny model", "Evaluate on held-out synthetic data"],
    "Risk Factors and Limitations": ["Synthetic data only"],
}

# the experiment phase of launch_scientist_bfts.py, with upstream's own functions
DRIVER = """
import json, os, sys
from ai_scientist.treesearch.bfts_utils import idea_to_markdown, edit_bfts_config_file
from ai_scientist.treesearch.perform_experiments_bfts_with_agentmanager import perform_experiments_bfts

idea_dir, config = sys.argv[1], sys.argv[2]
os.environ["AI_SCIENTIST_ROOT"] = os.getcwd()
with open(os.path.join(idea_dir, "idea.json")) as f:
    idea = json.load(f)
idea_to_markdown(idea, os.path.join(idea_dir, "idea.md"), None)
perform_experiments_bfts(edit_bfts_config_file(config, idea_dir, os.path.join(idea_dir, "idea.json")))
"""


def write_config(clone: Path, path: Path) -> None:
    import yaml

    config = small_config(clone / "bfts_config.yaml", CONFIG_EDITS)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def journal_nodes(log_dir: Path) -> dict[str, set[str]]:
    """Node ids by stage, from the journals the search saved (``stage_*/journal.json``)."""
    stages: dict[str, set[str]] = {}
    for path in sorted(log_dir.glob("stage_*/journal.json")):
        data = json.loads(path.read_text())
        stages[path.parent.name.removeprefix("stage_")] = {node["id"] for node in data.get("nodes", [])}
    return stages


def check_telemetry(data_dir: Path, stages: dict[str, set[str]]) -> tuple[bool, str]:
    from otel_ai import semconv
    from otel_ai.read import load_directory

    spans = load_directory(data_dir).spans
    node_spans = [s for s in spans if s.name.startswith(semconv.SPAN_NODE + " ")]
    stage_spans = [s for s in spans if s.name.startswith(semconv.SPAN_STAGE + " ")]
    span_ids = {str(s.attributes.get(semconv.NODE_ID)) for s in node_spans}
    # a stage's journal starts from the best node of the one before (the same node id)
    entries = sum(len(ids) for ids in stages.values())
    node_ids = set().union(*stages.values()) if stages else set()
    missing = node_ids - span_ids
    ok = bool(node_ids) and not missing and len(node_spans) >= entries and len(stage_spans) >= len(stages)
    return ok, (
        f"check: {entries} journal entries ({len(node_ids)} node ids), {len(node_spans)} node spans "
        f"({len(span_ids)} node ids), node ids without a span {len(missing)}; {len(stage_spans)} stage "
        f"spans for {len(stages)} stages; {len(spans)} spans in all"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clone", type=Path, help="a local clone of SakanaAI/AI-Scientist-v2")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds before the search is stopped")
    parser.add_argument("--keep", action="store_true", help="keep the experiment directory")
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="skip the check of otel_ai's files (benchmarks/bench_search.py checks them after timing)",
    )
    parser.add_argument(
        "--llm-latency",
        type=float,
        default=0.0,
        help="seconds the LLM stand-in takes per answer (a real API takes seconds; 0: at once)",
    )
    args = parser.parse_args(argv)

    clone = args.clone.resolve()
    idea_dir = clone / "experiments" / f"try_upstream_{uuid.uuid4().hex[:8]}"
    idea_dir.mkdir(parents=True)
    (idea_dir / "idea.json").write_text(json.dumps(IDEA, indent=4))
    config = idea_dir / "bfts_config.base.yaml"
    write_config(clone, config)
    standins = Path(tempfile.mkdtemp(prefix="try-upstream-"))
    if find_spec("torch") is None:
        (standins / "torch").mkdir()
        (standins / "torch" / "__init__.py").write_text(FAKE_TORCH)

    server = StandIns(llm_latency=args.llm_latency)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "S2_"))}
    env.update(
        PYTHONPATH=os.pathsep.join(p for p in (str(standins), str(clone), env.get("PYTHONPATH")) if p),
        OPENAI_API_KEY="sk-try-upstream-offline",
        OPENAI_BASE_URL=f"{server.url}/v1",
        MPLBACKEND="Agg",
    )
    started = time.monotonic()
    log_path = idea_dir / "search.out"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(idea_dir), str(config)],
            cwd=clone,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            code = process.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    server.shutdown()
    shutil.rmtree(standins, ignore_errors=True)
    stages = journal_nodes(idea_dir / "logs" / "0-run")
    nodes = sum(len(ids) for ids in stages.values())
    print(
        f"search exit code {code} after {time.monotonic() - started:.1f}s; "
        f"LLM calls {server.counts.get('llm', 0)}; nodes by stage "
        f"{ {name: len(ids) for name, ids in stages.items()} }"
    )
    print(f"search done: {len(stages)} stages, {nodes} nodes")
    output = log_path.read_text(errors="replace")
    # the Interpreter's cleanup: SIGTERM, join(timeout=2), then SIGKILL with this warning
    print(f"note: interpreter children killed after 2 s: {output.count('Child process failed to terminate')}")
    ok = code == 0 and nodes > 0
    data_dir = os.environ.get("OTEL_AI_DATA_DIR")
    if data_dir and not args.no_check and any(Path(data_dir).rglob("traces-*.jsonl")):
        checked, line = check_telemetry(Path(data_dir), stages)
        print(line)
        ok = ok and checked
    if not ok:
        print(output[-4000:], file=sys.stderr)
    if args.keep or not ok:
        print(f"experiment directory kept: {idea_dir}")
    else:
        shutil.rmtree(idea_dir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
