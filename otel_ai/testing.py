"""Helpers for tests of code that uses otel_ai (and for otel_ai's own tests)."""

from __future__ import annotations

import os
import sys

from .bootstrap.startup import forget as forget_import_hook
from .export.providers import reset_for_tests
from .model.events import reset_seq
from .model.registry import registry
from .propagation import INSTRUMENTED_RUN_ENV, INSTRUMENTED_STAGE_ENV
from .propagation import reset as reset_propagation
from .redaction import reset_default_redactor


def reset() -> None:
    """Shut down telemetry and forget every global: the pipeline, the OTel global
    providers, the runs of this process, the event sequence, the redactor and what was read
    about a wrapping ``otel-ai run``, and the AI-Scientist instrumentation a drop-in
    emitter asked for.
    The next front-door call or :func:`otel_ai.configure` starts afresh."""
    reset_for_tests()
    registry.clear()
    reset_seq()
    reset_default_redactor()
    reset_propagation()
    forget_import_hook("ai_scientist")
    instrumentation = sys.modules.get("otel_ai.instrumentation")
    if instrumentation is not None:
        instrumentor = instrumentation.AIScientistInstrumentor()
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
    os.environ.pop(INSTRUMENTED_RUN_ENV, None)
    os.environ.pop(INSTRUMENTED_STAGE_ENV, None)
