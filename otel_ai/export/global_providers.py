"""Our providers as OpenTelemetry's global ones, unless the application set its own."""

from __future__ import annotations

from typing import Any

import opentelemetry._logs._internal as logs_internal
import opentelemetry.metrics._internal as metrics_internal
from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry._logs import get_logger_provider, set_logger_provider
from opentelemetry.util._once import Once


def install_globals(
    tracer_provider: Any, logger_provider: Any, meter_provider: Any, *, replacing: tuple[Any, Any, Any] | None
) -> None:
    """Make these providers the OTel globals (so other instrumentations use them) unless
    the application installed its own; replace the globals when they are ``replacing``'s
    (the providers of the pipeline these succeed: a forked child's parent's)."""
    if replacing is not None:
        if trace_api.get_tracer_provider() is replacing[0]:
            forget_globals("traces")
        if get_logger_provider() is replacing[1]:
            forget_globals("logs")
        if metrics_api.get_meter_provider() is replacing[2]:
            forget_globals("metrics")
    if getattr(trace_api.get_tracer_provider(), "_otel_ai_lazy", False):
        forget_globals("traces")  # the bootstrap's stand-in, waiting for this pipeline
    if isinstance(trace_api.get_tracer_provider(), trace_api.ProxyTracerProvider):
        trace_api.set_tracer_provider(tracer_provider)
    if type(get_logger_provider()).__name__ == "ProxyLoggerProvider":
        set_logger_provider(logger_provider)
    if type(metrics_api.get_meter_provider()).__name__ == "_ProxyMeterProvider":
        metrics_api.set_meter_provider(meter_provider)


def forget_globals(*signals: str) -> None:
    """Undo the OTel API's set-once guard (as the SDK's own test utilities do)."""
    if "traces" in signals:
        trace_api._TRACER_PROVIDER_SET_ONCE = Once()
        trace_api._TRACER_PROVIDER = None
    if "logs" in signals:
        logs_internal._LOGGER_PROVIDER_SET_ONCE = Once()
        logs_internal._LOGGER_PROVIDER = None
    if "metrics" in signals:
        metrics_internal._METER_PROVIDER_SET_ONCE = Once()
        metrics_internal._METER_PROVIDER = None
