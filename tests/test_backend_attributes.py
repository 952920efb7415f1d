"""What LLM backends read, over the wire: a node's metric headline and structure, a run's
input and output, chat messages in the GenAI conventions' format, bounded as valid JSON.
(tests/test_backends.py checks the same against real Phoenix and MLflow servers.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import Wire

import otel_ai
from otel_ai import semconv
from otel_ai.cli import main as cli_main
from otel_ai.instrumentation._messages import (
    MAX_JSON,
    bounded_json,
    input_messages,
    output_messages,
    system_instructions,
)
from otel_ai.model.metric import MAX_HEADLINE, summarize

FAKE = Path(__file__).resolve().parent / "fake_ai_scientist"
if str(FAKE) not in sys.path:
    sys.path.insert(0, str(FAKE))

from ai_scientist.treesearch.utils.metric import MetricValue, WorstMetricValue  # noqa: E402


def _metric(datasets: int = 30) -> MetricValue:
    """AI-Scientist-v2's shape: two metrics over many datasets."""
    return MetricValue(
        value={
            "metric_names": [
                {
                    "metric_name": "validation loss",
                    "lower_is_better": True,
                    "description": "cross-entropy",
                    "data": [
                        {
                            "dataset_name": f"dataset_{i}",
                            "final_value": 0.5 + i / 100,
                            "best_value": 0.4 + i / 100,
                        }
                        for i in range(datasets)
                    ],
                },
                {
                    "metric_name": "validation accuracy",
                    "lower_is_better": False,
                    "description": "top-1",
                    "data": [
                        {"dataset_name": f"dataset_{i}", "final_value": 0.8, "best_value": 0.85}
                        for i in range(datasets)
                    ],
                },
            ]
        },
        maximize=False,
        name="validation loss",
    )


def test_a_metric_value_is_a_short_headline_a_number_and_its_structure_on_the_wire(http_wire: Wire) -> None:
    metric = _metric()
    assert len(str(metric)) > 2000  # upstream's Metrics(...) text
    with otel_ai.run("metric-run") as run, run.stage("1_initial_implementation") as stage:
        with stage.node("n1", kind="draft") as node:
            node.completed(is_buggy=False, metric=metric)
        with stage.node("n2", kind="debug") as node:
            node.completed(is_buggy=True, metric=WorstMetricValue())
        with stage.node("n3", kind="improve") as node:  # a node's to_dict() form, as pool workers return it
            node.completed(
                is_buggy=False, metric={"value": metric.value, "maximize": False, "name": "validation loss"}
            )
        stage.selected_best("n1", metric)
    spans = {s.name + (s.attributes.get(semconv.NODE_ID) or ""): s for s in http_wire.spans()}
    n1 = spans["ai.node draftn1"].attributes
    headline = n1[semconv.NODE_METRIC]
    assert (
        headline
        == "validation loss↓ 0.645 (mean of 30 datasets); validation accuracy↑ 0.8 (mean of 30 datasets)"
    )
    assert len(headline) <= MAX_HEADLINE
    assert n1[semconv.NODE_METRIC_VALUE] == pytest.approx(metric.get_mean_value())
    assert n1[semconv.NODE_METRIC_NAME] == "validation loss"
    assert n1[semconv.NODE_METRIC_LOWER_IS_BETTER] is True
    assert list(n1[semconv.NODE_METRIC_DATASETS]) == [f"dataset_{i}" for i in range(30)]
    assert list(n1[semconv.NODE_METRIC_FINAL]) == pytest.approx([0.5 + i / 100 for i in range(30)])
    assert list(n1[semconv.NODE_METRIC_BEST]) == pytest.approx([0.4 + i / 100 for i in range(30)])
    structure = json.loads(n1[semconv.NODE_METRICS])
    assert [(m["name"], m["lower_is_better"], len(m["data"])) for m in structure] == [
        ("validation loss", True, 30),
        ("validation accuracy", False, 30),
    ]
    assert structure[1]["data"][0] == {"dataset": "dataset_0", "final": 0.8, "best": 0.85}
    assert semconv.NODE_METRICS_OMITTED not in n1
    n2 = spans["ai.node debugn2"].attributes
    assert semconv.NODE_METRIC not in n2 and semconv.NODE_METRIC_VALUE not in n2
    n3 = spans["ai.node improven3"].attributes
    assert n3[semconv.NODE_METRIC] == headline and n3[semconv.NODE_METRIC_VALUE] == pytest.approx(
        n1[semconv.NODE_METRIC_VALUE]
    )
    stage_span = spans["ai.stage 1_initial_implementation"]
    best = next(e for e in stage_span.events if e.name == semconv.NODE_SELECTED_BEST).attributes
    assert best[semconv.NODE_METRIC] == headline


def test_a_headline_that_cannot_hold_every_metric_says_how_many_more() -> None:
    many = MetricValue(
        value={
            "metric_names": [
                {
                    "metric_name": f"metric number {i} with a long name",
                    "lower_is_better": i % 2 == 0,
                    "data": [{"dataset_name": "d", "final_value": i, "best_value": i}],
                }
                for i in range(40)
            ]
        }
    )
    summary = summarize(many)
    assert summary.headline is not None and len(summary.headline) <= MAX_HEADLINE
    assert summary.headline.startswith("metric number 0 with a long name↓ 0; ") and summary.headline.endswith(
        " more"
    )
    assert json.loads(summary.attributes[semconv.NODE_METRICS])  # bounded, valid
    # numbers, numeric strings, dicts of datasets, NaN: faithful and bounded
    assert (summarize(0.25).headline, summarize(0.25).value) == ("0.25", 0.25)
    assert summarize(MetricValue(0.9, maximize=True, name="acc")).headline == "acc↑ 0.9"
    old = summarize(MetricValue({"a": 0.5, "b": 0.7}, maximize=False, name="loss"))
    assert old.headline == "loss↓ 0.6 (mean of 2 datasets)" and old.value == pytest.approx(0.6)
    assert summarize(float("nan")).value is None
    assert len(summarize("x" * 5000).headline or "") <= MAX_HEADLINE


def test_show_prints_the_headline_not_the_metrics_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    otel_ai.configure()
    with otel_ai.run("show-metric-run") as run, run.stage("1_initial_implementation") as stage:
        with stage.node("n1", kind="draft") as node:
            node.completed(is_buggy=False, metric=_metric())
    otel_ai.shutdown()
    assert cli_main(["show", "show-metric-run", "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert "validation loss↓ 0.645 (mean of 30 datasets)" in out
    assert "Metrics(" not in out and "dataset_7" not in out


def test_a_run_carries_its_idea_as_input_and_outcome_and_best_node_as_output(http_wire: Wire) -> None:
    with (
        otel_ai.run("io-run", idea="Do small models generalise?") as run,
        run.stage("2_baseline_tuning") as stage,
    ):
        with stage.node("n1", kind="draft") as node:
            node.completed(is_buggy=False, metric=0.91)
        stage.selected_best("n1", 0.91)
    with pytest.raises(RuntimeError), otel_ai.run("io-failed", idea="A doomed idea"):
        raise RuntimeError("out of memory")
    runs = {
        s.attributes[semconv.RUN_ID]: s.attributes for s in http_wire.spans() if s.name == semconv.SPAN_RUN
    }
    done = runs["io-run"]
    assert (done[semconv.RUN_IDEA], done[semconv.INPUT_VALUE], done[semconv.INPUT_MIME_TYPE]) == (
        "Do small models generalise?",
        "Do small models generalise?",
        "text/plain",
    )
    assert done[semconv.OUTPUT_MIME_TYPE] == "application/json"
    assert json.loads(done[semconv.OUTPUT_VALUE]) == {
        "outcome": "completed",
        "best": {"stage": "2_baseline_tuning", "node_id": "n1", "metric": "0.91", "value": 0.91},
    }
    failed = json.loads(runs["io-failed"][semconv.OUTPUT_VALUE])
    assert failed["outcome"] == "failed" and failed["error"] == "out of memory"


def test_openai_and_anthropic_messages_in_the_conventions_format() -> None:
    kwargs = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Plot this"},
                    {"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "parse_metrics", "arguments": '{"valid": true}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        ]
    }
    assert input_messages(kwargs) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "Plot this"},
                {"type": "uri", "modality": "image", "uri": "https://example.invalid/a.png"},
            ],
        },
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "call_1", "name": "parse_metrics", "arguments": {"valid": True}}
            ],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "ok"}]},
    ]
    openai_response = SimpleNamespace(
        choices=[
            SimpleNamespace(
                finish_reason="tool_calls",
                message={
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c2", "function": {"name": "select", "arguments": "not json"}}],
                },
            )
        ]
    )
    assert output_messages("openai", openai_response) == [
        {
            "role": "assistant",
            "finish_reason": "tool_call",
            "parts": [{"type": "tool_call", "id": "c2", "name": "select", "arguments": "not json"}],
        }
    ]
    anthropic = {
        "system": "You review papers.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Review"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "text", "text": "done"}],
                    },
                ],
            }
        ],
    }
    assert system_instructions(anthropic) == [{"type": "text", "content": "You review papers."}]
    assert input_messages(anthropic)[0]["parts"][1] == {
        "type": "tool_call_response",
        "id": "t1",
        "response": "done",
    }
    anthropic_response = SimpleNamespace(
        stop_reason="max_tokens",
        content=[
            {"type": "thinking", "thinking": "hmm"},
            {"type": "text", "text": "Accept"},
            {"type": "tool_use", "id": "t2", "name": "score", "input": {"overall": 7}},
        ],
    )
    assert output_messages("anthropic", anthropic_response) == [
        {
            "role": "assistant",
            "finish_reason": "length",
            "parts": [
                {"type": "reasoning", "content": "hmm"},
                {"type": "text", "content": "Accept"},
                {"type": "tool_call", "id": "t2", "name": "score", "arguments": {"overall": 7}},
            ],
        }
    ]


@pytest.mark.parametrize("shape", ["one huge", "many small", "quotes and unicode", "fits"])
def test_bounded_messages_are_valid_json_within_the_bound_and_count_what_they_leave_out(shape: str) -> None:
    text_of = {
        "one huge": lambda i: "x" * 300_000,
        "many small": lambda i: f"turn {i} " + "y" * 900,
        "quotes and unicode": lambda i: '"\\\n' * 500 + "é✓🙂" * 300,
        "fits": lambda i: "short",
    }[shape]
    count = {"one huge": 3, "many small": 500, "quotes and unicode": 40, "fits": 5}[shape]
    messages = [{"role": "user", "parts": [{"type": "text", "content": text_of(i)}]} for i in range(count)]
    text, omitted = bounded_json(messages)
    assert len(text) <= MAX_JSON
    kept = json.loads(text)
    assert len(kept) + omitted == count
    assert all(m["role"] == "user" and m["parts"][0]["type"] == "text" for m in kept)
    if shape == "fits":
        assert (kept, omitted) == (messages, 0)
    else:
        assert any("…[truncated" in m["parts"][0]["content"] for m in kept)
        for original, cut in zip(messages, kept, strict=False):  # a cut text keeps its beginning
            assert original["parts"][0]["content"].startswith(
                cut["parts"][0]["content"].split("…[truncated")[0]
            )


def test_capture_on_puts_bounded_conventional_messages_on_the_chat_span(
    http_wire: Wire, monkeypatch: pytest.MonkeyPatch
) -> None:
    import openai
    from llm_stub import LLMStub  # the OpenAI-compatible stub

    from otel_ai.instrumentation import AIScientistInstrumentor

    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    instrumentor = AIScientistInstrumentor()
    instrumentor.instrument()
    try:
        with LLMStub() as stub, otel_ai.run("capture-run"):
            client = openai.OpenAI(base_url=stub.base_url, api_key="sk-test-local-stub")
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "system", "content": "s" * 40_000}, {"role": "user", "content": "hello"}],
            )
    finally:
        instrumentor.uninstrument()
    chat = next(s for s in http_wire.spans() if s.name == "chat gpt-4o-mini").attributes
    sent = json.loads(chat[semconv.GEN_AI_INPUT_MESSAGES])
    assert len(chat[semconv.GEN_AI_INPUT_MESSAGES]) <= MAX_JSON
    assert [m["role"] for m in sent] == ["system", "user"] and sent[1]["parts"] == [
        {"type": "text", "content": "hello"}
    ]
    assert "…[truncated" in sent[0]["parts"][0]["content"] and semconv.LLM_INPUT_MESSAGES_OMITTED not in chat
    (answer,) = json.loads(chat[semconv.GEN_AI_OUTPUT_MESSAGES])
    assert (
        answer["role"] == "assistant"
        and answer["finish_reason"] == "stop"
        and answer["parts"][0]["type"] == "text"
    )


def test_secrets_in_messages_are_redacted_without_breaking_the_json(monkeypatch: pytest.MonkeyPatch) -> None:
    # a NAME=value secret right before a quote: a pattern run over the JSON text would eat the escape
    secret = "hunter2hunter2"
    messages = [
        {
            "role": "user",
            "parts": [{"type": "text", "content": f'db_password={secret}"; key sk-{"a" * 30} ok'}],
        }
    ]
    text, omitted = bounded_json(messages)
    (message,) = json.loads(text)
    content = message["parts"][0]["content"]
    assert secret not in content and "sk-aaaa" not in content and content.endswith("[REDACTED] ok")
    assert omitted == 0
    many = [{"role": "user", "parts": [{"type": "text", "content": "token=abc " * 3000}]}] * 3
    text, omitted = bounded_json(many)
    assert len(text) <= MAX_JSON and "abc" not in text
    assert len(json.loads(text)) + omitted == 3
