"""What the HTML report shows, as plain JSON-ready data, built from a :class:`RunView`.

Times are seconds since the run's start (``t0``), rounded to the millisecond; the page
turns them back into clock times with ``t0_ms``. Nodes are dicts with short keys, since
a run can have thousands (key meanings in :func:`_node_entry`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from .. import semconv
from ..links import Link
from ..read.records import MetricPoint, SpanRecord
from ..read.runview import NodeView, RunView, StageView
from ..read.usage import is_resource_metric, resource_key
from ..version import __version__
from .layout import layered_tree, pack_rows

#: Data points per chart series at most (the page stays light; peaks are kept).
MAX_POINTS = 600
#: Inner bars (executions, LLM calls) per node at most on the timeline.
MAX_INNER_BARS = 50

_STATUS_GOOD, _STATUS_BUGGY, _STATUS_UNKNOWN = 0, 1, 2


def report_data(
    view: RunView, *, links: Sequence[Link] = (), generated_at: datetime | None = None
) -> dict[str, Any]:
    """Everything the page draws, for one run."""
    t0 = view.start_ns
    builder = _Builder(view, t0)
    return {
        "format": 1,
        "generator": f"otel-ai {__version__}",
        "generated": (generated_at or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
        "run": builder.run_summary(),
        "links": [{"label": link.label, "url": link.url} for link in links],
        "stages": builder.stages(),
        "lanes": builder.lanes,
        "inner": builder.inner,
        "run_row": builder.run_row(),
        "tokens": builder.tokens(),
        "resources": resource_charts(view.metrics, t0),
        "artifacts": builder.artifacts(),
        "failure": builder.failure(),
        "review": builder.review(),
    }


class _Builder:
    def __init__(self, view: RunView, t0: int) -> None:
        self.view = view
        self.t0 = t0
        self.by_span = {span.span_id: span for span in view.spans}
        self.node_of_span: dict[str, NodeView] = {}
        for stage in view.stages:
            for node in stage.nodes:
                self.node_of_span[node.span.span_id] = node
        self.node_ref: dict[int, tuple[int, int]] = {}  # id(NodeView) -> (stage index, node index)
        self.lanes: list[dict[str, Any]] = []
        self.inner: list[list[Any]] = []
        self._llm_by_node: dict[int, list[SpanRecord]] = defaultdict(list)
        self._llm_outside: list[SpanRecord] = []
        self._owner_cache: dict[str, NodeView | None] = {}
        for span in view.spans:
            if _is_llm_call(span):
                owner = self._owning_node(span)
                if owner is None:
                    self._llm_outside.append(span)
                else:
                    self._llm_by_node[id(owner)].append(span)

    def t(self, ns: int) -> float:
        return round((ns - self.t0) / 1e9, 3)

    # -- who a span belongs to ---------------------------------------------------------
    def _owning_node(self, span: SpanRecord) -> NodeView | None:
        """The nearest ``ai.node`` ancestor of ``span`` (memoised, iterative)."""
        chain: list[str] = []
        current = span.parent_span_id
        found: NodeView | None = None
        while current:
            if current in self._owner_cache:
                found = self._owner_cache[current]
                break
            node = self.node_of_span.get(current)
            if node is not None:
                found = node
                break
            chain.append(current)
            parent = self.by_span.get(current)
            current = parent.parent_span_id if parent is not None else None
            if len(chain) > 10_000:  # a parent cycle in bad data
                break
        for span_id in chain:  # spans that are not nodes: their nearest node above
            self._owner_cache[span_id] = found
        return found

    # -- the run -----------------------------------------------------------------------
    def run_summary(self) -> dict[str, Any]:
        view = self.view
        resource = view.resource
        run_attrs = view.span.attributes if view.span is not None else {}
        return {
            "id": view.run_id,
            "trace_id": view.trace_id,
            "outcome": view.outcome,
            "t0_ms": self.t0 / 1e6,
            "duration": view.duration_s,
            "service": _text(resource.get(semconv.SERVICE_NAME)),
            "pod": _text(resource.get(semconv.POD_ID)),
            "host": _text(resource.get(semconv.HOST_NAME)),
            "region": _text(resource.get(semconv.CLOUD_REGION)),
            "gpu": _text(resource.get(semconv.GPU_NAME)),
            "gpu_count": _number(resource.get(semconv.GPU_COUNT)),
            "command": _text(run_attrs.get(semconv.RUN_COMMAND)),
            "attempt": _number(run_attrs.get(semconv.RUN_ATTEMPT)),
            "exit_code": _number(run_attrs.get(semconv.RUN_EXIT_CODE)),
            "cancel_reason": _text(run_attrs.get(semconv.RUN_CANCEL_REASON)),
            "span_missing": view.span is None,
            "logs": view.log_counts(),
            "spans": len(view.spans),
        }

    # -- stages and their trees ----------------------------------------------------------
    def stages(self) -> list[dict[str, Any]]:
        lane_of: dict[tuple[Any, Any, Any], int] = {}
        lane_members: list[list[tuple[int, int]]] = []
        lane_resources: list[Mapping[str, Any]] = []
        stages = []
        for stage_index, stage in enumerate(self.view.stages):
            entry = self._stage_entry(stage, stage_index)
            stages.append(entry)
            for node_index, node in enumerate(stage.nodes):
                key = resource_key(node.span.resource)
                if key not in lane_of:
                    lane_of[key] = len(lane_members)
                    lane_members.append([])
                    lane_resources.append(node.span.resource)
                lane = lane_of[key]
                lane_members[lane].append((stage_index, node_index))
                entry["nodes"][node_index]["l"] = lane
        for lane, members in enumerate(lane_members):
            intervals = [(stages[s]["nodes"][n]["s"], stages[s]["nodes"][n]["e"]) for s, n in members]
            rows, count = pack_rows(intervals)
            for (s, n), row in zip(members, rows, strict=False):
                stages[s]["nodes"][n]["r"] = row
            self.lanes.append(
                {"label": _lane_label(lane_resources[lane]), "rows": count, "nodes": len(members)}
            )
        return stages

    def _stage_entry(self, stage: StageView, stage_index: int) -> dict[str, Any]:
        index_of = {id(node): i for i, node in enumerate(stage.nodes)}
        children = [
            [index_of[id(child)] for child in node.children if id(child) in index_of] for node in stage.nodes
        ]
        roots = [index_of[id(root)] for root in stage.roots if id(root) in index_of]
        xs, depths, width, depth = layered_tree(children, roots)
        parent_of = [-1] * len(stage.nodes)
        for i, kids in enumerate(children):
            for kid in kids:
                parent_of[kid] = i
        good, buggy, total = stage.counts()
        nodes = []
        best_curve: list[list[float]] = []
        best_so_far: float | None = None
        for i, node in enumerate(stage.nodes):
            self.node_ref[id(node)] = (stage_index, i)
            entry = self._node_entry(node, parent_of[i], xs[i], depths[i])
            nodes.append(entry)
            self._inner_bars(node, stage_index, i)
        for node in sorted(stage.nodes, key=lambda n: n.span.end_ns):
            value = node.metric_value if isinstance(node.metric_value, (int, float)) else None
            if node.is_buggy or value is None or not math.isfinite(value):
                continue
            if best_so_far is None or value > best_so_far:
                best_so_far = float(value)
                best_curve.append([self.t(node.span.end_ns), best_so_far])
        span = stage.span
        start = self.t(span.start_ns) if span is not None else min((n["s"] for n in nodes), default=0.0)
        end = self.t(span.end_ns) if span is not None else max((n["e"] for n in nodes), default=start)
        return {
            "name": stage.name,
            "description": stage.description,
            "s": start,
            "e": end,
            "status": stage.status,
            "open": span is None,
            "good": good,
            "buggy": buggy,
            "total": total,
            "best_id": stage.best_node_id,
            "best_metric": stage.best_metric,
            "progress": _downsample([[self.t(t), round(v, 4)] for t, v in stage.progress]),
            "best_curve": best_curve,
            "width": width,
            "depth": depth,
            "nodes": nodes,
        }

    def _node_entry(self, node: NodeView, parent: int, x: float, depth: int) -> dict[str, Any]:
        """s/e start and end, k kind, st status (0 good, 1 buggy, 2 unknown), b best,
        m metric text, mv its value, x exec time (s), p parent index in the stage (-1:
        none here), pid the parent id when it is not in this stage, ps the stage it is
        in, gx/gy the tree position (slots, depth), ti/to tokens in/out, c LLM calls,
        n executions, et exception type, l/r timeline lane and row."""
        status = (
            _STATUS_UNKNOWN if node.is_buggy is None else (_STATUS_BUGGY if node.is_buggy else _STATUS_GOOD)
        )
        calls = self._llm_by_node.get(id(node), [])
        tokens_in = sum(_tokens(span, semconv.GEN_AI_USAGE_INPUT_TOKENS) for span in calls)
        tokens_out = sum(_tokens(span, semconv.GEN_AI_USAGE_OUTPUT_TOKENS) for span in calls)
        entry: dict[str, Any] = {
            "id": node.node_id,
            "k": node.kind,
            "st": status,
            "s": self.t(node.span.start_ns),
            "e": self.t(node.span.end_ns),
            "p": parent,
            "gx": round(x, 2),
            "gy": depth,
            "l": 0,
            "r": 0,
        }
        if node.is_best:
            entry["b"] = 1
        if node.metric is not None:
            entry["m"] = node.metric
        if isinstance(node.metric_value, (int, float)) and math.isfinite(node.metric_value):
            entry["mv"] = node.metric_value
        if isinstance(node.exec_time_s, (int, float)):
            entry["x"] = round(float(node.exec_time_s), 3)
        if parent < 0 and node.parent_id:
            entry["pid"] = node.parent_id
            if node.parent_stage:
                entry["ps"] = node.parent_stage
        if node.exc_type:
            entry["et"] = node.exc_type
        if calls:
            entry["c"] = len(calls)
            entry["ti"] = tokens_in
            entry["to"] = tokens_out
        if node.executions:
            entry["n"] = len(node.executions)
        return entry

    def _inner_bars(self, node: NodeView, stage_index: int, node_index: int) -> None:
        """[stage, node, kind (0 execution, 1 LLM call), start, end, label] per bar."""
        bars: list[list[Any]] = [
            [
                stage_index,
                node_index,
                0,
                self.t(span.start_ns),
                self.t(span.end_ns),
                _text(span.attributes.get(semconv.NODE_EXEC_PURPOSE)) or "execute",
            ]
            for span in node.executions
        ]
        bars += [
            [stage_index, node_index, 1, self.t(span.start_ns), self.t(span.end_ns), _llm_label(span)]
            for span in self._llm_by_node.get(id(node), [])
        ]
        bars.sort(key=lambda bar: bar[3])
        self.inner.extend(bars[:MAX_INNER_BARS])

    # -- the run's own row: paper, review, LLM calls outside nodes ------------------------
    def run_row(self) -> list[list[Any]]:
        """[kind, start, end, label]: kind 0 paper, 1 review, 2 LLM call outside a node."""
        row: list[list[Any]] = []
        if self.view.paper is not None:
            row.append([0, self.t(self.view.paper.start_ns), self.t(self.view.paper.end_ns), "paper"])
        if self.view.validation is not None:
            row.append(
                [1, self.t(self.view.validation.start_ns), self.t(self.view.validation.end_ns), "review"]
            )
        for span in self._llm_outside[:5000]:
            row.append([2, self.t(span.start_ns), self.t(span.end_ns), _llm_label(span)])
        return row

    # -- tokens ----------------------------------------------------------------------------
    def tokens(self) -> dict[str, Any] | None:
        calls = [span for spans in self._llm_by_node.values() for span in spans] + self._llm_outside
        stage_of_node = {id(node): stage.name for stage in self.view.stages for node in stage.nodes}
        if calls:
            by_stage: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
            for stage_name, spans in (
                *(
                    (stage_of_node.get(key, "(outside stages)"), spans)
                    for key, spans in self._llm_by_node.items()
                ),
                ("(outside stages)", self._llm_outside),
            ):
                for span in spans:
                    totals = by_stage[_text(span.attributes.get(semconv.STAGE_NAME)) or stage_name]
                    totals[0] += _tokens(span, semconv.GEN_AI_USAGE_INPUT_TOKENS)
                    totals[1] += _tokens(span, semconv.GEN_AI_USAGE_OUTPUT_TOKENS)
                    totals[2] += 1
            curve = []
            total_in = total_out = 0
            for span in sorted(calls, key=lambda s: s.end_ns):
                total_in += _tokens(span, semconv.GEN_AI_USAGE_INPUT_TOKENS)
                total_out += _tokens(span, semconv.GEN_AI_USAGE_OUTPUT_TOKENS)
                curve.append([self.t(span.end_ns), total_in, total_out])
            return {
                "source": "spans",
                "by_stage": [
                    [name, *values]
                    for name, values in by_stage.items()
                    if name != "(outside stages)" or any(values)
                ],
                "curve": _downsample(curve),
                "calls": len(calls),
            }
        from_metrics = _tokens_from_metrics(self.view.metrics)
        if from_metrics:
            return {"source": "metrics", "by_stage": from_metrics, "curve": [], "calls": None}
        return None

    # -- the rest --------------------------------------------------------------------------
    def artifacts(self) -> list[dict[str, Any]]:
        """From span events and from log-based events: a child process of ``otel-ai run``
        reports on the wrapper's run span, which lives in another process, so its
        artifact events exist only as log records."""
        found: list[dict[str, Any]] = [
            {
                "event": a.event,
                "path": a.path,
                "kind": a.kind,
                "size": a.size_bytes,
                "uri": a.uri,
                "key": a.key,
            }
            for a in self.view.artifacts
        ]
        seen = {(a["event"], a["path"], a["key"], a["uri"]) for a in found}
        for record in self.view.logs:
            if record.event_name not in (semconv.ARTIFACT_DETECTED, semconv.ARTIFACT_REGISTERED):
                continue
            a = record.attributes
            entry: dict[str, Any] = {
                "event": record.event_name,
                "path": _text(a.get(semconv.ARTIFACT_PATH)),
                "kind": _text(a.get(semconv.ARTIFACT_TYPE) or a.get(semconv.ARTIFACT_KIND)),
                "size": _number(a.get(semconv.ARTIFACT_SIZE)),
                "uri": _text(a.get(semconv.ARTIFACT_URI)),
                "key": _text(a.get(semconv.ARTIFACT_KEY)),
            }
            key = (entry["event"], entry["path"], entry["key"], entry["uri"])
            if key not in seen:
                seen.add(key)
                found.append(entry)
        return found

    def failure(self) -> dict[str, Any] | None:
        failure = self.view.failure
        if failure is None:
            return None
        return {
            "stage": failure.stage,
            "type": failure.error_type,
            "message": failure.message,
            "stacktrace": failure.stacktrace,
        }

    def review(self) -> dict[str, Any]:
        paper = self.view.paper
        validation = self.view.validation
        result: dict[str, Any] = {}
        if paper is not None:
            result["paper"] = {
                "ok": paper.status_code != "ERROR",
                "key": _text(paper.attributes.get(semconv.ARTIFACT_KEY)),
                "duration": round(paper.duration_s, 3),
            }
        if validation is not None:
            a = validation.attributes
            result["validation"] = {
                "model": _text(a.get(semconv.VALIDATION_MODEL)),
                "verdict": _text(a.get(semconv.VALIDATION_VERDICT)),
                "scores": {
                    k[len(semconv.VALIDATION_SCORE_PREFIX) :]: v
                    for k, v in sorted(a.items())
                    if k.startswith(semconv.VALIDATION_SCORE_PREFIX) and isinstance(v, (int, float, str))
                },
                "notes": _text(a.get(semconv.VALIDATION_NOTES)),
                "duration": round(validation.duration_s, 3),
            }
        return result


# --------------------------------------------------------------------------- resources

# (title, unit, [(series label, metric name, attribute filter)])
_RESOURCE_CHARTS: tuple[tuple[str, str, tuple[tuple[str, str, Mapping[str, str]], ...]], ...] = (
    (
        "CPU",
        "ratio",
        (
            ("experiment process tree", semconv.METRIC_PROCESS_CPU_UTILIZATION, {}),
            ("machine", semconv.METRIC_SYSTEM_CPU_UTILIZATION, {}),
        ),
    ),
    (
        "Memory",
        "bytes",
        (
            ("experiment process tree (RSS)", semconv.METRIC_PROCESS_MEMORY_USAGE, {}),
            (
                "machine, used",
                semconv.METRIC_SYSTEM_MEMORY_USAGE,
                {semconv.SYSTEM_MEMORY_STATE: semconv.MEMORY_STATE_USED},
            ),
        ),
    ),
    ("GPU utilization", "ratio", (("", semconv.METRIC_GPU_UTILIZATION, {}),)),
    ("GPU memory", "bytes", (("", semconv.METRIC_GPU_MEMORY_USAGE, {}),)),
)


def resource_charts(points: Sequence[MetricPoint], t0: int) -> list[dict[str, Any]]:
    """CPU, memory and GPU charts from a run's metric points (none: no chart).
    GPU series are one per ``hw.id``."""
    by_name: dict[str, list[MetricPoint]] = defaultdict(list)
    for point in points:
        if is_resource_metric(point.name) and point.value is not None:
            by_name[point.name].append(point)
    charts = []
    for title, unit, specs in _RESOURCE_CHARTS:
        series = []
        for label, name, wanted in specs:
            groups: dict[str, list[MetricPoint]] = defaultdict(list)
            for point in by_name.get(name, []):
                if any(str(point.attributes.get(k)) != v for k, v in wanted.items()):
                    continue
                hw_id = point.attributes.get(semconv.HW_ID)
                key = label or str(point.attributes.get(semconv.HW_NAME) or hw_id or name)
                groups[key].append(point)
            for key, group in groups.items():
                # points of several processes at one instant (a fork's pipeline) add up
                at: dict[int, float] = defaultdict(float)
                for point in group:
                    at[point.time_ns] += float(point.value or 0.0)
                values = [[round((t - t0) / 1e9, 3), v] for t, v in sorted(at.items()) if math.isfinite(v)]
                if values:
                    series.append({"name": key, "points": _downsample(values)})
        if series:
            charts.append({"title": title, "unit": unit, "series": series})
    return charts


def _tokens_from_metrics(points: Iterable[MetricPoint]) -> list[list[Any]]:
    """[stage, input, output, calls] from ``gen_ai.client.token.usage`` histograms: the
    latest point of each cumulative series, every point of a delta one."""
    latest: dict[tuple[Any, ...], MetricPoint] = {}
    delta: list[MetricPoint] = []
    for point in points:
        if point.name != semconv.METRIC_GEN_AI_TOKEN_USAGE:
            continue
        if point.temporality == "DELTA":
            delta.append(point)
            continue
        key = (tuple(sorted(point.attributes.items())), resource_key(point.resource), point.start_time_ns)
        if key not in latest or point.time_ns > latest[key].time_ns:
            latest[key] = point
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for point in [*latest.values(), *delta]:
        stage = _text(point.attributes.get(semconv.STAGE_NAME)) or "(outside stages)"
        token_type = point.attributes.get(semconv.GEN_AI_TOKEN_TYPE)
        amount = int(point.sum or 0)
        if token_type == semconv.GEN_AI_TOKEN_TYPE_INPUT:
            totals[stage][0] += amount
            totals[stage][2] += int(point.count or 0)
        elif token_type == semconv.GEN_AI_TOKEN_TYPE_OUTPUT:
            totals[stage][1] += amount
    return [[stage, *values] for stage, values in totals.items()]


# --------------------------------------------------------------------------- helpers


def _is_llm_call(span: SpanRecord) -> bool:
    a = span.attributes
    return semconv.GEN_AI_OPERATION_NAME in a or semconv.GEN_AI_REQUEST_MODEL in a


def _llm_label(span: SpanRecord) -> str:
    a = span.attributes
    model = a.get(semconv.GEN_AI_RESPONSE_MODEL) or a.get(semconv.GEN_AI_REQUEST_MODEL)
    parts = [span.name if model is None or str(model) in span.name else f"{span.name} {model}"]
    tokens_in, tokens_out = (
        _tokens(span, semconv.GEN_AI_USAGE_INPUT_TOKENS),
        _tokens(span, semconv.GEN_AI_USAGE_OUTPUT_TOKENS),
    )
    if tokens_in or tokens_out:
        parts.append(f"{tokens_in} in / {tokens_out} out tokens")
    return ", ".join(parts)


def _tokens(span: SpanRecord, key: str) -> int:
    value = span.attributes.get(key)
    if isinstance(value, bool):
        return 0
    if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
        return int(value)
    return 0


def _lane_label(resource: Mapping[str, Any]) -> str:
    pid = resource.get(semconv.PROCESS_PID)
    host = resource.get(semconv.HOST_NAME)
    label = f"pid {pid}" if pid is not None else "process"
    return f"{label} @ {host}" if host else label


def _downsample(points: list[list[float]], limit: int = MAX_POINTS) -> list[list[float]]:
    """At most ``limit`` points: per bucket, the first and the one with the largest
    value (peaks survive); the last point always stays."""
    if len(points) <= limit:
        return points
    bucket = math.ceil(len(points) / (limit // 2))
    result: list[list[float]] = []
    for start in range(0, len(points), bucket):
        chunk = points[start : start + bucket]
        peak = max(chunk, key=lambda p: p[1])
        result.append(chunk[0])
        if peak is not chunk[0]:
            result.append(peak)
    if result[-1] is not points[-1]:
        result.append(points[-1])
    return result


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None
