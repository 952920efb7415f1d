"""The parallel tree search (as ai_scientist/treesearch/parallel_agent.py).

``ParallelAgent.step`` picks parent nodes, then submits ``_process_node_wrapper`` to a
process pool with each parent as a dict: the child node, and its id, are born in the
worker, which runs the code up to three times (experiment, metric parsing, plotting),
each in a fresh child process.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import re
from concurrent.futures import ProcessPoolExecutor
from typing import cast

from .backend import FunctionSpec, query
from .interpreter import Interpreter
from .journal import Journal, Node
from .utils.metric import MetricValue, WorstMetricValue

review_func_spec = FunctionSpec(
    name="submit_review",
    description="Review the execution",
    json_schema={
        "type": "object",
        "properties": {"is_bug": {"type": "boolean"}, "summary": {"type": "string"}},
        "required": ["is_bug", "summary"],
    },
)
metric_parse_spec = FunctionSpec(
    name="parse_metrics",
    description="Parse the metrics",
    json_schema={
        "type": "object",
        "properties": {"valid_metrics_received": {"type": "boolean"}, "metric_names": {"type": "array"}},
        "required": ["valid_metrics_received", "metric_names"],
    },
)


def _code_of(text: str) -> str:
    found = re.findall(r"```(?:python)?\n(.*?)```", text or "", re.DOTALL)
    return "\n".join(found)


def _plan_of(text: str) -> str:
    return (text or "").split("```", 1)[0].strip()


class AblationIdea:
    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description


class HyperparamTuningIdea:
    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description


def _idea(text: str) -> tuple[str, str]:
    name = re.search(r"Name: (.*)", text or "")
    description = re.search(r"Description: (.*)", text or "")
    return (name.group(1).strip() if name else "idea"), (description.group(1).strip() if description else "")


class MinimalAgent:
    """What a worker needs to make one node."""

    def __init__(
        self, task_desc, cfg, memory_summary=None, evaluation_metrics=None, stage=None, stage_name=None
    ):
        self.task_desc = task_desc
        self.cfg = cfg
        self.memory_summary = memory_summary
        self.evaluation_metrics = evaluation_metrics
        self.stage_name = stage_name

    def _draft(self) -> Node:
        prompt = {
            "Task": "[[task:code]] Write the first implementation.",
            "Research idea": self.task_desc,
            "Memory": self.memory_summary or "",
        }
        plan, code = self.plan_and_code_query(prompt)
        return Node(plan=plan, code=code)

    def _debug(self, parent_node: Node) -> Node:
        prompt = {
            "Task": "[[task:code]] Fix the bug.",
            "Previous (buggy) implementation": parent_node.code,
            "Execution output": "".join(parent_node.term_out or []),
        }
        plan, code = self.plan_and_code_query(prompt)
        return Node(plan=plan, code=code, parent=parent_node)

    def _improve(self, parent_node: Node) -> Node:
        prompt = {"Task": "[[task:code]] Improve the implementation.", "Previous solution": parent_node.code}
        plan, code = self.plan_and_code_query(prompt)
        return Node(plan=plan, code=code, parent=parent_node)

    def _generate_seed_node(self, parent_node: Node) -> Node:
        return Node(plan="Seed node", code=parent_node.code, parent=parent_node, is_seed_node=True)

    def _generate_hyperparam_tuning_node(
        self, parent_node: Node, hyperparam_idea: HyperparamTuningIdea
    ) -> Node:
        prompt = {
            "Task": f"[[task:code]] Tune hyperparameters: {hyperparam_idea.name}.",
            "Base code": parent_node.code,
        }
        plan, code = self.plan_and_code_query(prompt)
        return Node(plan=plan, code=code, parent=parent_node, hyperparam_name=hyperparam_idea.name)

    def _generate_ablation_node(self, parent_node: Node, ablation_idea: AblationIdea) -> Node:
        prompt = {"Task": f"[[task:code]] Ablate: {ablation_idea.name}.", "Base code": parent_node.code}
        plan, code = self.plan_and_code_query(prompt)
        return Node(plan=plan, code=code, parent=parent_node, ablation_name=ablation_idea.name)

    def plan_and_code_query(self, prompt, retries=3) -> tuple[str, str]:
        text = ""
        for _ in range(retries):
            text = query(
                system_message=prompt,
                user_message=None,
                model=self.cfg.agent.code.model,
                temperature=self.cfg.agent.code.temp,
            )
            code, plan = _code_of(text), _plan_of(text)
            if code and plan:
                return plan, code
            prompt["Parsing Feedback"] = "Use ```python ... ``` for the code."
        return "", text

    def parse_exec_result(self, node: Node, exec_result, workspace: str) -> None:
        node.absorb_exec_result(exec_result)
        prompt = {
            "Task": "[[task:review]] Did the code run correctly?",
            "Implementation": node.code,
            "Execution output": "".join(node.term_out or []),
        }
        response = cast(
            dict,
            query(
                system_message=prompt,
                user_message=None,
                func_spec=review_func_spec,
                model=self.cfg.agent.feedback.model,
                temperature=self.cfg.agent.feedback.temp,
            ),
        )
        node.analysis = response["summary"]
        node.is_buggy = bool(response["is_bug"]) or node.exc_type is not None

    def _generate_plotting_code(
        self, node: Node, working_dir: str, plot_code_from_prev_stage: str | None = None
    ) -> str:
        prompt = {"Task": "[[task:plot_code]] Plot the results.", "Code": node.code}
        _, code = self.plan_and_code_query(prompt)
        node.plot_code = code
        return code


class ParallelAgent:
    def __init__(
        self,
        task_desc: str,
        cfg,
        journal: Journal,
        stage_name=None,
        best_stage3_node=None,
        best_stage2_node=None,
        best_stage1_node=None,
        event_callback=None,
    ):
        self.task_desc = task_desc
        self.cfg = cfg
        self.journal = journal
        self.stage_name = stage_name
        self.event_callback = event_callback
        self.best_stage1_node = best_stage1_node
        self.best_stage2_node = best_stage2_node
        self.best_stage3_node = best_stage3_node
        self.num_workers = cfg.agent.num_workers
        self.timeout = cfg.exec.timeout
        method = cfg.agent.start_method
        if method is None:  # upstream: the platform default
            self.executor = ProcessPoolExecutor(max_workers=self.num_workers)
        else:  # the fork: spawn
            self.executor = ProcessPoolExecutor(
                max_workers=self.num_workers, mp_context=multiprocessing.get_context(method)
            )
        self._is_shutdown = False
        self.evaluation_metrics = self._define_global_metrics()
        self._random = random.Random(len(stage_name or ""))

    def _define_global_metrics(self) -> str:
        prompt = {
            "Task": "[[task:metric_define]] Propose an evaluation metric.",
            "Research idea": self.task_desc,
        }
        return str(
            query(
                system_message=prompt,
                user_message=None,
                model=self.cfg.agent.code.model,
                temperature=self.cfg.agent.code.temp,
            )
        )

    def _generate_hyperparam_tuning_idea(self) -> HyperparamTuningIdea:
        text = query(
            system_message={"Task": "[[task:idea]] Propose a hyperparameter to tune."},
            user_message=None,
            model=self.cfg.agent.code.model,
            temperature=self.cfg.agent.code.temp,
        )
        return HyperparamTuningIdea(*_idea(text))

    def _generate_ablation_idea(self) -> AblationIdea:
        text = query(
            system_message={"Task": "[[task:idea]] Propose an ablation."},
            user_message=None,
            model=self.cfg.agent.code.model,
            temperature=self.cfg.agent.code.temp,
        )
        return AblationIdea(*_idea(text))

    def _select_parallel_nodes(self) -> list[Node | None]:
        search = self.cfg.agent.search
        chosen: list[Node | None] = []
        drafts = len(self.journal.draft_nodes)
        for _ in range(self.num_workers):
            if drafts < search.num_drafts:
                chosen.append(None)
                drafts += 1
                continue
            buggy_leaves = [
                n
                for n in self.journal.buggy_nodes
                if not n.children and n.debug_depth < search.max_debug_depth and n not in chosen
            ]
            if buggy_leaves and self._random.random() < search.debug_prob:
                chosen.append(self._random.choice(buggy_leaves))
                continue
            best = self.journal.get_best_node()
            if best is not None:
                chosen.append(best)
            elif buggy_leaves:
                chosen.append(self._random.choice(buggy_leaves))
            else:
                chosen.append(None)
        return chosen

    def step(self, exec_callback=None) -> None:
        nodes = self._select_parallel_nodes()
        memory_summary = self.journal.generate_summary(include_code=False)
        futures = []
        for node in nodes:
            node_data = node.to_dict() if node is not None else None
            hyperparam_idea = ablation_idea = None
            if node_data is not None and node_data["is_buggy"] is False:
                if self.stage_name and self.stage_name.startswith("2_"):
                    hyperparam_idea = self._generate_hyperparam_tuning_idea()
                elif self.stage_name and self.stage_name.startswith("4_"):
                    ablation_idea = self._generate_ablation_idea()
            futures.append(
                self.executor.submit(
                    self._process_node_wrapper,
                    node_data,
                    self.task_desc,
                    self.cfg,
                    None,
                    memory_summary,
                    self.evaluation_metrics,
                    self.stage_name,
                    ablation_idea,
                    hyperparam_idea,
                    None,
                    None,
                    None,
                    False,
                )
            )
        for future in futures:
            result = future.result(timeout=self.timeout)
            self.journal.append(Node.from_dict(result, self.journal))

    @staticmethod
    def _process_node_wrapper(
        node_data,
        task_desc,
        cfg,
        gpu_id=None,
        memory_summary=None,
        evaluation_metrics=None,
        stage_name=None,
        new_ablation_idea=None,
        new_hyperparam_idea=None,
        best_stage3_plot_code=None,
        best_stage2_plot_code=None,
        best_stage1_plot_code=None,
        seed_eval=False,
        event_callback=None,
    ):
        """Runs in a pool worker: makes one child node of ``node_data`` (a draft when None)."""
        process_id = multiprocessing.current_process().name
        workspace = os.path.join(cfg.workspace_dir, f"process_{process_id}")
        working_dir = os.path.join(workspace, "working")
        os.makedirs(working_dir, exist_ok=True)
        agent = MinimalAgent(
            task_desc=task_desc,
            cfg=cfg,
            memory_summary=memory_summary,
            evaluation_metrics=evaluation_metrics,
            stage_name=stage_name,
        )
        interpreter = Interpreter(
            working_dir=workspace, timeout=cfg.exec.timeout, agent_file_name=cfg.exec.agent_file_name
        )
        parent_node = Node.from_dict(node_data, journal=None) if node_data else None
        if seed_eval:
            child_node = agent._generate_seed_node(parent_node)
            child_node.plot_code = parent_node.plot_code
        elif parent_node is None:
            child_node = agent._draft()
        elif parent_node.is_buggy:
            child_node = agent._debug(parent_node)
        elif new_hyperparam_idea is not None:
            child_node = agent._generate_hyperparam_tuning_node(parent_node, new_hyperparam_idea)
        elif new_ablation_idea is not None:
            child_node = agent._generate_ablation_node(parent_node, new_ablation_idea)
        else:
            child_node = agent._improve(parent_node)
        exec_result = interpreter.run(child_node.code, True)
        agent.parse_exec_result(node=child_node, exec_result=exec_result, workspace=working_dir)
        data_saved = os.path.exists(os.path.join(working_dir, "experiment_data.json"))
        if data_saved:
            if seed_eval:
                child_node.parse_metrics_code = parent_node.parse_metrics_code
            else:
                _, child_node.parse_metrics_code = agent.plan_and_code_query(
                    {
                        "Task": "[[task:metrics_code]] Write code that prints the metrics.",
                        "Code": child_node.code,
                    }
                )
            metrics = interpreter.run(child_node.parse_metrics_code, True)
            if metrics.exc_type is None:
                response = query(
                    system_message={
                        "Task": "[[task:metric_parse]] Parse the metrics.",
                        "Execution Output": "".join(metrics.term_out),
                    },
                    user_message=None,
                    func_spec=metric_parse_spec,
                    model=cfg.agent.feedback.model,
                    temperature=cfg.agent.feedback.temp,
                )
                if response["valid_metrics_received"]:
                    child_node.metric = MetricValue(
                        value={"metric_names": response["metric_names"]},
                        maximize=True,
                        name="validation accuracy",
                    )
                else:
                    child_node.metric, child_node.is_buggy = WorstMetricValue(), True
            else:
                child_node.metric, child_node.is_buggy = WorstMetricValue(), True
            os.remove(os.path.join(working_dir, "experiment_data.json"))
        else:
            child_node.metric, child_node.is_buggy = WorstMetricValue(), True
        if not child_node.is_buggy:
            plotting_code = (
                parent_node.plot_code
                if seed_eval and parent_node.plot_code
                else agent._generate_plotting_code(child_node, working_dir)
            )
            plot_result = interpreter.run(plotting_code, True)
            if plot_result.exc_type is None:
                child_node.plots = sorted(f for f in os.listdir(working_dir) if f.endswith(".png"))
        return child_node.to_dict()

    def _run_multi_seed_evaluation(self, node: Node) -> list[Node]:
        node_data = node.to_dict()
        futures = [
            self.executor.submit(
                self._process_node_wrapper,
                dict(node_data, code=f"# seed {seed}\n" + node.code),
                self.task_desc,
                self.cfg,
                None,
                "",
                self.evaluation_metrics,
                self.stage_name,
                None,
                None,
                None,
                None,
                None,
                True,
            )
            for seed in range(self.cfg.agent.multi_seed_eval.num_seeds)
        ]
        seeds = []
        for future in futures:
            result = Node.from_dict(future.result(timeout=self.timeout), self.journal)
            self.journal.append(result)
            seeds.append(result)
        return seeds

    def _aggregate_seed_eval_results(self, seed_nodes: list[Node], parent_node: Node) -> str:
        prompt = {
            "Task": "[[task:plot_code]] Aggregate the seeds' results in one plot.",
            "Seeds": [str(n.metric) for n in seed_nodes],
        }
        return _code_of(
            str(
                query(
                    system_message=prompt,
                    user_message=None,
                    model=self.cfg.agent.code.model,
                    temperature=self.cfg.agent.code.temp,
                )
            )
        )

    def _generate_seed_eval_aggregation_node(self, node: Node, agg_plotting_code: str) -> Node:
        return Node(
            plan="Aggregate results from multiple seeds",
            code="# plotting aggregation code",
            plot_code=agg_plotting_code,
            parent=node,
            is_seed_node=True,
            is_seed_agg_node=True,
        )

    def _run_plot_aggregation(self, node: Node, seed_nodes: list[Node]) -> None:
        if not seed_nodes:
            return
        code = self._aggregate_seed_eval_results(seed_nodes, node)
        agg_node = self._generate_seed_eval_aggregation_node(node, code)
        interpreter = Interpreter(
            working_dir=os.path.join(self.cfg.workspace_dir, "aggregation"), timeout=self.cfg.exec.timeout
        )
        result = interpreter.run(code, True)
        agg_node.absorb_exec_result(result)
        agg_node.is_buggy = result.exc_type is not None
        agg_node.metric = seed_nodes[0].metric
        self.journal.append(Node.from_dict(agg_node.to_dict(), self.journal))

    def __enter__(self) -> ParallelAgent:
        return self

    def cleanup(self) -> None:
        """Shut the pool down; workers still alive are killed with SIGTERM."""
        if self._is_shutdown:
            return
        try:
            processes = list((self.executor._processes or {}).values())
            self.executor.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                if process.is_alive():
                    process.terminate()
                    process.join(timeout=1)
        finally:
            self._is_shutdown = True

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        self.cleanup()
