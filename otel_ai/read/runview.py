"""A run rebuilt from its telemetry: stages, the node tree, outcome, artifacts, failure.

Reads what any source decoded into :class:`otel_ai.read.otlp_json.Telemetry` (the
embedded-default files, a collector's file exporter, an OTLP receiver) and groups it by
run. Spans that lost their run span (a process that died) still form a run, flagged so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from .. import semconv
from .otlp_json import Telemetry
from .records import LogRecordData, MetricPoint, SpanRecord
from .usage import (
    ResourceUsage,
    points_of_run,
    resource_key,
    stage_progress,
    summarize,
)


@dataclass
class NodeView:
    span: SpanRecord
    stage: str
    node_id: str
    parent_id: str | None
    kind: str
    is_buggy: bool | None
    metric: str | None
    metric_value: float | None
    exec_time_s: float | None
    exc_type: str | None
    executions: list[SpanRecord] = field(default_factory=list)
    children: list[NodeView] = field(default_factory=list)
    parent_stage: str | None = None  # set when the parent node lives in another stage
    is_best: bool = False

    @property
    def duration_s(self) -> float:
        return self.span.duration_s


@dataclass
class StageView:
    span: SpanRecord | None
    name: str
    description: str | None
    nodes: list[NodeView] = field(default_factory=list)
    roots: list[NodeView] = field(default_factory=list)
    best_node_id: str | None = None
    best_metric: str | None = None
    progress: list[tuple[int, float]] = field(default_factory=list)  # (time_ns, 0..1)

    @property
    def duration_s(self) -> float | None:
        return self.span.duration_s if self.span is not None else None

    @property
    def status(self) -> str:
        return self.span.status_code if self.span is not None else "UNSET"

    def counts(self) -> tuple[int, int, int]:
        """(good, buggy, total): what the stage span says, unless the trace holds more
        of its nodes than that (nodes made in pool workers the stage's process did not
        see, under a stage span of the same name a worker opened)."""
        good = sum(1 for n in self.nodes if n.is_buggy is False)
        buggy = sum(1 for n in self.nodes if n.is_buggy is True)
        listed = (good, buggy, len(self.nodes))
        if self.span is not None and semconv.STAGE_NODES_TOTAL in self.span.attributes:
            a = self.span.attributes
            said = (
                int(a.get(semconv.STAGE_NODES_GOOD, 0)),
                int(a.get(semconv.STAGE_NODES_BUGGY, 0)),
                int(a[semconv.STAGE_NODES_TOTAL]),
            )
            if said[2] >= listed[2]:
                return said
        return listed


@dataclass
class ArtifactView:
    event: str
    path: str | None
    kind: str | None
    size_bytes: int | None
    uri: str | None
    key: str | None


@dataclass
class FailureView:
    stage: str | None
    error_type: str | None
    message: str | None
    stacktrace: str | None


@dataclass
class RunView:
    run_id: str
    trace_id: str
    span: SpanRecord | None
    stages: list[StageView]
    paper: SpanRecord | None
    validation: SpanRecord | None
    artifacts: list[ArtifactView]
    failure: FailureView | None
    logs: list[LogRecordData]
    spans: list[SpanRecord]
    # the run's metric points (otel_ai.read.usage.points_of_run says which)
    metrics: list[MetricPoint] = field(default_factory=list)

    def usage(self) -> ResourceUsage:
        """Peak memory, mean CPU and GPU use of the run, from its metrics."""
        return summarize(self.metrics)

    @property
    def outcome(self) -> str:
        if self.span is None:
            return "unfinished"
        return str(self.span.attributes.get(semconv.RUN_OUTCOME, "unknown"))

    @property
    def start_ns(self) -> int:
        if self.span is not None:
            return self.span.start_ns
        return min((s.start_ns for s in self.spans), default=0)

    @property
    def duration_s(self) -> float | None:
        if self.span is not None:
            return self.span.duration_s
        if not self.spans:
            return None
        return (max(s.end_ns for s in self.spans) - self.start_ns) / 1e9

    @property
    def resource(self) -> dict[str, Any]:
        if self.span is not None:
            return self.span.resource
        return self.spans[0].resource if self.spans else {}

    def log_counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for record in self.logs:
            if record.event_name is None:
                counts[record.severity_text or "INFO"] += 1
        return dict(counts)


def _run_id_of(span: SpanRecord) -> str | None:
    value = span.attributes.get(semconv.RUN_ID)
    return None if value is None else str(value)


def build_runs(telemetry: Telemetry) -> list[RunView]:
    """Every run in ``telemetry``, oldest first."""
    by_trace: dict[str, list[SpanRecord]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    for span in telemetry.spans:
        key = (span.trace_id, span.span_id)
        if key in seen:  # the same span delivered twice (replayed files): keep one
            continue
        seen.add(key)
        by_trace[span.trace_id].append(span)
    logs_by_trace: dict[str, list[LogRecordData]] = defaultdict(list)
    for record in telemetry.logs:
        if record.trace_id:
            logs_by_trace[record.trace_id].append(record)
    runs = []
    for trace_id, spans in by_trace.items():
        run_ids = {rid for rid in map(_run_id_of, spans) if rid}
        if not run_ids:
            continue
        runs.append(_build_run(trace_id, spans, logs_by_trace.get(trace_id, []), sorted(run_ids)[0]))
    runs.sort(key=lambda r: r.start_ns)
    if telemetry.metrics:
        for index, run in enumerate(runs):
            process = resource_key(run.resource)
            later = (r.start_ns for r in runs[index + 1 :] if resource_key(r.resource) == process)
            _attach_metrics(run, telemetry.metrics, next(later, None))
    return runs


def _attach_metrics(run: RunView, points: list[MetricPoint], next_start_ns: int | None) -> None:
    resources = [run.resource, *(span.resource for span in run.spans)]
    duration = run.duration_s if run.duration_s is not None and math.isfinite(run.duration_s) else 0.0
    end_ns = run.start_ns + int(duration * 1e9)
    run.metrics = points_of_run(
        points,
        run_id=run.run_id,
        resources=resources,
        start_ns=run.start_ns,
        end_ns=end_ns,
        next_start_ns=next_start_ns,
    )
    for stage in run.stages:
        # the stage span keeps the first and latest progress events; the gauge fills the gap
        updates = (
            stage.span.attributes.get(semconv.STAGE_PROGRESS_UPDATES) if stage.span is not None else None
        )
        if not stage.progress or (isinstance(updates, int) and updates > len(stage.progress)):
            known = {t for t, _ in stage.progress}
            stage.progress.extend(p for p in stage_progress(run.metrics, stage.name) if p[0] not in known)
            stage.progress.sort()


def _build_run(
    trace_id: str, spans: list[SpanRecord], logs: list[LogRecordData], fallback_id: str
) -> RunView:
    run_span = next((s for s in spans if s.name == semconv.SPAN_RUN), None)
    run_id = _run_id_of(run_span) if run_span is not None else None
    stages: dict[str, StageView] = {}
    for span in sorted(spans, key=lambda s: s.start_ns):
        if span.name.startswith(semconv.SPAN_STAGE + " "):
            name = str(span.attributes.get(semconv.STAGE_NAME, span.name[len(semconv.SPAN_STAGE) + 1 :]))
            stages[name] = StageView(
                span=span,
                name=name,
                description=_str(span.attributes.get(semconv.STAGE_DESCRIPTION)),
                best_node_id=_str(span.attributes.get(semconv.STAGE_BEST_NODE_ID)),
            )
    nodes_by_span: dict[str, NodeView] = {}
    for span in spans:
        if not span.name.startswith(semconv.SPAN_NODE + " "):
            continue
        a = span.attributes
        stage_name = str(a.get(semconv.STAGE_NAME, "unknown"))
        node = NodeView(
            span=span,
            stage=stage_name,
            node_id=str(a.get(semconv.NODE_ID, span.span_id)),
            parent_id=_str(a.get(semconv.NODE_PARENT_ID)),
            kind=str(a.get(semconv.NODE_KIND, "node")),
            is_buggy=a.get(semconv.NODE_IS_BUGGY),
            metric=_str(a.get(semconv.NODE_METRIC)),
            metric_value=a.get(semconv.NODE_METRIC_VALUE),
            exec_time_s=a.get(semconv.NODE_EXEC_TIME_S),
            exc_type=_str(a.get(semconv.NODE_EXC_TYPE)),
        )
        nodes_by_span[span.span_id] = node
        stage = stages.get(stage_name)
        if stage is None:
            stage = stages[stage_name] = StageView(span=None, name=stage_name, description=None)
        stage.nodes.append(node)
    for span in spans:
        if span.name == semconv.SPAN_NODE_EXECUTE and span.parent_span_id in nodes_by_span:
            nodes_by_span[span.parent_span_id].executions.append(span)
    for stage in stages.values():
        _link_tree(stage, stages)
        _stage_events(stage)
    artifacts = [
        ArtifactView(
            event=event.name,
            path=_str(event.attributes.get(semconv.ARTIFACT_PATH)),
            kind=_str(
                event.attributes.get(semconv.ARTIFACT_TYPE) or event.attributes.get(semconv.ARTIFACT_KIND)
            ),
            size_bytes=event.attributes.get(semconv.ARTIFACT_SIZE),
            uri=_str(event.attributes.get(semconv.ARTIFACT_URI)),
            key=_str(event.attributes.get(semconv.ARTIFACT_KEY)),
        )
        for span in sorted(spans, key=lambda s: s.start_ns)
        for event in span.events
        if event.name in (semconv.ARTIFACT_DETECTED, semconv.ARTIFACT_REGISTERED)
    ]
    failure = None
    if run_span is not None and run_span.attributes.get(semconv.RUN_OUTCOME) == semconv.OUTCOME_FAILED:
        a = run_span.attributes
        failure = FailureView(
            stage=_str(a.get(semconv.RUN_FAILED_STAGE)),
            error_type=_str(a.get(semconv.ERROR_TYPE)),
            message=_str(a.get(semconv.EXCEPTION_MESSAGE)),
            stacktrace=_str(a.get(semconv.EXCEPTION_STACKTRACE)),
        )
    return RunView(
        run_id=run_id or fallback_id,
        trace_id=trace_id,
        span=run_span,
        stages=sorted(stages.values(), key=lambda s: s.span.start_ns if s.span else 0),
        paper=next((s for s in spans if s.name == semconv.SPAN_PAPER), None),
        validation=next((s for s in spans if s.name == semconv.SPAN_VALIDATION), None),
        artifacts=artifacts,
        failure=failure,
        logs=sorted(logs, key=lambda r: r.effective_time_ns),
        spans=spans,
    )


def _link_tree(stage: StageView, stages: dict[str, StageView]) -> None:
    by_id = {node.node_id: node for node in stage.nodes}
    stage.nodes.sort(key=lambda n: n.span.start_ns)
    for node in stage.nodes:
        parent = by_id.get(node.parent_id) if node.parent_id else None
        if parent is not None and parent is not node:
            parent.children.append(node)
            continue
        stage.roots.append(node)
        if node.parent_id:
            for other in stages.values():
                if other is not stage and any(n.node_id == node.parent_id for n in other.nodes):
                    node.parent_stage = other.name
                    break


def _stage_events(stage: StageView) -> None:
    if stage.span is None:
        return
    for event in stage.span.events:
        if event.name == semconv.STAGE_PROGRESS:
            value = event.attributes.get(semconv.STAGE_PROGRESS_VALUE)
            if isinstance(value, (int, float)):
                stage.progress.append((event.time_ns, float(value)))
        elif event.name == semconv.NODE_SELECTED_BEST:
            stage.best_node_id = _str(event.attributes.get(semconv.NODE_ID)) or stage.best_node_id
            stage.best_metric = _str(event.attributes.get(semconv.NODE_METRIC))
    for node in stage.nodes:
        node.is_best = node.node_id == stage.best_node_id


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
