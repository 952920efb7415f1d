"""Metric values (as ai_scientist/treesearch/utils/metric.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class MetricValue:
    value: Any
    maximize: bool | None = None
    name: str | None = None
    description: str | None = None

    def get_mean_value(self) -> float:
        if isinstance(self.value, (int, float)):
            return float(self.value)
        values = [d["final_value"] for m in self.value.get("metric_names", []) for d in m.get("data", [])]
        return sum(values) / len(values) if values else float("nan")

    def __gt__(self, other: "MetricValue") -> bool:
        if self.value is None:
            return False
        if other.value is None:
            return True
        return self.get_mean_value() > other.get_mean_value()

    def __str__(self) -> str:
        if self.value is None:
            return "None"
        return f"{self.get_mean_value():.4f}"


class WorstMetricValue(MetricValue):
    def __init__(self) -> None:
        super().__init__(None)
