"""A node's metric: a short headline, a number, and the structure behind them.

AI-Scientist-v2 scores a node with a ``MetricValue`` whose ``value`` is a number, a
``{dataset: value}`` dict (older releases) or ``{"metric_names": [{"metric_name",
"lower_is_better", "description", "data": [{"dataset_name", "final_value",
"best_value"}]}]}``; a buggy node gets a ``WorstMetricValue`` (value None). Its ``str`` is
a ``Metrics(...)`` line thousands of characters long. Telemetry gets instead:

- ``ai.node.metric``: a headline of at most 200 characters
  (``validation loss↓ 0.4123 (mean of 2 datasets); accuracy↑ 0.87``);
- ``ai.node.metric.value``: the number the search ranks nodes by (upstream's
  ``get_mean_value``: the mean final value) when there is one;
- the structure: the first metric's name, direction and per-dataset final/best values
  as attributes, every metric as bounded JSON in ``ai.node.metrics``.

Anything else (a number, a string, a dict of the node's ``to_dict()``) is summarised as
faithfully as it allows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import semconv
from .coerce import as_float, to_text, truncate

MAX_HEADLINE = 200
MAX_METRICS_JSON = 4096


@dataclass
class MetricSummary:
    headline: str | None = None
    value: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Metric:
    name: str
    lower_is_better: bool | None
    datasets: list[tuple[str, float | None, float | None]]  # (dataset, final, best)
    description: str | None = None

    def mean_final(self) -> float | None:
        finals = [f for _, f, _ in self.datasets if f is not None and math.isfinite(f)]
        return sum(finals) / len(finals) if finals else None


def _number(value: Any) -> float | None:
    number = as_float(value)
    return number if number is not None and math.isfinite(number) else None


def _format(number: float | None) -> str:
    if number is None:
        return "n/a"
    return f"{number:.4g}"


def _arrow(lower_is_better: bool | None) -> str:
    return "?" if lower_is_better is None else ("↓" if lower_is_better else "↑")


def _structured(value: Mapping[str, Any]) -> list[_Metric] | None:
    names = value.get("metric_names")
    if not isinstance(names, (list, tuple)):
        return None
    metrics = []
    for entry in names:
        if not isinstance(entry, Mapping):
            continue
        lower = entry.get("lower_is_better")
        data = []
        for point in entry.get("data") or ():
            if isinstance(point, Mapping):
                data.append(
                    (
                        to_text(point.get("dataset_name", ""), 128),
                        _number(point.get("final_value")),
                        _number(point.get("best_value")),
                    )
                )
        description = entry.get("description")
        metrics.append(
            _Metric(
                to_text(entry.get("metric_name") or "metric", 128),
                None if lower is None else bool(lower),
                data,
                None if description is None else to_text(description, 256),
            )
        )
    return metrics


def _metrics_of(value: Any, maximize: Any, name: Any) -> list[_Metric] | None:
    """The metrics in a MetricValue's ``value`` (None when it is not one of its shapes)."""
    lower = None if maximize is None else not bool(maximize)
    label = to_text(name, 128) if name else "metric"
    if isinstance(value, Mapping):
        structured = _structured(value)
        if structured is not None:
            return structured
        data: list[tuple[str, float | None, float | None]] = [
            (to_text(k, 128), _number(v), None) for k, v in value.items()
        ]
        return [_Metric(label, lower, data)]
    number = _number(value)
    if number is not None:
        return [_Metric(label, lower, [("", number, None)])]
    return None


def _headline(metrics: list[_Metric]) -> str:
    pieces = []
    for metric in metrics:
        finals = [f for _, f, _ in metric.datasets if f is not None]
        text = f"{metric.name}{_arrow(metric.lower_is_better)} {_format(metric.mean_final())}"
        if len(metric.datasets) > 1:
            text += (
                f" (mean of {len(finals)} datasets)"
                if len(finals) > 1
                else f" ({len(metric.datasets)} datasets)"
            )
        pieces.append(text)
    headline = "; ".join(pieces)
    shown = len(pieces)
    while len(headline) > MAX_HEADLINE and shown > 1:
        shown -= 1
        headline = "; ".join(pieces[:shown]) + f"; +{len(pieces) - shown} more"
    return truncate(headline, MAX_HEADLINE)


def _metrics_json(metrics: list[_Metric]) -> tuple[str, int]:
    entries = [
        {
            "name": m.name,
            "lower_is_better": m.lower_is_better,
            **({"description": m.description} if m.description else {}),
            "data": [{"dataset": d, "final": f, "best": b} for d, f, b in m.datasets],
        }
        for m in metrics
    ]
    kept = len(entries)
    while True:
        text = json.dumps(entries[:kept], ensure_ascii=False, separators=(",", ":"))
        if len(text) <= MAX_METRICS_JSON or kept == 0:
            return text, len(entries) - kept
        kept -= 1


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def summarize(metric: Any) -> MetricSummary:
    """The headline, number and attributes for any metric a framework hands over."""
    if metric is None:
        return MetricSummary()
    if isinstance(metric, bool):
        return MetricSummary(str(metric))
    if isinstance(metric, Mapping) and "value" in metric and "metric_names" not in metric:
        value, maximize, name = metric.get("value"), metric.get("maximize"), metric.get("name")
        mean = None
    elif isinstance(metric, Mapping):
        value, maximize, name, mean = metric, None, None, None
    elif hasattr(metric, "value") and not isinstance(metric, (str, bytes, int, float)):
        value, maximize, name = (
            getattr(metric, "value", None),
            getattr(metric, "maximize", None),
            getattr(metric, "name", None),
        )
        mean = getattr(metric, "get_mean_value", None)
    else:
        number = _number(metric)
        if number is not None:
            return MetricSummary(truncate(to_text(metric), MAX_HEADLINE), number)
        return MetricSummary(truncate(to_text(metric), MAX_HEADLINE))
    if value is None:  # WorstMetricValue: a node without a valid metric
        return MetricSummary()
    metrics = _metrics_of(value, maximize, name)
    if not metrics:
        return MetricSummary(truncate(to_text(value), MAX_HEADLINE), _number(value))
    number = None
    if callable(mean):
        try:
            number = _number(mean())
        except Exception:  # noqa: BLE001 - a metric it cannot average
            number = None
    if number is None:  # upstream's ranking value: the mean final value over everything
        finals = [f for m in metrics for _, f, _ in m.datasets if f is not None and math.isfinite(f)]
        number = sum(finals) / len(finals) if finals else None
    first = metrics[0]
    attributes: dict[str, Any] = {semconv.NODE_METRIC_NAME: first.name}
    if first.lower_is_better is not None:
        attributes[semconv.NODE_METRIC_LOWER_IS_BETTER] = first.lower_is_better
    if any(d for d, _, _ in first.datasets):
        attributes[semconv.NODE_METRIC_DATASETS] = [d for d, _, _ in first.datasets]
    attributes[semconv.NODE_METRIC_FINAL] = [_nan(f) for _, f, _ in first.datasets]
    if any(b is not None for _, _, b in first.datasets):
        attributes[semconv.NODE_METRIC_BEST] = [_nan(b) for _, _, b in first.datasets]
    text, omitted = _metrics_json(metrics)
    attributes[semconv.NODE_METRICS] = text
    if omitted:
        attributes[semconv.NODE_METRICS_OMITTED] = omitted
    return MetricSummary(
        _headline(metrics), number if number is not None and math.isfinite(number) else None, attributes
    )
