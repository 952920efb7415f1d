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

from collections.abc import Callable
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import TracerProvider

from .forked import handle_fork_without_detection


class ProcessTracerProvider(TracerProvider):
    """The SDK's provider, handing out :class:`ProcessTracer` s.

    ``default_parent``: the span context a span with no parent gets (the wrapper's run).
    """

    def __init__(
        self, *args: Any, default_parent: trace_api.SpanContext | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._default_parent: trace_api.Span | None = None
        self._default_context: Context | None = None
        if default_parent is not None:
            self._default_parent = trace_api.NonRecordingSpan(default_parent)
            self._default_context = trace_api.set_span_in_context(self._default_parent, Context())
        self._successor: ProcessTracerProvider | None = None
        self._successor_factory: Callable[[], TracerProvider | None] | None = None

    def succeeded_by(self, provider: ProcessTracerProvider) -> None:
        """In a forked child: ``provider`` replaces this one, for the tracers handed out too."""
        self._successor = provider
        self._successor_factory = None

    def succeeded_lazily(self, factory: Callable[[], TracerProvider | None]) -> None:
        """In a forked child: ``factory`` builds the provider that replaces this one (and
        calls :meth:`succeeded_by`) when a tracer handed out before the fork next starts a span."""
        self._successor_factory = factory

    def _handle_fork(self) -> None:
        # the child replaces this provider by its own: no resource detection (.forked)
        handle_fork_without_detection(self, TracerProvider)

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace_api.Tracer:
        tracer = super().get_tracer(*args, **kwargs)
        if isinstance(tracer, trace_api.NoOpTracer):
            return tracer
        return ProcessTracer(self, tracer, args, kwargs)


class ProcessTracer(trace_api.Tracer):
    """Delegates to the SDK's tracer of the process's current provider."""

    def __init__(
        self,
        provider: ProcessTracerProvider,
        tracer: trace_api.Tracer,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self._provider = provider
        self._tracer = tracer
        self._args = args
        self._kwargs = kwargs

    def start_span(
        self, name: str, context: Context | None = None, *args: Any, **kwargs: Any
    ) -> trace_api.Span:
        provider = self._provider
        factory = provider._successor_factory
        if factory is not None and provider._successor is None:  # forked, nothing built yet
            factory()
        if provider._successor is not None:  # forked since: the child's provider
            while provider._successor is not None:
                provider = provider._successor
            self._tracer = TracerProvider.get_tracer(provider, *self._args, **self._kwargs)
            self._provider = provider
        if context is None and provider._default_parent is not None:
            current = context_api.get_current()
            if not current:  # nothing attached (a new thread, a pool's)
                context = provider._default_context
            elif trace_api.get_current_span(current).get_span_context().is_valid:
                context = current
            else:  # no span, other values (baggage): keep them
                context = trace_api.set_span_in_context(provider._default_parent, current)
        return self._tracer.start_span(name, context, *args, **kwargs)

    # The SDK's own: it starts the span with self.start_span (ours) on entry, so the parent
    # is chosen then, also at each call of a function it decorates (async ones too).
    start_as_current_span = sdk_trace.Tracer.start_as_current_span

    def __getattr__(self, name: str) -> Any:
        if name == "_tracer":  # not set yet (a copy being built)
            raise AttributeError(name)
        return getattr(self._tracer, name)
