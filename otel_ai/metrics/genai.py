"""Entry points for metrics that other parts record: LLM token usage, artifact uploads.

``gen_ai.client.token.usage`` follows the OTel GenAI semantic conventions (a histogram
in ``{token}``, one measurement per token type per call, with
``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
``gen_ai.response.model`` and ``gen_ai.token.type``), plus ``ai.run.id`` and
``ai.stage.name`` so a run's and a stage's spend can be summed. No node ids: metric
attributes stay low-cardinality.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace as trace_api

from .. import semconv
from .._internal import never_raise
from .instruments import instruments


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
    if run_id is None:
        from ..model.registry import registry

        run = registry.current()
        run_id = run.run_id if run is not None else None
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
