"""Helpers for tests of code that uses otel_ai (and for otel_ai's own tests)."""

from __future__ import annotations

from .export.providers import _reset_for_tests
from .model.events import set_seq
from .model.registry import registry
from .propagation import reset as reset_propagation
from .redaction import reset_default_redactor


def reset() -> None:
    """Shut down telemetry and forget every global: the pipeline, the OTel global
    providers, the runs of this process, the event sequence, the redactor and what was read
    about a wrapping ``otel-ai run``.
    The next front-door call or :func:`otel_ai.configure` starts afresh."""
    _reset_for_tests()
    registry.clear()
    set_seq(0)
    reset_default_redactor()
    reset_propagation()
