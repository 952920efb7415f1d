"""The tracers otel_ai's provider hands out to other code (instrumentations, the
experiment's own spans).

Two things the SDK's tracers cannot do for us:

**Follow the process across fork.** A forked child gets providers of its own (its pid in
the resource, its own export threads and files), but a tracer taken before the fork
(``tracer = trace.get_tracer(__name__)`` at module level, the usual idiom) still points at
the parent's provider, whose spans the child would never flush. Our tracers move to the
child's provider at their next span.

**Make the run span the default parent, in every thread.** In a process started by
``otel-ai run``, a span started with the plain OpenTelemetry API (the experiment's own, or
an installed instrumentation's: openai-v2, requests, httpx...) must join the run's trace.
The OTel context cannot carry that by itself: ``TRACEPARENT`` names the run span in the
environment, and a context attached in the main thread is empty in every other thread
(contextvars start empty there) and in a thread pool. So the parent is chosen at span
start: the span the caller asked for, else the current span, else the run span.

- ``context`` not given (the usual call): the current context's span is the parent when
  there is one (a stage or node of ours, a span of the experiment); when there is none, the
  run span is, and the rest of the current context (baggage) is kept.
- ``context`` given: used as the caller meant, even an empty ``Context()``, which is how
  code asks for a trace of its own (``otel_ai.run("another-id")`` does), and what a server
  instrumentation passes for a request that came without trace context.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider

try:  # start_as_current_span also decorates async functions, as the SDK's does
    from opentelemetry.util._decorator import _agnosticcontextmanager as _context_manager
except ImportError:  # pragma: no cover - an older API
    from contextlib import contextmanager as _context_manager


class ProcessTracerProvider(TracerProvider):
    """The SDK's provider, handing out :class:`ProcessTracer` s.

    ``default_parent``: the span context a span with no parent gets (the wrapper's run).
    """

    def __init__(self, *args: Any, default_parent: trace_api.SpanContext | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._default_parent = trace_api.NonRecordingSpan(default_parent) if default_parent is not None else None
        self._successor: ProcessTracerProvider | None = None

    def succeeded_by(self, provider: ProcessTracerProvider) -> None:
        """In a forked child: ``provider`` replaces this one, for the tracers handed out too."""
        self._successor = provider

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace_api.Tracer:
        tracer = super().get_tracer(*args, **kwargs)
        if isinstance(tracer, trace_api.NoOpTracer):
            return tracer
        return ProcessTracer(self, tracer, args, kwargs)


class ProcessTracer(trace_api.Tracer):
    """Delegates to the SDK's tracer of the process's current provider."""

    def __init__(self, provider: ProcessTracerProvider, tracer: trace_api.Tracer, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._provider = provider
        self._tracer = tracer
        self._args = args
        self._kwargs = kwargs

    def _current(self, context: Context | None) -> tuple[trace_api.Tracer, Context | None]:
        provider = self._provider
        if provider._successor is not None:  # forked since: the child's provider
            while provider._successor is not None:
                provider = provider._successor
            self._tracer = TracerProvider.get_tracer(provider, *self._args, **self._kwargs)
            self._provider = provider
        default = provider._default_parent
        if context is not None or default is None:
            return self._tracer, context  # the caller's choice, even an empty context
        current = context_api.get_current()
        if trace_api.get_current_span(current).get_span_context().is_valid:
            return self._tracer, None  # the current span: the SDK finds it itself
        return self._tracer, trace_api.set_span_in_context(default, current)

    def start_span(self, name: str, context: Context | None = None, *args: Any, **kwargs: Any) -> trace_api.Span:
        tracer, context = self._current(context)
        return tracer.start_span(name, context, *args, **kwargs)

    @_context_manager  # the parent is chosen on entry: a decorated function gets the one current at each call
    def start_as_current_span(  # type: ignore[override]
        self, name: str, context: Context | None = None, *args: Any, **kwargs: Any
    ) -> Iterator[trace_api.Span]:
        tracer, context = self._current(context)
        with tracer.start_as_current_span(name, context, *args, **kwargs) as span:
            yield span

    def __getattr__(self, name: str) -> Any:
        if name == "_tracer":  # not set yet (a copy being built)
            raise AttributeError(name)
        return getattr(self._tracer, name)
