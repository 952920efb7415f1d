"""The system, process-tree and GPU metrics: asynchronous instruments over one shared pass.

Metrics are pulled: :class:`Sampler` registers observable instruments whose callbacks
the SDK's ``PeriodicExportingMetricReader`` runs on its own thread at each collection
(every OTEL_METRIC_EXPORT_INTERVAL, and at flush). The first callback of a collection
takes one sampling pass (system, process tree, GPUs); the others reuse it, and passes
are never taken more often than ``min_interval_s``, so the experiment's threads pay
nothing and the reader's thread pays one bounded pass per interval.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from .. import semconv
from .._internal import report_internal_error
from .gpu import GpuMetrics
from .process import DEFAULT_MAX_PROCESSES, ProcessTree, SystemReadings

# (instrument kind, name, unit, description); the kinds follow the OTel semantic conventions
_SYSTEM_INSTRUMENTS = (
    (
        "gauge",
        semconv.METRIC_SYSTEM_CPU_UTILIZATION,
        "1",
        "Busy share of all CPUs of the machine since the previous sample",
    ),
    ("updown", semconv.METRIC_SYSTEM_CPU_LOGICAL_COUNT, "{cpu}", "Logical CPUs of the machine"),
    (
        "updown",
        semconv.METRIC_SYSTEM_MEMORY_USAGE,
        "By",
        "Machine memory by state: used (total - available) and free (available)",
    ),
    ("updown", semconv.METRIC_SYSTEM_MEMORY_LIMIT, "By", "Total memory of the machine"),
    (
        "gauge",
        semconv.METRIC_SYSTEM_MEMORY_UTILIZATION,
        "1",
        "Share of the machine's memory used (total - available)",
    ),
)
_PROCESS_INSTRUMENTS = (
    (
        "counter",
        semconv.METRIC_PROCESS_CPU_TIME,
        "s",
        "CPU seconds of the experiment's process tree, children included",
    ),
    (
        "gauge",
        semconv.METRIC_PROCESS_CPU_UTILIZATION,
        "1",
        "CPU share of the experiment's process tree over the available CPUs",
    ),
    (
        "updown",
        semconv.METRIC_PROCESS_MEMORY_USAGE,
        "By",
        "Resident memory (RSS) summed over the experiment's process tree",
    ),
    ("updown", semconv.METRIC_PROCESS_THREAD_COUNT, "{thread}", "Threads of the experiment's process tree"),
    ("updown", semconv.METRIC_PROCESS_COUNT, "{process}", "Processes in the experiment's process tree"),
)
_GPU_INSTRUMENTS = (
    ("gauge", semconv.METRIC_GPU_UTILIZATION, "1", "Share of time the GPU was running kernels"),
    ("updown", semconv.METRIC_GPU_MEMORY_USAGE, "By", "GPU memory used"),
    ("updown", semconv.METRIC_GPU_MEMORY_LIMIT, "By", "Size of the GPU memory"),
    ("gauge", semconv.METRIC_GPU_MEMORY_UTILIZATION, "1", "Share of GPU memory used"),
    ("gauge", semconv.METRIC_HW_TEMPERATURE, "Cel", "GPU temperature"),
    ("gauge", semconv.METRIC_HW_POWER, "W", "GPU power draw"),
    ("counter", semconv.METRIC_HW_ENERGY, "J", "GPU energy consumed since the driver was loaded"),
)

Snapshot = dict[str, list[Observation]]
_STALE_S = 5.0


class _Slot:
    """The instruments registered on one meter, and the sampler they read from.

    The SDK keeps the first callbacks of an instrument registered twice under the same
    name, so the instruments are registered once per meter and read whichever sampler
    was started on it last.
    """

    def __init__(self) -> None:
        self.sampler: Sampler | None = None
        self.registered: list[str] = []

    def callback(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        # the SDK runs the callbacks of a collection in registration order: the first
        # instrument's callback starts a collection, and a new pass with it
        leads = not self.registered

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            sampler = self.sampler
            return sampler.observations(name, fresh=leads) if sampler is not None else []

        observe.__qualname__ = f"Sampler.observe[{name}]"
        return observe


_slots_lock = threading.Lock()
_slots: weakref.WeakKeyDictionary[Meter, _Slot] = weakref.WeakKeyDictionary()


def _register(meter: Meter, sampler: Sampler, instruments: Iterable[tuple[str, str, str, str]]) -> _Slot:
    create = {
        "gauge": meter.create_observable_gauge,
        "counter": meter.create_observable_counter,
        "updown": meter.create_observable_up_down_counter,
    }
    with _slots_lock:
        slot = _slots.get(meter)
        if slot is None:
            slot = _slots[meter] = _Slot()
        slot.sampler = sampler
        for kind, name, unit, description in instruments:
            if name not in slot.registered:
                callback = slot.callback(name)
                slot.registered.append(name)
                create[kind](name, callbacks=[callback], unit=unit, description=description)
    return slot


class Sampler:
    """System, process-tree and GPU metrics for one meter, read at each collection.

    Create it with :func:`otel_ai.metrics.start`. ``root_pid`` is the root of the process
    tree summed by the ``process.*`` metrics (default: this process, so workers and
    child processes are included); :meth:`observe_process_tree` moves it. In a child
    forked from the process that started it, a sampler reports nothing (its metrics
    would carry the parent's resource).
    """

    def __init__(
        self,
        meter: Meter,
        *,
        root_pid: int | None = None,
        gpu: bool = True,
        nvml: Any | None = None,
        min_interval_s: float = 1.0,
        max_processes: int = DEFAULT_MAX_PROCESSES,
    ) -> None:
        self._owner_pid = os.getpid()
        self._lock = threading.Lock()
        self._min_interval_s = min_interval_s
        self._max_processes = max_processes
        self._tree = ProcessTree(root_pid, max_processes=max_processes)
        self._system = SystemReadings()
        self._gpus = GpuMetrics.open(nvml) if gpu else None
        self._snapshot: Snapshot | None = None
        self._taken = 0.0
        self._stopped = False
        self.passes = 0
        self.last_pass_s = 0.0
        instruments = [*_SYSTEM_INSTRUMENTS, *_PROCESS_INSTRUMENTS]
        if self._gpus is not None:
            instruments += _GPU_INSTRUMENTS
        self._slot = _register(meter, self, instruments)

    @property
    def root_pid(self) -> int:
        return self._tree.root_pid

    @property
    def gpus(self) -> GpuMetrics | None:
        """The NVML session, or None when there is no GPU to watch."""
        return self._gpus

    def observe_process_tree(self, root_pid: int) -> None:
        """Sum the ``process.*`` metrics over the tree under ``root_pid`` from now on."""
        with self._lock:
            if root_pid != self._tree.root_pid:
                self._tree = ProcessTree(root_pid, max_processes=self._max_processes)
                self._snapshot = None

    def stop(self) -> None:
        """Report nothing more and end the NVML session. Idempotent."""
        with self._lock:
            self._stopped = True
            self._snapshot = None
        with _slots_lock:
            if self._slot.sampler is self:
                self._slot.sampler = None
        if self._gpus is not None and os.getpid() == self._owner_pid:
            self._gpus.close()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def observations(self, name: str, *, fresh: bool = False) -> list[Observation]:
        """The observations of metric ``name`` from the current pass. ``fresh``: a new
        collection starts, take a new pass unless the last is younger than
        ``min_interval_s``."""
        if self._stopped or os.getpid() != self._owner_pid:
            return []
        with self._lock:
            if self._stopped:
                return []
            age = time.monotonic() - self._taken
            # a pass older than a few seconds cannot be this collection's, whoever asks first
            stale = age >= max(self._min_interval_s, _STALE_S)
            if self._snapshot is None or stale or (fresh and age >= self._min_interval_s):
                self._snapshot = self.sample()
                self._taken = time.monotonic()
            return self._snapshot.get(name, [])

    def sample(self) -> Snapshot:
        """Take one sampling pass now: every metric's observations. Never raises; a part
        that fails is reported (counted, logged at most once a minute) and left out."""
        started = time.perf_counter()
        snapshot: Snapshot = {}
        for where, part in (
            ("metrics.system", self._sample_system),
            ("metrics.process_tree", self._sample_tree),
            ("metrics.gpu", self._sample_gpus),
        ):
            try:
                part(snapshot)
            except Exception as exc:  # noqa: BLE001 - a callback must never raise
                report_internal_error(where, exc)
        self.passes += 1
        self.last_pass_s = time.perf_counter() - started
        return snapshot

    def _sample_system(self, snapshot: Snapshot) -> None:
        system = self._system.sample()
        if system.cpu_utilization is not None:
            snapshot[semconv.METRIC_SYSTEM_CPU_UTILIZATION] = [Observation(system.cpu_utilization)]
        snapshot[semconv.METRIC_SYSTEM_CPU_LOGICAL_COUNT] = [Observation(system.cpu_count)]
        snapshot[semconv.METRIC_SYSTEM_MEMORY_USAGE] = [
            Observation(system.memory_used, {semconv.SYSTEM_MEMORY_STATE: semconv.MEMORY_STATE_USED}),
            Observation(system.memory_available, {semconv.SYSTEM_MEMORY_STATE: semconv.MEMORY_STATE_FREE}),
        ]
        snapshot[semconv.METRIC_SYSTEM_MEMORY_LIMIT] = [Observation(system.memory_total)]
        snapshot[semconv.METRIC_SYSTEM_MEMORY_UTILIZATION] = [
            Observation(system.memory_utilization, {semconv.SYSTEM_MEMORY_STATE: semconv.MEMORY_STATE_USED})
        ]

    def _sample_tree(self, snapshot: Snapshot) -> None:
        tree = self._tree.sample()
        if tree is None:  # the root process is gone
            return
        snapshot[semconv.METRIC_PROCESS_CPU_TIME] = [
            Observation(tree.cpu_user_s, {semconv.CPU_MODE: semconv.CPU_MODE_USER}),
            Observation(tree.cpu_system_s, {semconv.CPU_MODE: semconv.CPU_MODE_SYSTEM}),
        ]
        if tree.cpu_utilization is not None:
            snapshot[semconv.METRIC_PROCESS_CPU_UTILIZATION] = [Observation(tree.cpu_utilization)]
        snapshot[semconv.METRIC_PROCESS_MEMORY_USAGE] = [Observation(tree.rss_bytes)]
        snapshot[semconv.METRIC_PROCESS_THREAD_COUNT] = [Observation(tree.threads)]
        snapshot[semconv.METRIC_PROCESS_COUNT] = [Observation(tree.processes)]

    def _sample_gpus(self, snapshot: Snapshot) -> None:
        if self._gpus is None:
            return
        for reading in self._gpus.read():
            attrs = reading.attributes
            values: list[tuple[str, float | int | None, dict[str, str]]] = [
                (
                    semconv.METRIC_GPU_UTILIZATION,
                    reading.utilization,
                    {**attrs, semconv.HW_GPU_TASK: semconv.HW_GPU_TASK_GENERAL},
                ),
                (semconv.METRIC_GPU_MEMORY_USAGE, reading.memory_used, attrs),
                (semconv.METRIC_GPU_MEMORY_LIMIT, reading.memory_total, attrs),
                (semconv.METRIC_HW_TEMPERATURE, reading.temperature, attrs),
                (semconv.METRIC_HW_POWER, reading.power, attrs),
                (semconv.METRIC_HW_ENERGY, reading.energy, attrs),
            ]
            if reading.memory_used is not None and reading.memory_total:
                values.append(
                    (semconv.METRIC_GPU_MEMORY_UTILIZATION, reading.memory_used / reading.memory_total, attrs)
                )
            for name, value, attributes in values:
                if value is not None:
                    snapshot.setdefault(name, []).append(Observation(value, attributes))
