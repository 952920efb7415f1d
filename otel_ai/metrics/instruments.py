"""The search metrics of SPEC section 4 and the meter every instrument of ours is made on.

The pipeline (:mod:`otel_ai.export.providers`) hands its meter down with
:func:`use_meter` when it is imported; nothing here looks the pipeline up. Before that
(a caller that never touched the pipeline) instruments are made on the OpenTelemetry
API's global meter, which follows whatever provider is installed later.
"""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry import metrics as metrics_api
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from .. import semconv
from ..version import __version__

_meter_source: Callable[[], Meter] | None = None


def use_meter(source: Callable[[], Meter]) -> None:
    """Make ``source`` (called on each use, so a reconfigured or forked pipeline counts)
    the meter the instruments of this package are made on."""
    global _meter_source
    _meter_source = source


def current_meter() -> Meter:
    """The meter handed down by the pipeline (see :func:`use_meter`)."""
    source = _meter_source
    if source is None:
        return metrics_api.get_meter(semconv.SCOPE_NAME, __version__)
    return source()


class Instruments:
    """The search metrics of SPEC section 4, fed by the model's own events.

    Gauges are observable: an event only stores the latest value (a dict assignment on
    the experiment's thread); the metric reader's thread reports it at collection.
    """

    def __init__(self, meter: Meter) -> None:
        self.nodes = meter.create_counter(
            semconv.METRIC_NODES, unit="{node}", description="Search-tree nodes completed"
        )
        self.node_duration = meter.create_histogram(
            semconv.METRIC_NODE_DURATION, unit="s", description="Node lifetime, creation to completion"
        )
        self.node_exec_time = meter.create_histogram(
            semconv.METRIC_NODE_EXEC_TIME, unit="s", description="Execution time of a node's code"
        )
        self._progress: dict[tuple[str, str], float] = {}
        self._best: dict[tuple[str, str], float] = {}
        meter.create_observable_gauge(
            semconv.METRIC_STAGE_PROGRESS,
            callbacks=[self._observe_progress],
            unit="1",
            description="Stage progress, 0..1",
        )
        meter.create_observable_gauge(
            semconv.METRIC_STAGE_BEST_METRIC,
            callbacks=[self._observe_best],
            unit="1",
            description="Best node metric of the stage so far",
        )
        self.artifact_uploaded = meter.create_counter(
            semconv.METRIC_ARTIFACT_UPLOADED, unit="By", description="Bytes of artifacts uploaded"
        )
        self.token_usage = meter.create_histogram(
            semconv.METRIC_GEN_AI_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used",
            # the GenAI semantic conventions' advised boundaries: 1, 4, 16 ... 4**13
            explicit_bucket_boundaries_advisory=[float(4**i) for i in range(14)],
        )

    def stage_progress(self, run_id: str, stage: str, value: float) -> None:
        self._progress[(run_id, stage)] = value

    def best_metric(self, run_id: str, stage: str, value: float) -> None:
        self._best[(run_id, stage)] = value

    def _observe_progress(self, options: CallbackOptions) -> list[Observation]:
        return _observe(self._progress)

    def _observe_best(self, options: CallbackOptions) -> list[Observation]:
        return _observe(self._best)


def _observe(latest: dict[tuple[str, str], float]) -> list[Observation]:
    return [
        Observation(value, {semconv.RUN_ID: run_id, semconv.STAGE_NAME: stage})
        for (run_id, stage), value in list(latest.items())
    ]


_instruments: tuple[Meter, Instruments] | None = None


def instruments() -> Instruments:
    """The search metrics on the current meter (made once per meter)."""
    global _instruments
    meter = current_meter()
    cached = _instruments
    if cached is None or cached[0] is not meter:
        cached = (meter, Instruments(meter))
        _instruments = cached
    return cached[1]
