"""A run seen in real LLM-observability backends: Arize Phoenix and MLflow, from PyPI.

Each backend runs on 127.0.0.1 from its own environment (tests/backends.py). Two runs of
the simulated AI-Scientist tree search go to it under ``otel-ai run`` (traces over
OTLP/HTTP, message capture on); what the backend stored and derived is read back through
its own API: the tree, the token counts, the run's input and output, chat messages it
could parse, the nodes' short metric headline, and two runs kept apart. A direct LLM call
with a prompt far over the bound checks that the cut messages stay readable there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backends import MLFLOW, PHOENIX, Mlflow, Phoenix, venv_python

import otel_ai
from otel_ai import semconv
from otel_ai.instrumentation import AIScientistInstrumentor
from otel_ai.instrumentation._messages import MAX_JSON
from otel_ai.model.metric import MAX_HEADLINE

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "fake_ai_scientist"
if str(FAKE) not in sys.path:
    sys.path.insert(0, str(FAKE))

from llm_stub import LLMStub  # noqa: E402

IDEA = "Simulated study"  # the fake AgentManager's idea title


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    server = Phoenix(tmp_path_factory.mktemp("phoenix"), venv_python(PHOENIX)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mlflow]:
    server = Mlflow(tmp_path_factory.mktemp("mlflow"), venv_python(MLFLOW)).start()
    yield server
    server.stop()


def _run_example(tmp: Path, run_id: str, traces_endpoint: str, headers: str | None = None) -> dict[str, int]:
    """The simulated tree search under ``otel-ai run``, its traces to ``traces_endpoint``;
    returns what the LLM stub counted (calls, input and output tokens)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_"))}
    env.update(
        {
            "OTEL_AI_DATA_DIR": str(tmp / "data"),
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": traces_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
        }
    )
    if headers:
        env["OTEL_EXPORTER_OTLP_HEADERS"] = headers
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "otel_ai",
            "run",
            "--no-watch",
            "--run-id",
            run_id,
            "--",
            sys.executable,
            str(ROOT / "examples" / "simulated_bfts.py"),
            "--workdir",
            str(tmp / "work"),
            "--seed",
            "7",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("llm stub:"))
    words = line.replace(",", "").split()
    return {"calls": int(words[2]), "input": int(words[4]), "output": int(words[7])}


def _settled(read: Any, run_ids: set[str], timeout: float = 60) -> list[dict[str, Any]]:
    """The spans a backend shows once it has taken in all it was sent: it stores what it
    accepted asynchronously, so read until every run's span is there and the count holds
    still between two reads (or ``timeout`` passes; the caller's assertions then say what
    is missing)."""
    deadline = time.monotonic() + timeout
    previous: list[dict[str, Any]] = []
    while True:
        spans: list[dict[str, Any]] = read()
        runs = {s["attributes"].get(semconv.RUN_ID) for s in spans if s["name"] == semconv.SPAN_RUN}
        if (run_ids <= runs and len(spans) == len(previous)) or time.monotonic() > deadline:
            return spans
        previous = spans
        time.sleep(1.0)


def _check_messages(value: Any, *, output: bool) -> list[dict[str, Any]]:
    messages = json.loads(value) if isinstance(value, str) else value
    assert isinstance(messages, list) and messages
    for message in messages:
        assert message["role"] in ("system", "user", "assistant", "tool")
        assert message["parts"] and all(isinstance(p.get("type"), str) for p in message["parts"])
        if output:
            assert message["finish_reason"]
    return messages


def _check_headline(attributes: dict[str, Any]) -> None:
    headline = attributes[semconv.NODE_METRIC]
    assert len(headline) <= MAX_HEADLINE and not headline.startswith("Metrics(")
    assert headline.startswith("validation accuracy↑ ")
    assert isinstance(attributes[semconv.NODE_METRIC_VALUE], float)
    assert attributes[semconv.NODE_METRIC_NAME] == "validation accuracy"
    assert attributes[semconv.NODE_METRIC_LOWER_IS_BETTER] is False


# --- Phoenix ----------------------------------------------------------------------------------
def test_phoenix_shows_two_runs_with_tree_tokens_input_output_messages_and_headlines(
    phoenix: Phoenix, tmp_path: Path
) -> None:
    counts = [_run_example(tmp_path / f"run{i}", f"phoenix-run-{i}", phoenix.traces_endpoint) for i in (1, 2)]
    spans = _settled(phoenix.spans, {"phoenix-run-1", "phoenix-run-2"})
    runs = {s["attributes"].get(semconv.RUN_ID): s for s in spans if s["name"] == semconv.SPAN_RUN}
    assert set(runs) >= {"phoenix-run-1", "phoenix-run-2"}
    trace_ids = [runs[f"phoenix-run-{i}"]["context"]["trace_id"] for i in (1, 2)]
    assert trace_ids[0] != trace_ids[1], "two runs, two traces"
    span_ids = [s["context"]["span_id"] for s in spans]
    assert len(span_ids) == len(set(span_ids)), "no span stored twice or dropped for a clash"
    for trace_id, count, run_id in zip(trace_ids, counts, ("phoenix-run-1", "phoenix-run-2"), strict=False):
        mine = [s for s in spans if s["context"]["trace_id"] == trace_id]
        by_id = {s["context"]["span_id"]: s for s in mine}
        root = runs[run_id]
        assert root["parent_id"] is None
        # the tree: stages under the run, nodes under their stage, every chat under a span of the run
        stages = [s for s in mine if s["name"].startswith(semconv.SPAN_STAGE + " ")]
        nodes = [s for s in mine if s["name"].startswith(semconv.SPAN_NODE + " ")]
        chats = [s for s in mine if s["name"].startswith("chat ")]
        assert len(stages) >= 4 and all(s["parent_id"] == root["context"]["span_id"] for s in stages)
        assert nodes and all(by_id[n["parent_id"]]["name"].startswith(semconv.SPAN_STAGE) for n in nodes)
        assert all(c["parent_id"] in by_id for c in chats)
        # tokens: every call, and Phoenix's own token counts derived from the GenAI attributes
        assert len(chats) == count["calls"]
        assert sum(c["attributes"][semconv.GEN_AI_USAGE_INPUT_TOKENS] for c in chats) == count["input"]
        assert sum(int(c["attributes"]["llm.token_count.completion"]) for c in chats) == count["output"]
        assert root["attributes"][semconv.LLM_INPUT_TOKENS] == count["input"]
        # the run's input and output, as Phoenix lists traces
        assert root["attributes"][semconv.INPUT_VALUE] == IDEA
        output = json.loads(root["attributes"][semconv.OUTPUT_VALUE])
        assert output["outcome"] == "completed"
        assert output["best"]["metric"].startswith("validation accuracy↑ ") and output["best"]["node_id"]
        # messages Phoenix parsed into its own message attributes (it drops what does not validate)
        for chat in chats:
            attributes = chat["attributes"]
            _check_messages(attributes[semconv.GEN_AI_INPUT_MESSAGES], output=False)
            _check_messages(attributes[semconv.GEN_AI_OUTPUT_MESSAGES], output=True)
            assert attributes["llm.input_messages.0.message.role"] in ("system", "user")
            assert attributes["llm.output_messages.0.message.role"] == "assistant"
            assert chat["span_kind"] == "LLM"
        # the nodes' short headline
        scored = [n for n in nodes if semconv.NODE_METRIC in n["attributes"]]
        assert scored
        for node in scored:
            _check_headline(node["attributes"])


def test_phoenix_reads_a_prompt_far_over_the_bound(phoenix: Phoenix, monkeypatch: pytest.MonkeyPatch) -> None:
    _check_oversized_call(monkeypatch, phoenix.traces_endpoint, None)
    chat = _eventually(
        lambda: next(
            (
                s
                for s in phoenix.spans()
                if s["attributes"].get(semconv.GEN_AI_REQUEST_MODEL) == "gpt-oversized"
            ),
            None,
        )
    )
    attributes = chat["attributes"]
    _check_oversized_messages(
        attributes[semconv.GEN_AI_INPUT_MESSAGES], attributes.get(semconv.LLM_INPUT_MESSAGES_OMITTED)
    )
    # Phoenix validated the cut value and shows its messages
    assert attributes["llm.input_messages.0.message.role"] == "system"
    assert "…[truncated" in attributes["llm.input_messages.0.message.content"]


# --- MLflow -----------------------------------------------------------------------------------
def test_mlflow_shows_two_runs_with_tree_tokens_input_output_messages_and_headlines(
    mlflow: Mlflow, tmp_path: Path
) -> None:
    experiment = mlflow.create_experiment("otel-ai-runs")
    headers = f"x-mlflow-experiment-id={experiment}"
    counts = [
        _run_example(tmp_path / f"run{i}", f"mlflow-run-{i}", mlflow.traces_endpoint, headers) for i in (1, 2)
    ]
    traces = mlflow.traces(experiment)
    assert len(traces) == 2, "two runs, two traces (not merged)"
    by_run = {}
    for trace in traces:
        root = next(s for s in trace["spans"] if s["parent_id"] is None)
        assert root["name"] == semconv.SPAN_RUN
        by_run[root["attributes"][semconv.RUN_ID]] = (trace, root)
    assert set(by_run) == {"mlflow-run-1", "mlflow-run-2"}
    for run_id, count in zip(("mlflow-run-1", "mlflow-run-2"), counts, strict=False):
        trace, root = by_run[run_id]
        spans = trace["spans"]
        by_id = {s["span_id"]: s for s in spans}
        stages = [s for s in spans if s["name"].startswith(semconv.SPAN_STAGE + " ")]
        nodes = [s for s in spans if s["name"].startswith(semconv.SPAN_NODE + " ")]
        chats = [s for s in spans if s["name"].startswith("chat ")]
        assert len(stages) >= 4 and all(s["parent_id"] == root["span_id"] for s in stages)
        assert nodes and all(by_id[n["parent_id"]]["name"].startswith(semconv.SPAN_STAGE) for n in nodes)
        assert len(chats) == count["calls"]
        # the trace list: request and response previews, token usage summed by MLflow
        info = trace["info"]
        assert json.loads(info["request_preview"]) == IDEA
        assert json.loads(info["response_preview"])["outcome"] == "completed"
        assert info["token_usage"]["input_tokens"] == count["input"]
        assert info["token_usage"]["output_tokens"] == count["output"]
        assert root["inputs"] == IDEA and root["outputs"]["best"]["metric"].startswith(
            "validation accuracy↑ "
        )
        # chat spans: MLflow's chat type, inputs and outputs decoded from the GenAI messages
        for chat in chats:
            assert chat["span_type"] == "CHAT_MODEL"
            _check_messages(chat["inputs"], output=False)
            _check_messages(chat["outputs"], output=True)
        scored = [n for n in nodes if semconv.NODE_METRIC in n["attributes"]]
        assert scored
        for node in scored:
            _check_headline(node["attributes"])


def test_mlflow_reads_a_prompt_far_over_the_bound(mlflow: Mlflow, monkeypatch: pytest.MonkeyPatch) -> None:
    experiment = mlflow.create_experiment("otel-ai-oversized")
    _check_oversized_call(monkeypatch, mlflow.traces_endpoint, f"x-mlflow-experiment-id={experiment}")
    (trace,) = mlflow.traces(experiment)
    chat = next(s for s in trace["spans"] if s["name"] == "chat gpt-oversized")
    messages = _check_messages(chat["inputs"], output=False)
    assert messages[0]["role"] == "system" and "…[truncated" in messages[0]["parts"][0]["content"]
    _check_oversized_messages(
        chat["attributes"][semconv.GEN_AI_INPUT_MESSAGES],
        chat["attributes"].get(semconv.LLM_INPUT_MESSAGES_OMITTED),
    )


def _eventually(probe: Any, timeout: float = 30.0) -> Any:
    """What ``probe`` returns once it is not None (backends store what they got in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None or time.monotonic() > deadline:
            assert found is not None, "the backend never showed it"
            return found
        time.sleep(0.5)


# --- one oversized LLM call -------------------------------------------------------------------
TURNS = 400


def _check_oversized_call(monkeypatch: pytest.MonkeyPatch, endpoint: str, headers: str | None) -> None:
    """One chat call, in this process, whose prompt is ~1 MB: a 200 KB system prompt and
    400 more turns; its span goes to ``endpoint``."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    if headers:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", headers)
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    otel_ai.configure()
    instrumentor = AIScientistInstrumentor()
    instrumentor.instrument()
    try:
        import openai

        with LLMStub() as stub:
            client = openai.OpenAI(base_url=stub.base_url, api_key="sk-test-local-stub")
            messages = [{"role": "system", "content": "You are careful. " + "x" * 200_000}]
            for turn in range(TURNS):
                messages.append(
                    {
                        "role": "user" if turn % 2 == 0 else "assistant",
                        "content": f"turn {turn}: " + "y" * 2000,
                    }
                )
            with otel_ai.run(idea="An oversized prompt"):
                client.chat.completions.create(model="gpt-oversized", messages=messages)
        assert otel_ai.force_flush(30.0)
    finally:
        instrumentor.uninstrument()
        otel_ai.shutdown()


def _check_oversized_messages(value: Any, omitted: Any) -> None:
    if isinstance(value, str):  # as sent (MLflow hands it back decoded)
        assert len(value) <= MAX_JSON
        value = json.loads(value)  # valid JSON, not cut mid-way
    messages = value
    assert messages[0]["role"] == "system"
    assert messages[0]["parts"][0]["content"].startswith("You are careful. xxx")
    assert isinstance(omitted, int) and omitted > 0
    assert len(messages) + omitted == TURNS + 1, "every message is either there or counted"
