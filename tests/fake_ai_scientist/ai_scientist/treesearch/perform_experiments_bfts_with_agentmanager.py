"""The experiments entry point (as the real perform_experiments_bfts_with_agentmanager.py)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .agent_manager import AgentManager
from .backend import query
from .utils.config import Config


def overall_summarize(journals) -> list[str]:
    """One summary per stage, written in threads (LLM calls the trace context does not follow)."""

    def summarize(item) -> str:
        name, journal = item
        return str(query(system_message={"Task": f"[[task:summary]] Summarize stage {name}.",
                                         "Nodes": [str(n.metric) for n in journal.nodes]},
                         user_message=None, model="gpt-4o-mini-2024-07-18", temperature=0.3))

    with ThreadPoolExecutor(max_workers=2) as executor:
        return list(executor.map(summarize, list(journals)))


def perform_experiments_bfts(config_path: str | Config, event_callback=None) -> dict[str, Any]:
    cfg = config_path if isinstance(config_path, Config) else Config(**json.loads(Path(config_path).read_text()))
    Path(cfg.workspace_dir).mkdir(parents=True, exist_ok=True)
    idea = {"Title": "Simulated study", "Abstract": "A small simulated experiment.", "Short Hypothesis": "It works.",
            "Experiments": ["train", "evaluate"], "Risk Factors and Limitations": "Simulated."}
    manager = AgentManager(task_desc=json.dumps(idea), cfg=cfg, workspace_dir=Path(cfg.workspace_dir),
                           event_callback=event_callback)
    steps: list[tuple[str, int]] = []

    def step_callback(stage, journal) -> None:
        steps.append((stage.name, len(journal.nodes)))

    manager.run(exec_callback=None, step_callback=step_callback)
    summaries = overall_summarize(manager.journals.items())
    return {"stages": [s.name for s in manager.stages], "steps": steps, "summaries": summaries,
            "nodes": {name: len(journal.nodes) for name, journal in manager.journals.items()}}
