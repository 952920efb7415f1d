"""A tracer provider that configures otel_ai on the first span, not at start-up.

In a Python child of ``otel-ai run``, code that uses the OpenTelemetry API directly (an
LLM client instrumentation, the experiment's own spans) must export like otel_ai does,
but configuring the SDK in every child at start-up costs ~200 ms. The bootstrap installs
this provider as the global one when ``opentelemetry.trace`` is imported; its tracers
configure otel_ai (from the environment ``otel-ai run`` set) when they start a span, and
otel_ai then installs its real provider as the global one.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace

try:  # like the SDK's: also decorates async functions, ending the span when they do
    from opentelemetry.util._decorator import _agnosticcontextmanager as _context_manager
except ImportError:  # pragma: no cover - an older API
    from contextlib import contextmanager as _context_manager  # type: ignore[assignment]

# loaded by name on the first span: importing it imports and configures the SDK
PROVIDERS = "otel_ai.export.providers"


class LazyTracerProvider(trace.TracerProvider):
    _otel_ai_lazy = True

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _LazyTracer(args, kwargs)


class _LazyTracer(trace.Tracer):
    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._args = args
        self._kwargs = kwargs
        self._real: trace.Tracer | None = None

    def _tracer(self) -> trace.Tracer:
        if self._real is None:
            provider = importlib.import_module(PROVIDERS).get_pipeline().tracer_provider
            if provider is None:  # telemetry disabled
                return trace.NoOpTracer()
            self._real = provider.get_tracer(*self._args, **self._kwargs)
        return self._real

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self._tracer().start_span(*args, **kwargs)

    @_context_manager
    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Iterator[trace.Span]:
        with self._tracer().start_as_current_span(*args, **kwargs) as span:
            yield span


def install() -> None:
    """Make the lazy provider the global one, unless a provider is already set."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(LazyTracerProvider())
