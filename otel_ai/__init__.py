"""otel_ai: OpenTelemetry for autonomous AI-scientist runs.

A run is one trace: an ``ai.run`` root span, ``ai.stage`` spans per stage, ``ai.node``
spans per search-tree node, with every lifecycle event also emitted as a log-based event
for Loki. Four front doors produce the same telemetry:

- context managers: ``with otel_ai.run("run-1") as run: with run.stage("1_initial") ...``
- :class:`EventEmitter`, a drop-in for the seed pod worker's ``CloudEventEmitter``
- :class:`BatchEventEmitter`, a drop-in for its batching ``EventEmitter`` (the tree
  search's stream)
- :func:`event_callback`, for AI-Scientist-v2's ``event_callback(event_type, data)``

Configuration comes from the standard OTEL_* variables and our OTEL_AI_* ones (see
:mod:`otel_ai.config`); with no OTLP endpoint, telemetry goes to OTLP/JSON files under
OTEL_AI_DATA_DIR, which ``otel-ai show`` renders.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .config import ConfigurationError, Settings
    from .emitter import BatchEventEmitter, EventEmitter, event_callback
    from .export.providers import force_flush, shutdown
    from .model import Execution, Node, Paper, Run, Stage, Validation

__all__ = [
    "BatchEventEmitter",
    "ConfigurationError",
    "EventEmitter",
    "Execution",
    "Node",
    "Paper",
    "Run",
    "Settings",
    "Stage",
    "Validation",
    "__version__",
    "configure",
    "event_callback",
    "force_flush",
    "run",
    "shutdown",
]

# The front door is lazy: ``import otel_ai`` costs almost nothing, the OpenTelemetry SDK
# is imported on first use. Python children of ``otel-ai run`` import otel_ai at
# start-up, and most of them never emit anything.
_LAZY = {
    "BatchEventEmitter": "otel_ai.emitter",
    "ConfigurationError": "otel_ai.config",
    "Settings": "otel_ai.config",
    "EventEmitter": "otel_ai.emitter",
    "event_callback": "otel_ai.emitter",
    "force_flush": "otel_ai.export.providers",
    "shutdown": "otel_ai.export.providers",
    "Execution": "otel_ai.model",
    "Node": "otel_ai.model",
    "Paper": "otel_ai.model",
    "Run": "otel_ai.model",
    "Stage": "otel_ai.model",
    "Validation": "otel_ai.model",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_ai' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def configure(**settings: Any) -> Settings:
    """Set up tracing, logs and metrics for this process; returns the effective settings.

    Keyword arguments override the environment: ``service_name``, ``run_id``,
    ``data_dir``, ``artifacts_uri``, ``endpoint`` (and ``traces_endpoint``...),
    ``protocol`` ("grpc" or "http/protobuf"), ``headers``, ``disabled``, ``pod_id``,
    ``region``, ``queue_size``. A bad value raises :class:`ConfigurationError` naming the
    setting. Calling it again is harmless; the first configuration stays. The front
    doors configure from the environment on first use when this was never called.
    """
    from .export.providers import configure as _configure

    return _configure(**settings).settings


def run(
    run_id: str | None = None,
    *,
    pod_id: str | None = None,
    gpu: str | None = None,
    region: str | None = None,
    image: str | None = None,
    idea: str | None = None,
    **attributes: Any,
) -> Run:
    """Start a run: the ``ai.run`` root span of a new trace; emits ``ai.run.started``.

    Use it as a context manager; leaving the block ends the run as completed, an
    exception ends it as failed (recorded, then re-raised), KeyboardInterrupt as
    canceled. ``run_id`` defaults to OTEL_AI_RUN_ID, else a new id. Other keyword
    arguments become attributes of the run span. Under ``otel-ai run``, a run of the
    wrapper's id joins the wrapper's ``ai.run`` span instead of starting a second one.
    ``idea`` (the idea's title) is the run's input (``ai.run.idea``, ``input.value``);
    its outcome and best node become its output (``output.value``) when it ends.
    """
    from .model.vocabulary import open_run

    started = open_run(run_id, pod_id=pod_id, gpu=gpu, region=region, image=image, attributes=attributes)
    if idea is not None:
        started.set_idea(idea)
    return started
