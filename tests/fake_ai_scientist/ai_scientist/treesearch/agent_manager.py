"""Stages and sub-stages of the search (as ai_scientist/treesearch/agent_manager.py)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backend import FunctionSpec, query
from .journal import Journal, Node
from .parallel_agent import ParallelAgent

stage_completion_eval_spec = FunctionSpec(
    name="evaluate_stage_completion",
    description="Is the stage complete?",
    json_schema={
        "type": "object",
        "properties": {
            "is_complete": {"type": "boolean"},
            "reasoning": {"type": "string"},
            "missing_criteria": {"type": "array"},
        },
        "required": ["is_complete", "reasoning", "missing_criteria"],
    },
)
substage_goal_spec = FunctionSpec(
    name="generate_substage_goals",
    description="Goals of the next sub-stage",
    json_schema={
        "type": "object",
        "properties": {"goals": {"type": "string"}, "sub_stage_name": {"type": "string"}},
        "required": ["goals", "sub_stage_name"],
    },
)


@dataclass
class Stage:
    name: str
    description: str
    goals: str
    max_iterations: int
    num_drafts: int
    stage_number: int


@dataclass
class StageTransition:
    from_stage: str
    to_stage: str
    reason: str
    config_adjustments: dict[str, Any]


class AgentManager:
    main_stage_dict = {
        1: "initial_implementation",
        2: "baseline_tuning",
        3: "creative_research",
        4: "ablation_studies",
    }

    def __init__(self, task_desc: str, cfg: Any, workspace_dir: Path, event_callback=None) -> None:
        self.task_desc = json.loads(task_desc)
        self.cfg = cfg
        self.workspace_dir = workspace_dir
        self.event_callback = event_callback
        self.stages: list[Stage] = []
        self.journals: dict[str, Journal] = {}
        self.stage_history: list[StageTransition] = []
        first = Stage(
            "1_initial_implementation_1_preliminary",
            "preliminary",
            "Get working code.",
            self._get_max_iterations(1),
            cfg.agent.search.num_drafts,
            1,
        )
        self.stages.append(first)
        self.current_stage: Stage | None = first
        self.journals[first.name] = Journal(event_callback=event_callback)

    def _get_max_iterations(self, stage_number: int) -> int:
        return getattr(self.cfg.agent.stages, f"stage{stage_number}_max_iters", self.cfg.agent.steps)

    @staticmethod
    def parse_stage_names(stage_name: str) -> tuple[int, str, int, str]:
        parts = stage_name.split("_")
        main = int(parts[0])
        index = next(i for i in range(1, len(parts)) if parts[i].isdigit())
        return main, "_".join(parts[1:index]), int(parts[index]), "_".join(parts[index + 1 :])

    def _create_agent_for_stage(self, stage: Stage) -> ParallelAgent:
        stage_cfg = self.cfg.copy()
        stage_cfg.agent.search.num_drafts = stage.num_drafts
        task = f"{self.task_desc['Title']}\n\nCurrent stage: {stage.name}\nGoals: {stage.goals}"
        return ParallelAgent(
            task_desc=task,
            cfg=stage_cfg,
            journal=self.journals[stage.name],
            stage_name=stage.name,
            event_callback=self.event_callback,
        )

    def _get_best_implementation(self, stage_name: str) -> Node | None:
        journal = self.journals.get(stage_name)
        best = journal.get_best_node() if journal is not None else None
        if best is None:
            return None
        copied = copy.copy(best)
        copied.parent = None
        copied.children = set()
        return copied

    def _check_stage_completion(self, stage: Stage) -> tuple[bool, str]:
        journal = self.journals[stage.name]
        if len(journal.nodes) >= stage.max_iterations:
            if stage.stage_number == 1 and not journal.good_nodes:
                self.current_stage = None
                return True, "Failed to find working implementation"
            return True, "Reached max iterations"
        if stage.stage_number == 1 and journal.good_nodes:
            return True, "Found working implementation"
        if stage.stage_number == 2:
            best = journal.get_best_node()
            if best is None:
                return False, "No best node found"
            if best is journal.nodes[0]:
                return False, "No improvement found from the base node"
            evaluation = self._evaluate(stage, journal)
            return bool(evaluation["is_complete"]), evaluation["reasoning"]
        return False, "stage not completed"

    def _check_substage_completion(self, current_substage: Stage, journal: Journal) -> tuple[bool, str]:
        best = journal.get_best_node()
        if best is None:
            return False, "No best node found"
        evaluation = self._evaluate(current_substage, journal)
        if evaluation["is_complete"]:
            return True, "Found working implementation"
        return False, "Missing criteria: " + ", ".join(evaluation["missing_criteria"])

    def _evaluate(self, stage: Stage, journal: Journal) -> dict[str, Any]:
        _, _, sub_number, _ = self.parse_stage_names(stage.name)
        prompt = {
            "Task": "[[task:stage_check]] Is this stage complete?",
            "Goals": stage.goals,
            "Evidence": f"Sub-stage number: {sub_number}\nGood nodes: {len(journal.good_nodes)}",
        }
        return query(
            system_message=prompt,
            user_message=None,
            func_spec=stage_completion_eval_spec,
            model=self.cfg.agent.feedback.model,
            temperature=self.cfg.agent.feedback.temp,
        )

    def _create_next_substage(
        self, current_substage: Stage, journal: Journal, substage_feedback: str
    ) -> Stage | None:
        main, main_name, sub_number, _ = self.parse_stage_names(current_substage.name)
        response = query(
            system_message={
                "Task": "[[task:substage_goal]] Goals of the next sub-stage.",
                "Feedback": substage_feedback,
            },
            user_message=None,
            func_spec=substage_goal_spec,
            model=self.cfg.agent.feedback.model,
            temperature=self.cfg.agent.feedback.temp,
        )
        return Stage(
            f"{main}_{main_name}_{sub_number + 1}_{response['sub_stage_name']}",
            response["sub_stage_name"],
            response["goals"],
            self._get_max_iterations(main),
            0,
            current_substage.stage_number,
        )

    def _create_next_main_stage(self, current_substage: Stage, journal: Journal) -> Stage | None:
        main, _, _, _ = self.parse_stage_names(current_substage.name)
        if main == 4:
            return None
        return Stage(
            f"{main + 1}_{self.main_stage_dict[main + 1]}_1_first_attempt",
            "first_attempt",
            f"Goals of stage {main + 1}.",
            self._get_max_iterations(main + 1),
            0,
            main + 1,
        )

    def run(self, exec_callback, step_callback=None) -> None:
        while self.current_stage:
            substage: Stage | None = self.current_stage
            while substage:
                with self._create_agent_for_stage(substage) as agent:
                    if self.stage_history:
                        best = self._get_best_implementation(self.stage_history[-1].from_stage)
                        if best is None:
                            self.current_stage = substage = None
                            break
                        self.journals[substage.name].append(best)
                    while True:
                        agent.step(exec_callback)
                        if step_callback:
                            step_callback(substage, self.journals[substage.name])
                        complete, feedback = self._check_stage_completion(substage)
                        if complete:
                            best = self._get_best_implementation(substage.name)
                            if best is not None:
                                seeds = agent._run_multi_seed_evaluation(best)
                                if step_callback:
                                    step_callback(substage, self.journals[substage.name])
                                agent._run_plot_aggregation(best, seeds)
                                if step_callback:
                                    step_callback(substage, self.journals[substage.name])
                            substage = None
                            break
                        sub_complete, sub_feedback = self._check_substage_completion(
                            substage, self.journals[substage.name]
                        )
                        if sub_complete:
                            following = self._create_next_substage(
                                substage, self.journals[substage.name], sub_feedback
                            )
                            self.stage_history.append(
                                StageTransition(substage.name, following.name, sub_feedback, {})
                            )
                            self.stages.append(following)
                            self.journals[following.name] = Journal(event_callback=self.event_callback)
                            substage = following
                            break
            if self.current_stage is None:
                break
            last = self.stages[-1]
            following = self._create_next_main_stage(last, self.journals[last.name])
            if following is None:
                self.current_stage = None
                break
            self.stage_history.append(
                StageTransition(last.name, following.name, f"Moving to {following.description}", {})
            )
            self.stages.append(following)
            self.journals[following.name] = Journal(event_callback=self.event_callback)
            self.current_stage = following
