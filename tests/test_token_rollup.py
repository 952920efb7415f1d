"""Token roll-up from any LLM span: what the maintained openai-v2 / anthropic
instrumentations make (plain OpenTelemetry API calls carrying ``gen_ai.usage.*``) counts
for its node, stage and run, and in ``gen_ai.client.token.usage``, read back from what an
OTLP receiver on 127.0.0.1 got."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace

import otel_ai
from otel_ai import semconv
from otel_ai.instrumentation import AIScientistInstrumentor, set_run_totals
from otel_ai.model.tokens import node_totals, set_stage_totals


@pytest.fixture
def instrumentor() -> Iterator[AIScientistInstrumentor]:
    instrumentor = AIScientistInstrumentor()
    instrumentor.instrument()
    yield instrumentor
    instrumentor.uninstrument()


def _llm_span(tracer: trace.Tracer, input_tokens: int, output_tokens: int) -> trace.Span:
    """A chat span as opentelemetry-instrumentation-openai-v2 makes it."""
    return tracer.start_span(
        "chat gpt-4o-mini",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",  # openai-v2 still names the provider so
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini-2025-01-01",
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens,
        },
    )


def test_usage_of_any_llm_span_rolls_up_onto_node_stage_run_and_the_token_metric(
    http_wire, instrumentor: AIScientistInstrumentor
) -> None:
    tracer = trace.get_tracer("opentelemetry.instrumentation.openai_v2")
    with otel_ai.run("rollup-run") as run:
        with run.stage("1_initial_implementation") as stage:
            with stage.node("n1", kind="draft") as node:
                _llm_span(tracer, 100, 20).end()  # directly under the node
                with tracer.start_as_current_span("invoke_agent coder"):  # under a span not ours
                    _llm_span(tracer, 50, 5).end()
                stream = _llm_span(tracer, 7, 3)  # a stream: ends when consumed, later
                node.completed(is_buggy=False, metric=0.5, **node_totals(node))
            stream.end()
            _llm_span(tracer, 1000, 100).end()  # under the stage, no node
            set_stage_totals(stage)
        _llm_span(tracer, 3, 2).end()  # under the run only
        set_run_totals(run)
    http_wire.flush()
    spans = {s.name: s for s in http_wire.spans()}
    node_span = spans["ai.node draft"]
    assert node_span.attributes[semconv.LLM_INPUT_TOKENS] == 150  # the stream ended after the node
    assert node_span.attributes[semconv.LLM_OUTPUT_TOKENS] == 25
    assert node_span.attributes[semconv.LLM_CALLS] == 2
    stage_span = spans["ai.stage 1_initial_implementation"]
    assert stage_span.attributes[semconv.LLM_INPUT_TOKENS] == 1157
    assert stage_span.attributes[semconv.LLM_OUTPUT_TOKENS] == 128
    assert stage_span.attributes[semconv.LLM_CALLS] == 4
    run_span = spans["ai.run"]
    assert run_span.attributes[semconv.LLM_INPUT_TOKENS] == 1160
    assert run_span.attributes[semconv.LLM_OUTPUT_TOKENS] == 130
    assert run_span.attributes[semconv.LLM_CALLS] == 5
    usage = [p for p in http_wire.latest_metrics() if p.name == semconv.METRIC_GEN_AI_TOKEN_USAGE]
    by_key = {
        (p.attributes.get(semconv.STAGE_NAME), p.attributes[semconv.GEN_AI_TOKEN_TYPE]): p for p in usage
    }
    staged = by_key[("1_initial_implementation", "input")]
    assert (staged.count, staged.sum) == (4, 1157)
    assert staged.attributes[semconv.RUN_ID] == "rollup-run"
    assert staged.attributes[semconv.GEN_AI_PROVIDER_NAME] == "openai"
    assert staged.attributes[semconv.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2025-01-01"
    assert (by_key[(None, "output")].count, by_key[(None, "output")].sum) == (1, 2)
    assert by_key[(None, "output")].attributes[semconv.RUN_ID] == "rollup-run"


def test_a_span_without_usage_or_outside_our_runs_counts_nothing(
    http_wire, instrumentor: AIScientistInstrumentor
) -> None:
    tracer = trace.get_tracer("some.other.library")
    tracer.start_span("GET /health").end()
    with otel_ai.run("quiet-run") as run:
        with run.stage("1_initial_implementation") as stage:
            with stage.node("n1", kind="draft") as node:
                tracer.start_span("tool call", attributes={"gen_ai.usage.input_tokens": "many"}).end()
                node.completed(is_buggy=False, **node_totals(node))
        set_run_totals(run)
    http_wire.flush()
    spans = {s.name: s for s in http_wire.spans()}
    assert spans["ai.node draft"].attributes[semconv.LLM_CALLS] == 0
    assert semconv.LLM_CALLS not in spans["ai.run"].attributes
    assert not [p for p in http_wire.latest_metrics() if p.name == semconv.METRIC_GEN_AI_TOKEN_USAGE]
