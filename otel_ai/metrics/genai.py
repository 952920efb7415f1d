"""Entry points for metrics that other parts record: LLM token usage, artifact uploads.

``gen_ai.client.token.usage`` follows the OTel GenAI semantic conventions (a histogram
in ``{token}``, one measurement per token type per call, with
``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
``gen_ai.response.model`` and ``gen_ai.token.type``), plus ``ai.run.id`` and
``ai.stage.name`` so a run's and a stage's spend can be summed. No node ids: metric
attributes stay low-cardinality.

:class:`TokenUsageProcessor` records it for every span that ends with
``gen_ai.usage.input_tokens`` / ``gen_ai.usage.output_tokens``, whoever made it (the
maintained ``opentelemetry-instrumentation-openai-v2`` / ``-anthropic``, streams
included, or otel_ai's own LLM hooks), with the run, stage and node it ran under (the
nearest ``ai.node`` / ``ai.stage`` / ``ai.run`` span above it in this process), and hands
the counts to the listeners registered with :func:`on_usage` (the token totals of nodes,
stages and runs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from .. import semconv
from .._internal import call_safely, never_raise
from .instruments import instruments

# The run open in this process (the fallback run id): registered by the layer that owns
# runs (the model), never imported from here.
_current_run_id: Callable[[], str | None] | None = None


def provide_current_run(current_run_id: Callable[[], str | None]) -> None:
    """Register where the run open in this process comes from (the fallback run id)."""
    global _current_run_id
    _current_run_id = current_run_id


def _count(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number >= 0 else None


def _run_and_stage(run_id: str | None, stage: str | None) -> tuple[str | None, str | None]:
    """Explicit values first, then the active span's (every span of ours carries
    ``ai.run.id``; node and stage spans ``ai.stage.name``), then the open run."""
    if run_id is not None and stage is not None:
        return run_id, stage
    attributes = getattr(trace_api.get_current_span(), "attributes", None) or {}
    run_id = run_id if run_id is not None else attributes.get(semconv.RUN_ID)
    stage = stage if stage is not None else attributes.get(semconv.STAGE_NAME)
    if run_id is None and _current_run_id is not None:
        run_id = _current_run_id()
    return (None if run_id is None else str(run_id)), (None if stage is None else str(stage))


@never_raise()
def record_token_usage(
    input_tokens: Any = None,
    output_tokens: Any = None,
    *,
    provider: str | None = None,
    request_model: str | None = None,
    response_model: str | None = None,
    operation: str = semconv.GEN_AI_OPERATION_CHAT,
    run_id: str | None = None,
    stage: str | None = None,
) -> None:
    """Record one LLM call's tokens in ``gen_ai.client.token.usage``.

    ``input_tokens`` and ``output_tokens`` are counts (None or a negative or non-numeric
    value: that type is not recorded). ``provider`` is ``gen_ai.provider.name``
    (``openai``, ``anthropic``, ...), ``operation`` ``gen_ai.operation.name``. ``run_id``
    and ``stage`` default to the active span's ``ai.run.id`` / ``ai.stage.name``, else the
    run open in this process. Never raises.
    """
    run, stage_name = _run_and_stage(run_id, stage)
    attributes: dict[str, str] = {semconv.GEN_AI_OPERATION_NAME: str(operation)}
    for key, value in (
        (semconv.GEN_AI_PROVIDER_NAME, provider),
        (semconv.GEN_AI_REQUEST_MODEL, request_model),
        (semconv.GEN_AI_RESPONSE_MODEL, response_model),
        (semconv.RUN_ID, run),
        (semconv.STAGE_NAME, stage_name),
    ):
        if value is not None:
            attributes[key] = str(value)
    histogram = instruments().token_usage
    for token_type, value in (
        (semconv.GEN_AI_TOKEN_TYPE_INPUT, input_tokens),
        (semconv.GEN_AI_TOKEN_TYPE_OUTPUT, output_tokens),
    ):
        count = _count(value)
        if count is not None:
            histogram.record(count, {**attributes, semconv.GEN_AI_TOKEN_TYPE: token_type})


@never_raise()
def record_artifact_uploaded(size_bytes: Any, *, run_id: str | None = None, kind: str | None = None) -> None:
    """Add an uploaded artifact's bytes to ``ai.artifact.uploaded`` (``ai.run.id``,
    ``ai.artifact.kind``). ``run_id`` defaults as for :func:`record_token_usage`."""
    count = _count(size_bytes)
    if count is None:
        return
    run, _ = _run_and_stage(run_id, "")
    attributes = {semconv.ARTIFACT_KIND: str(kind)} if kind is not None else {}
    if run is not None:
        attributes[semconv.RUN_ID] = run
    instruments().artifact_uploaded.add(count, attributes)


@dataclass(frozen=True)
class UsageScope:
    """The run, stage and node an LLM span ran under (span ids in its trace)."""

    run_id: str | None
    stage_name: str | None = None
    stage_span_id: int | None = None
    node_span_id: int | None = None


UsageListener = Callable[[int, "UsageScope | None", int, int], None]
_listeners: list[UsageListener] = []
_STAGE_PREFIX = semconv.SPAN_STAGE + " "
_NODE_PREFIX = semconv.SPAN_NODE + " "


def on_usage(listener: UsageListener) -> None:
    """Call ``listener(trace_id, scope, input_tokens, output_tokens)`` for each span that
    ends with token usage (``scope`` None: under no run, stage or node span of ours)."""
    if listener not in _listeners:
        _listeners.append(listener)


def _own_scope(span: Any) -> UsageScope | None:
    """The scope a run, stage or node span of ours opens (None for any other span)."""
    attributes = getattr(span, "attributes", None)
    name = getattr(span, "name", None)
    if not attributes or not isinstance(name, str) or semconv.RUN_ID not in attributes:
        return None
    run_id = str(attributes[semconv.RUN_ID])
    stage_name = attributes.get(semconv.STAGE_NAME)
    context = span.get_span_context()
    if name.startswith(_NODE_PREFIX):
        parent = getattr(span, "parent", None)
        return UsageScope(
            run_id,
            None if stage_name is None else str(stage_name),
            None if parent is None else parent.span_id,
            context.span_id,
        )
    if name.startswith(_STAGE_PREFIX):
        return UsageScope(run_id, None if stage_name is None else str(stage_name), context.span_id)
    if name == semconv.SPAN_RUN:
        return UsageScope(run_id)
    return None


class TokenUsageProcessor(SpanProcessor):
    """Token usage of every LLM span, whoever made it: ``gen_ai.client.token.usage``
    and the :func:`on_usage` listeners (see the module docs). Keeps one entry per open
    span under a run of ours."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scopes: dict[int, UsageScope] = {}  # open span id -> what it runs under

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        scope = _own_scope(span)
        if scope is None:
            parent = trace_api.get_current_span(parent_context)
            parent_id = parent.get_span_context().span_id
            with self._lock:
                scope = self._scopes.get(parent_id)
            if scope is None:
                scope = _own_scope(parent)
        if scope is not None:
            with self._lock:
                self._scopes[span.get_span_context().span_id] = scope

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None:
            return
        with self._lock:
            scope = self._scopes.pop(context.span_id, None)
        attributes = span.attributes or {}
        input_tokens = _count(attributes.get(semconv.GEN_AI_USAGE_INPUT_TOKENS))
        output_tokens = _count(attributes.get(semconv.GEN_AI_USAGE_OUTPUT_TOKENS))
        if input_tokens is None and output_tokens is None:
            return
        provider = attributes.get(semconv.GEN_AI_PROVIDER_NAME) or attributes.get("gen_ai.system")
        request_model = attributes.get(semconv.GEN_AI_REQUEST_MODEL)
        response_model = attributes.get(semconv.GEN_AI_RESPONSE_MODEL)
        operation = attributes.get(semconv.GEN_AI_OPERATION_NAME) or semconv.GEN_AI_OPERATION_CHAT
        record_token_usage(
            input_tokens,
            output_tokens,
            provider=None if provider is None else str(provider),
            request_model=None if request_model is None else str(request_model),
            response_model=None if response_model is None else str(response_model),
            operation=str(operation),
            run_id=None if scope is None else scope.run_id,
            stage=None if scope is None else scope.stage_name,
        )
        for listener in list(_listeners):
            call_safely(
                "TokenUsageProcessor.listener",
                listener,
                context.trace_id,
                scope,
                input_tokens or 0,
                output_tokens or 0,
            )

    def shutdown(self) -> None:
        with self._lock:
            self._scopes.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
