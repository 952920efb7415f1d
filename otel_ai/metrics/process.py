"""System and process-tree readings with psutil, one bounded pass at a time.

:class:`ProcessTree` sums CPU time, resident memory, threads and processes over a root
process and all its descendants (workers and children included, as they come and go).
:class:`SystemReadings` reads the machine's CPU and memory. Both keep the previous pass
to turn cumulative CPU times into utilisation; neither raises for a process that
vanished or cannot be read.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import psutil

logger = logging.getLogger("otel_ai.metrics")

DEFAULT_MAX_PROCESSES = 4096
_MIN_CPU_WINDOW_S = 0.5


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity), else the machine's logical CPUs."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


@dataclass(frozen=True)
class TreeSample:
    """The process tree at one pass."""

    processes: int
    threads: int
    rss_bytes: int
    cpu_user_s: float  # cumulative (from the first pass's total on), never decreasing
    cpu_system_s: float
    # share of the available CPUs, 0..1, over the last window of at least 0.5 s
    # (on the first pass: since the root process started)
    cpu_utilization: float | None
    truncated: bool = False  # the tree had more than max_processes members


class ProcessTree:
    """The tree of processes under ``root_pid`` (the root included), summed.

    CPU time of the tree is ``user + system`` of its live members plus their
    ``children_user + children_system``: the kernel adds a child's CPU time to its
    parent's when the parent reaps it, so work done by workers that have already exited
    still counts and nothing needs remembering per process. Only processes reaped outside
    the tree (orphans adopted by init) take their last interval's CPU time with them;
    the exported total is kept monotonic by ignoring such drops.

    Resident memory is the sum of each member's RSS (pages shared between a forked
    parent and child count twice, as in ``ps``). A pass walks at most ``max_processes``
    members.
    """

    def __init__(self, root_pid: int | None = None, *, max_processes: int = DEFAULT_MAX_PROCESSES) -> None:
        self.root_pid = os.getpid() if root_pid is None else int(root_pid)
        self.max_processes = max_processes
        self._root: psutil.Process | None = None
        self._cpus = available_cpus()
        self._last_raw: tuple[float, float] | None = None
        self._cumulative = [0.0, 0.0]
        self._window = (0.0, 0.0)  # (cumulative CPU s, monotonic time) utilisation is measured from
        self._utilization: float | None = None
        self._truncation_logged = False

    def _root_process(self) -> psutil.Process | None:
        root = self._root
        if root is None:
            try:
                root = self._root = psutil.Process(self.root_pid)
            except psutil.Error:
                return None
        return root

    def sample(self) -> TreeSample | None:
        """One pass over the tree; None when the root process is gone."""
        root = self._root_process()
        if root is None:
            return None
        try:
            members = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return None
        except psutil.Error:
            members = [root]
        truncated = len(members) > self.max_processes
        if truncated:
            members = members[: self.max_processes]
            if not self._truncation_logged:
                self._truncation_logged = True
                logger.warning(
                    "otel_ai: process tree of pid %d has more than %d processes; sampling the first %d",
                    self.root_pid,
                    self.max_processes,
                    self.max_processes,
                )
        user = system = 0.0
        rss = threads = count = 0
        for process in members:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    memory = process.memory_info()
                    nthreads = process.num_threads()
            except psutil.Error:  # exited since the walk, a zombie, or not ours to read
                continue
            user += times.user + getattr(times, "children_user", 0.0)
            system += times.system + getattr(times, "children_system", 0.0)
            rss += memory.rss
            threads += nthreads
            count += 1
        if count == 0:
            return None
        now = time.monotonic()
        if self._last_raw is None:
            self._cumulative = [user, system]
            # the first pass: the tree's share since the root started
            try:
                lifetime = time.time() - root.create_time()
            except psutil.Error:
                lifetime = 0.0
            if lifetime > 0:
                self._utilization = min((user + system) / lifetime / self._cpus, 1.0)
            self._window = (self._cumulative[0] + self._cumulative[1], now)
        else:
            self._cumulative[0] += max(user - self._last_raw[0], 0.0)
            self._cumulative[1] += max(system - self._last_raw[1], 0.0)
            total = self._cumulative[0] + self._cumulative[1]
            elapsed = now - self._window[1]
            # CPU times tick at 10 ms: a shorter window would say 0% or 300%; keep the last
            if elapsed >= _MIN_CPU_WINDOW_S:
                self._utilization = min((total - self._window[0]) / elapsed / self._cpus, 1.0)
                self._window = (total, now)
        self._last_raw = (user, system)
        return TreeSample(
            count, threads, rss, self._cumulative[0], self._cumulative[1], self._utilization, truncated
        )


@dataclass(frozen=True)
class SystemSample:
    """The machine at one pass."""

    cpu_utilization: float | None  # busy share of all CPUs since the previous pass (first: since boot)
    cpu_count: int
    memory_total: int
    memory_available: int  # what new allocations can get without swapping

    @property
    def memory_used(self) -> int:
        """``total - available``: what new allocations cannot get (psutil's ``used``)."""
        return max(self.memory_total - self.memory_available, 0)

    @property
    def memory_utilization(self) -> float:
        return self.memory_used / self.memory_total if self.memory_total else 0.0


class SystemReadings:
    """Machine-wide CPU and memory. CPU utilisation is computed from ``/proc/stat``-style
    cumulative times kept here, not with ``psutil.cpu_percent()``, whose module-global
    state the experiment itself may be using."""

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None
        self._utilization: float | None = None
        self._cpus = psutil.cpu_count(logical=True) or 1

    def sample(self) -> SystemSample:
        times = psutil.cpu_times()
        # guest time is already counted in user/nice on Linux (as psutil.cpu_percent does)
        total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
        idle = times.idle + getattr(times, "iowait", 0.0)
        busy = total - idle
        # the first pass: since boot; a pass within one clock tick of the last: as then
        last_total, last_busy = self._last if self._last is not None else (0.0, 0.0)
        d_total = total - last_total
        if d_total > 0:
            self._utilization = min(max((busy - last_busy) / d_total, 0.0), 1.0)
            self._last = (total, busy)
        utilization = self._utilization
        memory = psutil.virtual_memory()
        return SystemSample(
            cpu_utilization=utilization,
            cpu_count=self._cpus,
            memory_total=memory.total,
            memory_available=memory.available,
        )
