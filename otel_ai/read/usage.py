"""A run's metrics read back: which points belong to it, and what they add up to.

How a run finds its metrics (used by ``otel-ai show``):

- search metrics (``ai.*`` with an ``ai.run.id`` attribute, ``gen_ai.client.token.usage``)
  by that attribute;
- system, process-tree and GPU metrics (no run attribute: they describe the machine
  and the process tree, whatever run is open) by **resource and time**: points whose
  resource is the run span's (same ``host.name``, ``process.pid`` and, when present,
  ``service.instance.id``) taken from the run's start to shortly after its end (the last
  collection happens at shutdown; never into the next run of the same process). When that
  process exported none, the resources of the run's other spans are tried, in order.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import semconv
from .records import MetricPoint

# points collected this long after a run's end still describe it (the shutdown flush)
END_GRACE_NS = 10_000_000_000

_RESOURCE_METRIC_PREFIXES = ("system.", "process.", "hw.")


def is_resource_metric(name: str) -> bool:
    """System, process-tree and GPU metrics: they carry no run id."""
    return name.startswith(_RESOURCE_METRIC_PREFIXES) or name == semconv.METRIC_PROCESS_COUNT


def resource_key(resource: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """What identifies the process that exported a point."""
    return (
        resource.get(semconv.HOST_NAME),
        resource.get(semconv.PROCESS_PID),
        resource.get(semconv.SERVICE_INSTANCE_ID),
    )


def points_of_run(
    points: Iterable[MetricPoint],
    *,
    run_id: str,
    resources: Sequence[Mapping[str, Any]],
    start_ns: int,
    end_ns: int,
    next_start_ns: int | None = None,
) -> list[MetricPoint]:
    """The metric points of one run, oldest first, duplicates (replayed files) dropped.

    ``resources`` are the resources of the run's spans, the run span's first;
    ``next_start_ns`` the start of the next run of the same process, which the window
    after the run's end stops at.
    """
    last_ns = end_ns + END_GRACE_NS
    if next_start_ns is not None:
        last_ns = max(min(last_ns, next_start_ns - 1), end_ns)
    ours: list[MetricPoint] = []
    by_resource: dict[tuple[Any, Any, Any], list[MetricPoint]] = defaultdict(list)
    seen: set[tuple[Any, ...]] = set()
    for point in points:
        key = (
            point.name,
            tuple(sorted(point.attributes.items())),
            point.time_ns,
            resource_key(point.resource),
        )
        if key in seen:
            continue
        seen.add(key)
        if is_resource_metric(point.name):
            if start_ns <= point.time_ns <= last_ns:
                by_resource[resource_key(point.resource)].append(point)
        elif str(point.attributes.get(semconv.RUN_ID)) == run_id:
            ours.append(point)
    for resource in resources:
        found = by_resource.get(resource_key(resource))
        if found:
            ours.extend(found)
            break
    ours.sort(key=lambda p: p.time_ns)
    return ours


@dataclass
class GpuUsage:
    """One GPU over a run."""

    hw_id: str
    name: str | None = None
    model: str | None = None
    utilization_mean: float | None = None
    utilization_peak: float | None = None
    memory_peak: float | None = None
    memory_limit: float | None = None
    temperature_peak: float | None = None
    power_mean: float | None = None


@dataclass
class ResourceUsage:
    """What a run's system, process-tree and GPU metrics add up to."""

    samples: int = 0
    memory_peak: float | None = None  # process-tree RSS, bytes
    cpu_mean: float | None = None  # process tree, share of the available CPUs
    cpu_peak: float | None = None
    cpus: int | None = None  # logical CPUs of the machine
    processes_peak: int | None = None
    threads_peak: int | None = None
    system_memory_peak: float | None = None  # share of the machine's memory
    system_memory_limit: float | None = None  # bytes
    gpus: list[GpuUsage] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.samples == 0


def _values(points: Iterable[MetricPoint], name: str) -> list[float]:
    return [float(p.value) for p in points if p.name == name and p.value is not None]


def _peak(values: list[float]) -> float | None:
    return max(values) if values else None


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def summarize(points: Sequence[MetricPoint]) -> ResourceUsage:
    """Peaks and means of a run's resource metrics (see :func:`points_of_run`)."""
    resource_points = [p for p in points if is_resource_metric(p.name)]
    usage = ResourceUsage(samples=len({p.time_ns for p in resource_points}))
    if not resource_points:
        return usage
    usage.memory_peak = _peak(_values(resource_points, semconv.METRIC_PROCESS_MEMORY_USAGE))
    cpu = _values(resource_points, semconv.METRIC_PROCESS_CPU_UTILIZATION)
    usage.cpu_mean, usage.cpu_peak = _mean(cpu), _peak(cpu)
    cpus = _values(resource_points, semconv.METRIC_SYSTEM_CPU_LOGICAL_COUNT)
    usage.cpus = int(cpus[-1]) if cpus else None
    processes = _peak(_values(resource_points, semconv.METRIC_PROCESS_COUNT))
    usage.processes_peak = None if processes is None else int(processes)
    threads = _peak(_values(resource_points, semconv.METRIC_PROCESS_THREAD_COUNT))
    usage.threads_peak = None if threads is None else int(threads)
    usage.system_memory_peak = _peak(_values(resource_points, semconv.METRIC_SYSTEM_MEMORY_UTILIZATION))
    limit = _values(resource_points, semconv.METRIC_SYSTEM_MEMORY_LIMIT)
    usage.system_memory_limit = limit[-1] if limit else None
    by_gpu: dict[str, list[MetricPoint]] = defaultdict(list)
    for point in resource_points:
        hw_id = point.attributes.get(semconv.HW_ID)
        if (
            hw_id is not None
            and point.attributes.get(semconv.HW_TYPE, semconv.HW_TYPE_GPU) == semconv.HW_TYPE_GPU
        ):
            by_gpu[str(hw_id)].append(point)
    for hw_id, gpu_points in by_gpu.items():
        first = gpu_points[0].attributes
        utilization = _values(gpu_points, semconv.METRIC_GPU_UTILIZATION)
        limits = _values(gpu_points, semconv.METRIC_GPU_MEMORY_LIMIT)
        usage.gpus.append(
            GpuUsage(
                hw_id=hw_id,
                name=_str(first.get(semconv.HW_NAME)),
                model=_str(first.get(semconv.HW_MODEL)),
                utilization_mean=_mean(utilization),
                utilization_peak=_peak(utilization),
                memory_peak=_peak(_values(gpu_points, semconv.METRIC_GPU_MEMORY_USAGE)),
                memory_limit=limits[-1] if limits else None,
                temperature_peak=_peak(_values(gpu_points, semconv.METRIC_HW_TEMPERATURE)),
                power_mean=_mean(_values(gpu_points, semconv.METRIC_HW_POWER)),
            )
        )
    usage.gpus.sort(key=lambda g: (g.name or "", g.hw_id))
    return usage


def stage_progress(points: Iterable[MetricPoint], stage: str) -> list[tuple[int, float]]:
    """``ai.stage.progress`` of one stage as (time_ns, value), from a run's points."""
    return [
        (p.time_ns, float(p.value))
        for p in points
        if p.name == semconv.METRIC_STAGE_PROGRESS
        and p.value is not None
        and str(p.attributes.get(semconv.STAGE_NAME)) == stage
    ]


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
