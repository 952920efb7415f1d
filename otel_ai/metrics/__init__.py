"""Metrics: search progress, system, process tree and GPU (SPEC section 4).

- The search metrics (``ai.stage.progress``, ``ai.nodes``, ``ai.node.duration``...) are
  fed by the model's own events (:class:`otel_ai.metrics.instruments.Instruments`);
  :func:`record_token_usage` and :func:`record_artifact_uploaded` are the entry points
  for the LLM instrumentation and the artifact uploader.
- :func:`start` registers the system, process-tree and GPU metrics on a meter: pulled by
  the metric reader at each collection (OTEL_METRIC_EXPORT_INTERVAL, 15 s by default in
  otel_ai), on the reader's thread, one bounded pass per collection.

Nothing here imports the pipeline: it hands its meter down
(:func:`otel_ai.metrics.instruments.use_meter`) and passes the detected GPUs to the
resource.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry.metrics import Meter

from .genai import record_artifact_uploaded, record_token_usage
from .gpu import GpuInfo, detect_gpus
from .instruments import current_meter
from .process import DEFAULT_MAX_PROCESSES
from .sampler import Sampler

__all__ = [
    "DEFAULT_INTERVAL_S",
    "GpuInfo",
    "Sampler",
    "current",
    "detect_gpus",
    "observe_process_tree",
    "record_artifact_uploaded",
    "record_token_usage",
    "start",
    "stop",
]

DEFAULT_INTERVAL_S = 15.0
"""otel_ai's default metric collection interval (the SDK's own default is 60 s)."""

_lock = threading.Lock()
_current: Sampler | None = None


def start(
    meter: Meter,
    *,
    root_pid: int | None = None,
    gpu: bool = True,
    nvml: Any | None = None,
    min_interval_s: float = 1.0,
    max_processes: int = DEFAULT_MAX_PROCESSES,
) -> Sampler:
    """Register the system, process-tree and GPU metrics on ``meter``; returns the sampler.

    The metrics are observable instruments read by the meter provider's reader at each
    collection; nothing runs on the caller's thread afterwards. ``root_pid`` is the root
    of the process tree the ``process.*`` metrics sum over (default: this process, so
    its workers and children are included). ``gpu=False`` skips NVML; ``nvml`` is the
    NVML module to use (default: nvidia-ml-py's ``pynvml`` when a GPU was detected).
    Passes are never taken more often than ``min_interval_s``; a tree walk visits at most
    ``max_processes`` processes.

    The sampler becomes this process's current one (:func:`current`); one started before
    is stopped. Without a GPU, driver or library there are no GPU metrics and one INFO
    line, never an error.
    """
    global _current
    sampler = Sampler(
        meter,
        root_pid=root_pid,
        gpu=gpu,
        nvml=nvml,
        min_interval_s=min_interval_s,
        max_processes=max_processes,
    )
    with _lock:
        previous, _current = _current, sampler
    if previous is not None:
        previous.stop()
    return sampler


def current() -> Sampler | None:
    """The sampler :func:`start` last started in this process, unless stopped."""
    sampler = _current
    return sampler if sampler is not None and not sampler.stopped else None


def observe_process_tree(root_pid: int) -> Sampler:
    """Make the ``process.*`` metrics sum over the tree under ``root_pid``.

    For the ``otel-ai run`` wrapper, whose experiment is a child process: it moves the
    current sampler's root, or starts a sampler on the process's pipeline when none runs.
    """
    sampler = current()
    if sampler is None:
        sampler = start(current_meter(), root_pid=root_pid)
    else:
        sampler.observe_process_tree(root_pid)
    return sampler


def stop() -> None:
    """Stop the current sampler (its instruments then report nothing)."""
    global _current
    with _lock:
        sampler, _current = _current, None
    if sampler is not None:
        sampler.stop()
