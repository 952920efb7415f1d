"""Metric values (as ai_scientist/treesearch/utils/metric.py).

Same shapes as upstream: ``value`` is a number, a ``{dataset: value}`` dict, or
``{"metric_names": [{"metric_name", "lower_is_better", "description", "data":
[{"dataset_name", "final_value", "best_value"}]}]}``; ``WorstMetricValue`` (value None)
marks a buggy node. ``str()`` is upstream's long ``Metrics(...)`` line, which is what a
node's metric looked like in telemetry before it was summarised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class MetricValue:
    value: Any
    maximize: bool | None = field(default=None, kw_only=True)
    name: str | None = field(default=None, kw_only=True)
    description: str | None = field(default=None, kw_only=True)

    def _finals(self) -> list[float]:
        if isinstance(self.value, dict) and "metric_names" in self.value:
            return [
                d["final_value"]
                for m in self.value["metric_names"]
                for d in m["data"]
                if d["final_value"] is not None
            ]
        if isinstance(self.value, dict):
            return [v for v in self.value.values() if v is not None]
        return [] if self.value is None else [float(self.value)]

    def get_mean_value(self) -> float:
        finals = self._finals()
        return sum(finals) / len(finals) if finals else float("nan")

    def _should_maximize(self) -> bool:
        if isinstance(self.value, dict) and self.value.get("metric_names"):
            return not self.value["metric_names"][0]["lower_is_better"]
        return bool(self.maximize)

    def __gt__(self, other: MetricValue) -> bool:
        if self.value is None:
            return False
        if other.value is None:
            return True
        mine, theirs = self.get_mean_value(), other.get_mean_value()
        if mine == theirs:
            return False
        return (mine > theirs) if self._should_maximize() else (mine < theirs)

    def __str__(self) -> str:
        if isinstance(self.value, dict) and "metric_names" in self.value:
            pieces = []
            for metric in self.value["metric_names"]:
                arrow = "↓" if metric.get("lower_is_better") else "↑"
                values = ", ".join(
                    f"{d['dataset_name']}:(final={d['final_value']:.4f}, best={d['best_value']:.4f})"
                    for d in metric["data"]
                )
                pieces.append(f"{metric['metric_name']}{arrow}[{values}]")
            return "Metrics(" + "; ".join(pieces) + ")"
        arrow = "?" if self.maximize is None else ("↑" if self.maximize else "↓")
        label = f"({self.name})" if self.name else ""
        if isinstance(self.value, dict):
            values = ", ".join(f"{k}:{v:.4f}" for k, v in self.value.items())
            return f"Metric{arrow}{label}[{values}](mean={self.get_mean_value():.4f})"
        return f"Metric{arrow}{label}({float('nan') if self.value is None else self.value:.4f})"

    __repr__ = __str__


@dataclass
class WorstMetricValue(MetricValue):
    value: Any = None
