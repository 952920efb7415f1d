"""LLM calls as ``chat {model}`` spans (OTel GenAI conventions), with tokens rolled up.

AI-Scientist-v2 calls OpenAI's ``chat.completions.create`` and Anthropic's
``messages.create`` from the main process, from pool workers and from threads, through a
client it creates anew (per call or per process). The methods are patched on the
resource classes, so every client is covered. Each call is one span:

- its parent is the current span (the node being made in a worker, the stage while the
  search steps); with none current (a thread the context did not follow), the innermost
  open node, stage, paper or review of the run, else the run;
- ``gen_ai.operation.name``, ``gen_ai.provider.name``, request and response model, input
  and output tokens, response id and finish reasons, ``server.address``/``server.port``;
  message content only with OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true;
- its ``gen_ai.usage.*`` tokens are rolled up onto node, stage and run like any LLM
  span's (:mod:`otel_ai.model.tokens`).

When the official ``opentelemetry-instrumentation-openai-v2`` is instrumenting OpenAI,
it makes the span (never two spans for one call) and this hook does nothing.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import semconv
from .._internal import handle_internal_errors, never_raise
from ..export.providers import get_pipeline
from ..model.coerce import truncate
from ..version import __version__
from . import _messages, _nodes, _runs
from ._patching import Hook

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
# "true" as for openai-v2 today; SPAN_ONLY / SPAN_AND_EVENT as for opentelemetry-util-genai
_CAPTURE_ON = ("true", "span_only", "span_and_event")
_SCOPE = "otel_ai.instrumentation.ai_scientist"


def _capture_content() -> bool:
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in _CAPTURE_ON


def _official_openai_active() -> bool:
    module = sys.modules.get("opentelemetry.instrumentation.openai_v2")
    instrumentor = getattr(module, "OpenAIInstrumentor", None)
    try:
        return bool(instrumentor is not None and instrumentor().is_instrumented_by_opentelemetry)
    except Exception:  # noqa: BLE001
        return False


def _provider(api: str, instance: Any) -> str:
    if api == "openai":
        return semconv.GEN_AI_PROVIDER_OPENAI
    client = type(getattr(instance, "_client", None)).__name__
    if "Bedrock" in client:
        return semconv.GEN_AI_PROVIDER_AWS_BEDROCK
    if "Vertex" in client:
        return semconv.GEN_AI_PROVIDER_GCP_VERTEX_AI
    return semconv.GEN_AI_PROVIDER_ANTHROPIC


class _Call:
    """One LLM call: its span (unless another instrumentation makes it) and its accounting."""

    def __init__(self, api: str, instance: Any, kwargs: dict[str, Any]) -> None:
        self.api = api
        self.model = kwargs.get("model")
        self.provider = _provider(api, instance)
        self.stream = bool(kwargs.get("stream"))
        self.token: object | None = None
        self.span: Any = None
        if _official_openai_active() and api == "openai":
            return
        parent = _parent_context()
        provider = get_pipeline().tracer_provider
        if provider is None:
            return
        attributes: dict[str, Any] = {
            semconv.GEN_AI_OPERATION_NAME: semconv.GEN_AI_OPERATION_CHAT,
            semconv.GEN_AI_PROVIDER_NAME: self.provider,
        }
        if self.model is not None:
            attributes[semconv.GEN_AI_REQUEST_MODEL] = str(self.model)
        for key, name in (
            (semconv.GEN_AI_REQUEST_TEMPERATURE, "temperature"),
            (semconv.GEN_AI_REQUEST_MAX_TOKENS, "max_tokens"),
        ):
            value = kwargs.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attributes[key] = value
        base_url = getattr(getattr(instance, "_client", None), "base_url", None)
        host = getattr(base_url, "host", None)
        if host:
            attributes[semconv.SERVER_ADDRESS] = str(host)
            port = getattr(base_url, "port", None)
            if port:
                attributes[semconv.SERVER_PORT] = int(port)
        if _capture_content():
            attributes.update(_input_content(kwargs) or {})
        name = (
            f"{semconv.GEN_AI_OPERATION_CHAT} {self.model}" if self.model else semconv.GEN_AI_OPERATION_CHAT
        )
        self.span = _tracer(provider).start_span(
            name, context=parent, kind=SpanKind.CLIENT, attributes=attributes
        )

    def enter(self) -> None:
        if self.span is not None:
            self.token = context_api.attach(trace_api.set_span_in_context(self.span))

    def exit(self) -> None:
        if self.token is not None:
            context_api.detach(self.token)  # type: ignore[arg-type]
            self.token = None

    @never_raise()
    def failed(self, exc: BaseException) -> None:
        if self.span is None:
            return
        self.span.set_attribute(semconv.ERROR_TYPE, type(exc).__qualname__)
        self.span.record_exception(exc)
        self.span.set_status(Status(StatusCode.ERROR, truncate(str(exc), 1024)))
        self.span.end()

    @never_raise()
    def finished(self, response: Any) -> None:
        usage = None if self.stream else getattr(response, "usage", None)
        input_tokens = output_tokens = None
        if usage is not None:
            if self.api == "openai":
                input_tokens = _count(getattr(usage, "prompt_tokens", None))
                output_tokens = _count(getattr(usage, "completion_tokens", None))
            else:
                parts = [
                    getattr(usage, name, None)
                    for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
                ]
                counted = [_count(p) for p in parts if _count(p) is not None]
                input_tokens = sum(counted) if counted else None  # type: ignore[arg-type]
                output_tokens = _count(getattr(usage, "output_tokens", None))
        response_model = getattr(response, "model", None)
        span = self.span
        if span is not None:
            attributes: dict[str, Any] = {}
            if response_model is not None:
                attributes[semconv.GEN_AI_RESPONSE_MODEL] = str(response_model)
            if getattr(response, "id", None) is not None:
                attributes[semconv.GEN_AI_RESPONSE_ID] = str(response.id)
            reasons = _finish_reasons(self.api, response)
            if reasons:
                attributes[semconv.GEN_AI_RESPONSE_FINISH_REASONS] = reasons
            if input_tokens is not None:
                attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] = input_tokens
            if output_tokens is not None:
                attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] = output_tokens
            if _capture_content():
                attributes.update(_output_content(self.api, response) or {})
            span.set_attributes(attributes)
            span.end()


_tracers: tuple[Any, Any] | None = None  # (provider, its tracer): one per pipeline


def _tracer(provider: Any) -> Any:
    """The LLM spans' tracer of ``provider`` (the SDK makes a new one per call to
    ``get_tracer``: made once per pipeline here, a forked child's pipeline its own)."""
    global _tracers
    cached = _tracers
    if cached is not None and cached[0] is provider:
        return cached[1]
    tracer = provider.get_tracer(_SCOPE, __version__)
    _tracers = (provider, tracer)
    return tracer


def _parent_context() -> Any:
    """The parent of the call's span: None (the current span) when one is current; else
    (a thread the context did not follow) the innermost open node, stage, paper or review
    of the run, else the run."""
    if trace_api.get_current_span().get_span_context().is_valid:
        return None
    task = _nodes.current_task()
    if task is not None:
        return task.node.log_context
    run = _runs.current_run()
    return None if run is None else run.current_owner().log_context


def _count(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def _finish_reasons(api: str, response: Any) -> list[str]:
    if api == "openai":
        return [
            str(c.finish_reason)
            for c in (getattr(response, "choices", None) or ())
            if getattr(c, "finish_reason", None)
        ]
    reason = getattr(response, "stop_reason", None)
    return [str(reason)] if reason else []


@never_raise()
def _input_content(kwargs: dict[str, Any]) -> dict[str, Any]:
    return _content_attributes(
        (semconv.GEN_AI_INPUT_MESSAGES, semconv.LLM_INPUT_MESSAGES_OMITTED, _messages.input_messages(kwargs)),
        (semconv.GEN_AI_SYSTEM_INSTRUCTIONS, None, _messages.system_instructions(kwargs)),
    )


@never_raise()
def _output_content(api: str, response: Any) -> dict[str, Any]:
    return _content_attributes(
        (
            semconv.GEN_AI_OUTPUT_MESSAGES,
            semconv.LLM_OUTPUT_MESSAGES_OMITTED,
            _messages.output_messages(api, response),
        ),
    )


def _content_attributes(*values: tuple[str, str | None, list[Any]]) -> dict[str, Any]:
    """Message attributes as bounded, valid JSON; how many messages a bound left out."""
    attributes: dict[str, Any] = {}
    for key, omitted_key, messages in values:
        if not messages:
            continue
        text, omitted = _messages.bounded_json(messages)
        attributes[key] = text
        if omitted and omitted_key:
            attributes[omitted_key] = omitted
    return attributes


def _wrapper(api: str) -> Any:
    def call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if context_api.get_value(context_api._SUPPRESS_INSTRUMENTATION_KEY):
            return wrapped(*args, **kwargs)
        llm = None
        with handle_internal_errors("ai_scientist.llm"):
            llm = _Call(api, instance, kwargs)
        if llm is None:
            return wrapped(*args, **kwargs)
        llm.enter()
        try:
            response = wrapped(*args, **kwargs)
        except BaseException as exc:
            llm.exit()
            llm.failed(exc)
            raise
        llm.exit()
        llm.finished(response)
        return response

    return call


def _async_wrapper(api: str) -> Any:
    async def call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if context_api.get_value(context_api._SUPPRESS_INSTRUMENTATION_KEY):
            return await wrapped(*args, **kwargs)
        llm = _Call(api, instance, kwargs)
        llm.enter()
        try:
            response = await wrapped(*args, **kwargs)
        except BaseException as exc:
            llm.exit()
            llm.failed(exc)
            raise
        llm.exit()
        llm.finished(response)
        return response

    return call


def hooks() -> list[Hook]:
    return [
        Hook("openai.resources.chat.completions", "Completions.create", _wrapper("openai")),
        Hook("openai.resources.chat.completions", "AsyncCompletions.create", _async_wrapper("openai")),
        Hook("anthropic.resources.messages", "Messages.create", _wrapper("anthropic")),
        Hook("anthropic.resources.messages", "AsyncMessages.create", _async_wrapper("anthropic")),
    ]
