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
without the detection), and the parent's metric reader stays stopped there. The SDK's
batch processors start their threads again at the fork as before (their queues are
emptied; they export nothing of the parent's).
"""

from __future__ import annotations

import sys
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource


def handle_fork_without_detection(provider: Any, sdk_class: type) -> None:
    """``sdk_class._handle_fork(provider)`` (new locks, the resource merged with what
    the process-dependent detectors find), with nothing detected.

    Called in the child at the fork, before any other thread exists there, so the module's
    detection function can be swapped for the call alone."""
    handle = getattr(sdk_class, "_handle_fork", None)
    if handle is None:
        return
    module = sys.modules.get(sdk_class.__module__)
    detect = getattr(module, "_get_process_dependent_resource", None)
    if module is None or detect is None:
        handle(provider)
        return
    module._get_process_dependent_resource = Resource.get_empty  # type: ignore[attr-defined]
    try:
        handle(provider)
    finally:
        module._get_process_dependent_resource = detect  # type: ignore[attr-defined]


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
