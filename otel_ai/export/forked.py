"""What the SDK's providers redo in every forked child, and what otel_ai's skip.

At each fork the SDK's tracer, logger and meter providers detect their resource again
in the child (on a thread pool: 1.5-2 ms of a fresh child's CPU each) and its periodic
metric reader starts its thread again. otel_ai does not use a parent's pipeline in a
forked child: the child builds one of its own on first use, with its own pid and
``service.instance.id`` (:mod:`otel_ai.export.providers`). So that work bought nothing,
and every child paid it, whether it emitted or not: AI-Scientist-v2's Interpreter forks a
child per execution of a node's code, 60 and more a run, each from a pool worker that
holds two pipelines (its own and the one it inherited): 4-5 ms of each child's CPU.

Worse, the parent's metric reader, running again in a child that lived longer than an
export interval, exported the parent's cumulative points a second time, from the child.

Here the parent's providers only renew their locks in a child (the SDK's fork handling,
without the detection), and the parent's metric reader stays stopped there. otel_ai's
batch processors renew their locks and empty their queues at the fork, as the SDK's do,
but start their export thread only when the child records through them (the SDK's own
path for a record after a fork), not at the fork: 0.3-0.5 ms of each child's CPU per
processor, four in a child of a pool worker.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.util._once import Once


def handle_fork_without_detection(provider: Any, sdk_class: type) -> None:
    """``sdk_class._handle_fork(provider)`` (new locks, the resource merged with what
    the process-dependent detectors find), with nothing detected and nothing merged.

    Called in the child at the fork, before any other thread exists there, so the module's
    detection function can be swapped for the call alone. Merging an empty resource
    changes nothing but costs a new Resource and a pass over every tracer or logger
    handed out (0.1-0.25 ms of the child's CPU per provider): it is skipped too."""
    handle = getattr(sdk_class, "_handle_fork", None)
    if handle is None:
        return
    module = sys.modules.get(sdk_class.__module__)
    detect = getattr(module, "_get_process_dependent_resource", None)
    if module is None or detect is None:
        handle(provider)
        return
    module._get_process_dependent_resource = Resource.get_empty  # type: ignore[attr-defined]
    provider._update_resource = _merge_nothing
    try:
        handle(provider)
    finally:
        module._get_process_dependent_resource = detect  # type: ignore[attr-defined]
        del provider._update_resource


def _merge_nothing(resource: Resource) -> None:
    return None


class ProcessLoggerProvider(LoggerProvider):
    """The SDK's logger provider, light at a fork (see the module's text)."""

    def _handle_fork(self) -> None:
        handle_fork_without_detection(self, LoggerProvider)


class ProcessMeterProvider(MeterProvider):
    """The SDK's meter provider, light at a fork (see the module's text)."""

    def _handle_fork(self) -> None:
        handle_fork_without_detection(self, MeterProvider)


class ProcessMetricReader(PeriodicExportingMetricReader):
    """The SDK's periodic reader, stopped in a forked child: its meter provider holds the
    parent's points, which the parent exports, and the child's own pipeline has a reader
    of its own."""

    def _at_fork_reinit(self) -> None:
        return None


_quiet_classes: dict[type, type] = {}
_swap_lock = threading.Lock()


def _quiet(batch_class: type) -> type:
    """``batch_class`` (the SDK's ``BatchProcessor``) whose fork hook starts no thread."""
    quiet = _quiet_classes.get(batch_class)
    if quiet is None:

        class QuietAtFork(batch_class):  # type: ignore[misc]
            def _at_fork_reinit(self) -> None:
                # Called by the SDK at the fork, in the child, and again (through its
                # Once) when the child first records: the first renews what the
                # parent's threads may have held, the second starts the thread.
                pid = os.getpid()
                if getattr(self, "_otel_ai_renewed_in", None) == pid:
                    super()._at_fork_reinit()
                    return
                self._otel_ai_renewed_in = pid
                self._export_lock = threading.Lock()
                self._worker_awaken = threading.Event()
                self._queue.clear()
                self._bsp_reset_once = Once()  # the parent's may be done already

        quiet = _quiet_classes[batch_class] = QuietAtFork
    return quiet


def _starts_on_first_record(batch_class: Any) -> bool:
    """Whether this SDK's ``BatchProcessor.emit`` starts the thread again in a forked
    child itself (through its Once), so that its fork hook need not."""
    emit = getattr(getattr(batch_class, "emit", None), "__code__", None)
    return (
        isinstance(batch_class, type)
        and callable(getattr(batch_class, "_at_fork_reinit", None))
        and emit is not None
        and {"_pid", "_bsp_reset_once", "_at_fork_reinit"} <= set(emit.co_names)
    )


@contextmanager
def quiet_at_fork(processor_class: type) -> Iterator[None]:
    """Within the block, ``processor_class`` (an SDK batch processor) is built on a
    ``BatchProcessor`` that starts its thread in a forked child only on the child's first
    record. With an SDK that builds it otherwise, the SDK's processor as it is."""
    module: Any = sys.modules.get(processor_class.__module__)
    batch_class = getattr(module, "BatchProcessor", None)
    if module is None or not isinstance(batch_class, type) or not _starts_on_first_record(batch_class):
        yield
        return
    with _swap_lock:
        module.BatchProcessor = _quiet(batch_class)
        try:
            yield
        finally:
            module.BatchProcessor = batch_class
