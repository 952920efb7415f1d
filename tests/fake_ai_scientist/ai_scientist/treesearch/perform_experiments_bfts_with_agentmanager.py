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
        return str(
            query(
                system_message={
                    "Task": f"[[task:summary]] Summarize stage {name}.",
                    "Nodes": [str(n.metric) for n in journal.nodes],
                },
                user_message=None,
                model="gpt-4o-mini-2024-07-18",
                temperature=0.3,
            )
        )

    with ThreadPoolExecutor(max_workers=2) as executor:
        return list(executor.map(summarize, list(journals)))


def perform_experiments_bfts(config_path: str | Config, event_callback=None) -> dict[str, Any]:
    cfg = (
        config_path
        if isinstance(config_path, Config)
        else Config(**json.loads(Path(config_path).read_text()))
    )
    Path(cfg.workspace_dir).mkdir(parents=True, exist_ok=True)
    idea = {
        "Title": "Simulated study",
        "Abstract": "A small simulated experiment.",
        "Short Hypothesis": "It works.",
        "Experiments": ["train", "evaluate"],
        "Risk Factors and Limitations": "Simulated.",
    }
    manager = AgentManager(
        task_desc=json.dumps(idea),
        cfg=cfg,
        workspace_dir=Path(cfg.workspace_dir),
        event_callback=event_callback,
    )
    steps: list[tuple[str, int]] = []

    def emit_event(event_type: str, data: dict) -> None:
        # as the agencyenterprise fork's _safe_emit_event: a failing callback never stops the search
        if event_callback is not None:
            try:
                event_callback(event_type, data)
            except Exception as exc:  # noqa: BLE001
                print(f"Event callback failed: {exc}")

    def step_callback(stage, journal) -> None:
        steps.append((stage.name, len(journal.nodes)))
        # the stream the agencyenterprise fork's step callback hands to event_callback
        best = journal.get_best_node()
        emit_event(
            "ai.run.stage_progress",
            {
                "stage": "Stage_1",
                "iteration": len(journal.nodes),
                "max_iterations": stage.max_iterations,
                "progress": min(len(journal.nodes) / stage.max_iterations, 1.0)
                if stage.max_iterations
                else 0.0,
                "total_nodes": len(journal.nodes),
                "buggy_nodes": len(journal.buggy_nodes),
                "good_nodes": len(journal.good_nodes),
                "best_metric": str(best.metric) if best else None,
            },
        )
        emit_event(
            "ai.run.log",
            {
                "message": f"Found {len(journal.good_nodes)} working implementation(s), continuing...",
                "level": "info",
            },
        )
        if journal.nodes:
            latest = journal.nodes[-1]
            emit_event(
                "ai.experiment.node_completed",
                {
                    "stage": "Stage_1",
                    "node_id": latest.id,
                    "summary": {
                        "is_buggy": latest.is_buggy,
                        "exec_time_s": latest.exec_time,
                        "findings": f"node {latest.id} of stage {stage.name}",
                    },
                },
            )

    manager.run(exec_callback=None, step_callback=step_callback)
    summaries = overall_summarize(manager.journals.items())
    return {
        "stages": [s.name for s in manager.stages],
        "steps": steps,
        "summaries": summaries,
        "nodes": {name: len(journal.nodes) for name, journal in manager.journals.items()},
    }
