"""A realistic AI-Scientist-v2 tree search in seconds: four stages, a process pool, nodes
born in the workers, LLM calls to a local stub, then the paper and its review.

It runs the fake AI-Scientist of ``tests/fake_ai_scientist`` (same module paths, classes
and call pattern as the real one) against an OpenAI-compatible stub it starts on
127.0.0.1. Nothing in it knows about otel_ai: run it under ``otel-ai run`` and the
instrumentor does the rest::

    otel-ai run -- python examples/simulated_bfts.py               # pool start: platform default
    otel-ai run -- python examples/simulated_bfts.py --start-method spawn
    otel-ai show

It needs OpenAI's client (``pip install -e '.[llm]'``, or ``.[test]``). It puts
``tests/fake_ai_scientist`` on ``sys.path`` (and on PYTHONPATH for spawned workers) itself.

Options: ``--start-method fork|spawn`` (default: the platform's, as upstream; the
agencyenterprise fork uses spawn), ``--workers N``, ``--seed N``, ``--workdir DIR``,
``--max-iters N`` (nodes per stage), ``--llm-latency S`` (seconds per LLM answer).

Faithful where cost is concerned: a real ``ProcessPoolExecutor`` per stage whose workers
are killed with SIGTERM when the stage ends, each node's code run by ``Interpreter`` in a
fresh ``python`` child process, LLM calls over HTTP to a stub that can take its time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FAKE = HERE.parent / "tests" / "fake_ai_scientist"
sys.path.insert(0, str(FAKE))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start-method", choices=("fork", "spawn"), default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--workdir", default=None, help="where workspaces and the paper go (default: a temporary directory)"
    )
    parser.add_argument("--max-iters", type=int, default=4, help="nodes per stage before it ends")
    parser.add_argument(
        "--llm-latency", type=float, default=0.0, help="seconds the LLM stub takes per answer"
    )
    args = parser.parse_args(argv)

    from llm_stub import LLMStub

    stub = LLMStub(seed=args.seed, bug_rate=0.25, latency=args.llm_latency).start()
    # the OpenAI client of every process (workers too) reads these
    os.environ["OPENAI_BASE_URL"] = stub.base_url
    os.environ.setdefault("OPENAI_API_KEY", "sk-simulated-local-stub")
    # spawned workers import the fake package from here
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(FAKE), os.environ.get("PYTHONPATH")) if p)

    from ai_scientist.llm import create_client
    from ai_scientist.perform_icbinb_writeup import (
        perform_writeup as perform_icbinb_writeup,  # noqa: F401 - as the launcher
    )
    from ai_scientist.perform_llm_review import load_paper, perform_review
    from ai_scientist.perform_writeup import perform_writeup
    from ai_scientist.treesearch.perform_experiments_bfts_with_agentmanager import (
        perform_experiments_bfts,
    )
    from ai_scientist.treesearch.utils.config import Config

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="simulated-bfts-")).resolve()
    idea_dir = workdir / "experiments" / "simulated_idea"
    cfg = Config(
        workspace_dir=str(idea_dir / "workspaces" / "0-run"), log_dir=str(idea_dir / "logs" / "0-run")
    )
    cfg.agent.num_workers = args.workers
    cfg.agent.start_method = args.start_method
    for stage in range(1, 5):
        setattr(cfg.agent.stages, f"stage{stage}_max_iters", args.max_iters)
    try:
        result = perform_experiments_bfts(cfg)
        print(f"search done: {len(result['stages'])} stages, {sum(result['nodes'].values())} nodes")
        if not perform_writeup(base_folder=str(idea_dir), big_model="gpt-4o-2024-11-20", page_limit=8):
            print("writeup failed")
            return 1
        pdf = idea_dir / f"{idea_dir.name}.pdf"
        client, model = create_client("gpt-4o-2024-11-20")
        review = perform_review(
            load_paper(str(pdf)), model, client, num_reflections=1, num_reviews_ensemble=1
        )
        print("review:", json.dumps({k: review[k] for k in ("Overall", "Decision")} if review else None))
        brain = stub.brain
        print(
            f"llm stub: {brain.calls} calls, {brain.input_tokens} input tokens, {brain.output_tokens} output tokens"
        )
    finally:
        stub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
