"""Start-up of an instrumented Python child: post-import hooks, nothing heavier.

- ``concurrent.futures.process``: pool tasks carry the submitter's trace context and
  flush their telemetry before they return (:mod:`otel_ai.pools`).
- ``ai_scientist``: AI-Scientist-v2's tree search is instrumented when it is imported
  (:mod:`otel_ai.instrumentation`), if that instrumentation is available.
- ``opentelemetry.trace`` (under ``otel-ai run``): a global tracer provider that
  configures otel_ai on the first span (:mod:`otel_ai.bootstrap.lazy`).

The hooks themselves are :mod:`otel_ai.bootstrap.importhook`'s. The instrumentation and
the lazy provider are loaded by name when their hook fires (``importlib.import_module``):
they import the OpenTelemetry API, which a child that never emits must not pay for.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from ..pools import instrument_process_pool
from .importhook import finder, forget, when_imported

__all__ = ["finder", "forget", "instrument_ai_scientist_on_import", "start", "when_imported"]

INSTRUMENTATION = "otel_ai.instrumentation"
LAZY_PROVIDER = "otel_ai.bootstrap.lazy"
CHANNEL = "otel_ai.bootstrap.channel"  # the model's listener that reports to the wrapper

_started = False


def _disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def start() -> None:
    """Install the hooks (once per process). Never raises."""
    global _started
    if _started or _disabled():
        return
    _started = True
    when_imported("concurrent.futures.process", instrument_process_pool)
    when_imported("ai_scientist", _on_ai_scientist)
    if os.environ.get("OTEL_AI_CHANNEL"):
        when_imported("opentelemetry.trace", _on_opentelemetry_trace)
        when_imported("otel_ai.model.listeners", _on_model)


def _on_opentelemetry_trace(module: ModuleType) -> None:
    importlib.import_module(LAZY_PROVIDER).install()


def _on_model(module: ModuleType) -> None:
    # the model's news to the wrapper; loaded by name only once the model is imported
    importlib.import_module(CHANNEL).install()


def instrument_ai_scientist_on_import() -> None:
    """Instrument AI-Scientist-v2 when ``ai_scientist`` is imported (at once if it is),
    unless OTEL_SDK_DISABLED is true. Never raises."""
    if _disabled():
        return
    when_imported("ai_scientist", _on_ai_scientist)


def _on_ai_scientist(module: ModuleType) -> None:
    try:
        instrumentation = importlib.import_module(INSTRUMENTATION)
    except ImportError:
        return
    instrumentor = instrumentation.AIScientistInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:  # opentelemetry-instrument may have done it
        instrumentor.instrument()
