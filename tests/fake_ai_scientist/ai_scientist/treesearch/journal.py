"""The search tree: Node and Journal (as ai_scientist/treesearch/journal.py)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .backend import FunctionSpec, query
from .utils.metric import MetricValue, WorstMetricValue

node_selection_spec = FunctionSpec(
    name="select_best_implementation",
    description="Select the best implementation",
    json_schema={
        "type": "object",
        "properties": {"selected_id": {"type": "string"}, "reasoning": {"type": "string"}},
        "required": ["selected_id", "reasoning"],
    },
)


@dataclass(eq=False)
class Node:
    plan: str = field(default="", kw_only=True)
    code: str = field(default="", kw_only=True)
    plot_code: str | None = field(default=None, kw_only=True)
    step: int | None = field(default=None, kw_only=True)
    id: str = field(default_factory=lambda: uuid.uuid4().hex, kw_only=True)
    ctime: float = field(default_factory=time.time, kw_only=True)
    parent: Node | None = field(default=None, kw_only=True)
    children: set[Node] = field(default_factory=set, kw_only=True)
    term_out: list[str] | None = field(default=None, kw_only=True)
    exec_time: float | None = field(default=None, kw_only=True)
    exc_type: str | None = field(default=None, kw_only=True)
    parse_metrics_code: str = field(default="", kw_only=True)
    analysis: str | None = field(default=None, kw_only=True)
    metric: MetricValue | None = field(default=None, kw_only=True)
    is_buggy: bool | None = field(default=None, kw_only=True)
    plots: list[str] = field(default_factory=list, kw_only=True)
    hyperparam_name: str | None = field(default=None, kw_only=True)
    ablation_name: str | None = field(default=None, kw_only=True)
    is_seed_node: bool = field(default=False, kw_only=True)
    is_seed_agg_node: bool = field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        if self.parent is not None and not isinstance(self.parent, str):
            self.parent.children.add(self)

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def debug_depth(self) -> int:
        if self.parent is None or not self.parent.is_buggy:
            return 0
        return self.parent.debug_depth + 1

    def absorb_exec_result(self, result: Any) -> None:
        self.term_out = result.term_out
        self.exec_time = result.exec_time
        self.exc_type = result.exc_type

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "code": self.code,
            "plot_code": self.plot_code,
            "step": self.step,
            "id": self.id,
            "ctime": self.ctime,
            "term_out": self.term_out,
            "exec_time": self.exec_time,
            "exc_type": self.exc_type,
            "parse_metrics_code": self.parse_metrics_code,
            "analysis": self.analysis,
            "metric": {
                "value": self.metric.value if self.metric else None,
                "maximize": self.metric.maximize if self.metric else None,
                "name": self.metric.name if self.metric else None,
                "description": self.metric.description if self.metric else None,
            },
            "is_buggy": self.is_buggy,
            "plots": self.plots,
            "hyperparam_name": self.hyperparam_name,
            "ablation_name": self.ablation_name,
            "is_seed_node": self.is_seed_node,
            "is_seed_agg_node": self.is_seed_agg_node,
            "parent_id": None if self.parent is None else self.parent.id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], journal: Journal | None = None) -> Node:
        data = dict(data)
        parent_id = data.pop("parent_id", None)
        metric = data.pop("metric", None)
        if metric and metric.get("value") is not None:
            data["metric"] = MetricValue(**metric)
        elif data.get("is_buggy"):
            data["metric"] = WorstMetricValue()
        node = cls(**data)
        if journal is not None and parent_id:
            parent = journal.get_node_by_id(parent_id)
            if parent is not None:
                node.parent = parent
                parent.children.add(node)
        return node


@dataclass
class Journal:
    nodes: list[Node] = field(default_factory=list)
    event_callback: Any = field(default=None, kw_only=True, repr=False)

    def __getitem__(self, index: int) -> Node:
        return self.nodes[index]

    def __len__(self) -> int:
        return len(self.nodes)

    def append(self, node: Node) -> None:
        node.step = len(self.nodes)
        self.nodes.append(node)

    @property
    def draft_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.parent is None]

    @property
    def buggy_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.is_buggy]

    @property
    def good_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.is_buggy is False]

    def get_node_by_id(self, node_id: str) -> Node | None:
        for node in self.nodes:
            if node.id == node_id:
                return node
        return None

    def get_best_node(self, only_good: bool = True, use_val_metric_only: bool = False) -> Node | None:
        """The best node so far, chosen by an LLM each time it is asked."""
        nodes = self.good_nodes if only_good else self.nodes
        if not nodes:
            return None
        if use_val_metric_only or len(nodes) == 1:
            return max(nodes, key=lambda n: n.metric)
        candidates = "".join(f"ID: {n.id}\nMetric: {n.metric}\n" for n in nodes if not n.is_seed_node)
        prompt = {"Task": "[[task:select_best]] Select the best implementation.", "Candidates": candidates}
        try:
            selection = query(
                system_message=prompt,
                user_message=None,
                func_spec=node_selection_spec,
                model="gpt-4o-2024-11-20",
                temperature=1.0,
            )
            chosen = next((n for n in nodes if n.id == selection["selected_id"]), None)
            if chosen is not None:
                return chosen
        except Exception:  # noqa: BLE001 - fall back to the metric, as the real one does
            pass
        return max(nodes, key=lambda n: n.metric)

    def generate_summary(self, include_code: bool = False) -> str:
        if not self.nodes:
            return ""
        prompt = {
            "Task": "[[task:summary]] Summarize the experiments so far.",
            "Nodes": [f"{n.id[:8]} buggy={n.is_buggy} metric={n.metric}" for n in self.nodes],
        }
        return str(
            query(system_message=prompt, user_message=None, model="gpt-4o-mini-2024-07-18", temperature=0.3)
        )
