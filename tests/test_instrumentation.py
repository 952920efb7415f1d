"""The AI-Scientist instrumentor in-process (over the wire to an in-test OTLP receiver),
under ``opentelemetry-instrument``, and against another version of AI-Scientist."""

from __future__ import annotations

import concurrent.futures.process
import json
import os
import pickle
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import otel_ai
from otel_ai import semconv
from otel_ai.instrumentation import (
    AIScientistInstrumentor,
    _runs,
    _search,
    hook_report,
)
from otel_ai.model import ledger
from otel_ai.read import load_directory

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "fake_ai_scientist"
if str(FAKE) not in sys.path:
    sys.path.insert(0, str(FAKE))

from llm_stub import LLMStub  # noqa: E402 - found through the path set above
from test_run_wrapper import wrapper_env  # noqa: E402


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[LLMStub]:
    with LLMStub() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-local-stub")
        yield server


@pytest.fixture
def instrumentor() -> Iterator[AIScientistInstrumentor]:
    instrumentor = AIScientistInstrumentor()
    instrumentor.instrument()
    yield instrumentor
    instrumentor.uninstrument()
    _runs.reset()
    _search.reset()
    ledger.reset()


def _targets() -> list[tuple[object, str]]:
    import ai_scientist.perform_icbinb_writeup
    import ai_scientist.perform_llm_review
    import ai_scientist.perform_writeup
    import ai_scientist.treesearch.agent_manager  # noqa: F401
    import openai.resources.chat.completions as chat  # noqa: F401 - the LLM hooks' target

    found = []
    for status in hook_report():
        module_name, path = status.target.split(":")
        owner: object = sys.modules.get(module_name)
        if owner is None:
            continue
        *parents, name = path.split(".")
        for part in parents:
            owner = getattr(owner, part)
        found.append((owner, name))
    return found


def test_instrument_twice_is_a_no_op_and_uninstrument_restores_every_original() -> None:
    targets = _targets()
    assert len(targets) >= 25
    originals = [vars(owner).get(name) for owner, name in targets]
    submit = concurrent.futures.process.ProcessPoolExecutor.submit
    instrumentor = AIScientistInstrumentor()
    try:
        instrumentor.instrument()
        patched = [vars(owner).get(name) for owner, name in targets]
        assert all(p is not o for p, o in zip(patched, originals, strict=True))
        assert {s.status for s in hook_report() if s.target.startswith("ai_scientist.")} == {"patched"}
        assert concurrent.futures.process.ProcessPoolExecutor.submit is not submit
        instrumentor.instrument()
        assert [vars(owner).get(name) for owner, name in targets] == patched, (
            "the second call patched nothing"
        )
    finally:
        instrumentor.uninstrument()
    assert all(
        vars(owner).get(name) is original for (owner, name), original in zip(targets, originals, strict=True)
    )
    assert concurrent.futures.process.ProcessPoolExecutor.submit is submit
    assert {s.status for s in hook_report()} <= {"found", "not imported"}


def test_the_pool_task_still_pickles_by_reference(instrumentor: AIScientistInstrumentor) -> None:
    from ai_scientist.treesearch.parallel_agent import ParallelAgent

    task = ParallelAgent._process_node_wrapper
    assert task.__wrapped__ is not task
    assert pickle.loads(pickle.dumps(task)) is task
    assert task.__qualname__ == "ParallelAgent._process_node_wrapper"


def test_each_llm_call_is_one_chat_span_under_what_it_serves(
    http_wire, stub: LLMStub, instrumentor: AIScientistInstrumentor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ai_scientist.treesearch.backend import query

    def ask(task: str = "chat") -> object:
        return query(
            system_message={"Task": f"[[task:{task}]] hello"},
            user_message="say something",
            model="gpt-4o-mini",
            temperature=0.2,
        )

    with otel_ai.run("llm-run") as run:
        ask()  # under the run
        with run.stage("1_initial_implementation", description="first") as stage:
            ask()  # under the stage
            worker = threading.Thread(target=ask)  # a thread the context does not follow
            worker.start()
            worker.join()
            with stage.node("n1", kind="draft"):
                monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
                ask("code")  # under the node, with its messages
                monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
    spans = http_wire.spans()
    by_id = {s.span_id: s for s in spans}
    chats = [s for s in spans if s.name == "chat gpt-4o-mini"]
    assert len(chats) == stub.brain.calls == 4
    parents = [by_id[c.parent_span_id].name for c in sorted(chats, key=lambda c: c.start_ns)]
    assert parents == [
        "ai.run",
        "ai.stage 1_initial_implementation",
        "ai.stage 1_initial_implementation",
        "ai.node draft",
    ]
    for chat in chats:
        assert chat.kind == 3  # CLIENT
        assert chat.attributes[semconv.GEN_AI_OPERATION_NAME] == "chat"
        assert chat.attributes[semconv.GEN_AI_PROVIDER_NAME] == "openai"
        assert chat.attributes[semconv.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2025-01-01"
        assert chat.attributes[semconv.GEN_AI_REQUEST_TEMPERATURE] == 0.2
        assert chat.attributes[semconv.SERVER_ADDRESS] == "127.0.0.1"
        assert list(chat.attributes[semconv.GEN_AI_RESPONSE_FINISH_REASONS]) == ["stop"]
    with_content = [c for c in chats if semconv.GEN_AI_INPUT_MESSAGES in c.attributes]
    assert len(with_content) == 1 and by_id[with_content[0].parent_span_id].name == "ai.node draft"
    assert "[[task:code]]" in with_content[0].attributes[semconv.GEN_AI_INPUT_MESSAGES]
    assert "```python" in with_content[0].attributes[semconv.GEN_AI_OUTPUT_MESSAGES]
    usage = [p for p in http_wire.latest_metrics() if p.name == semconv.METRIC_GEN_AI_TOKEN_USAGE]
    assert {p.attributes[semconv.GEN_AI_TOKEN_TYPE] for p in usage} == {"input", "output"}


def test_a_failing_llm_call_is_an_error_span_and_propagates(
    http_wire, instrumentor: AIScientistInstrumentor, monkeypatch: pytest.MonkeyPatch
) -> None:
    import openai

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    client = openai.OpenAI(base_url="http://127.0.0.1:9/v1", max_retries=0, timeout=2)
    with otel_ai.run("failing-llm"):
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    chat = http_wire.span(lambda s: s.name == "chat gpt-4o")
    assert chat.status_code == "ERROR"
    assert chat.attributes[semconv.ERROR_TYPE] == "APIConnectionError"


SKEWED = {
    "ai_scientist/__init__.py": "",
    "ai_scientist/treesearch/__init__.py": "",
    # an older Journal: no get_best_node; a ParallelAgent without seeds or aggregation
    "ai_scientist/treesearch/journal.py": """
        class Journal:
            def __init__(self):
                self.nodes = []
            def append(self, node):
                self.nodes.append(node)
    """,
    "ai_scientist/treesearch/parallel_agent.py": """
        class ParallelAgent:
            def __init__(self, task_desc, cfg, journal, stage_name=None):
                self.journal = journal
            def step(self, exec_callback=None):
                return "stepped"
    """,
}


def test_what_this_version_lacks_is_skipped_and_reported(tmp_path: Path) -> None:
    for name, text in SKEWED.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    script = textwrap.dedent(
        """
        import json
        from otel_ai.instrumentation import AIScientistInstrumentor, hook_report
        AIScientistInstrumentor().instrument()
        from ai_scientist.treesearch.journal import Journal
        from ai_scientist.treesearch.parallel_agent import ParallelAgent
        journal = Journal()
        journal.append("a node")
        print(json.dumps({"step": ParallelAgent("task", None, journal, "1_x").step(),
                          "hooks": {h.target: h.status for h in hook_report()}}))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTEST_"))}
    env.update(
        PYTHONPATH=str(tmp_path), OTEL_AI_DATA_DIR=str(tmp_path / "runs"), OTEL_AI_RAISE_INTERNAL_ERRORS="1"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["step"] == "stepped"
    hooks = report["hooks"]
    assert hooks["ai_scientist.treesearch.journal:Journal.append"] == "patched"
    assert hooks["ai_scientist.treesearch.journal:Journal.get_best_node"] == "missing"
    assert hooks["ai_scientist.treesearch.parallel_agent:ParallelAgent.step"] == "patched"
    assert hooks["ai_scientist.treesearch.parallel_agent:MinimalAgent._draft"] == "missing"
    assert hooks["ai_scientist.treesearch.agent_manager:AgentManager.run"] == "not imported"


def test_under_opentelemetry_instrument_the_instrumentor_starts_the_run(tmp_path: Path) -> None:
    instrument = Path(sys.executable).with_name("opentelemetry-instrument")
    if not instrument.exists():
        pytest.skip("opentelemetry-instrument is not installed beside this interpreter")
    # (no OTEL_*_EXPORTER=none here: otel_ai honours it too, and would export nothing)
    env = wrapper_env(tmp_path / "runs", OTEL_AI_RAISE_INTERNAL_ERRORS="1")
    result = subprocess.run(
        [
            str(instrument),
            sys.executable,
            str(ROOT / "examples" / "simulated_bfts.py"),
            "--workdir",
            str(tmp_path / "work"),
            "--start-method",
            "fork",
            "--max-iters",
            "2",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    spans = load_directory(tmp_path / "runs").spans
    by_id = {s.span_id: s for s in spans}
    (run,) = [s for s in spans if s.name == semconv.SPAN_RUN]
    assert {s.trace_id for s in spans} == {run.trace_id}
    assert [s.name for s in spans if s.parent_span_id and s.parent_span_id not in by_id] == []
    assert run.attributes[semconv.RUN_OUTCOME] == semconv.OUTCOME_COMPLETED
    calls, inputs, outputs = map(
        int, re.search(r"llm stub: (\d+) calls, (\d+) input tokens, (\d+) output", result.stdout).groups()
    )
    assert len([s for s in spans if s.name.startswith("chat ")]) == calls
    assert (run.attributes[semconv.LLM_INPUT_TOKENS], run.attributes[semconv.LLM_OUTPUT_TOKENS]) == (
        inputs,
        outputs,
    )
    assert {s.attributes[semconv.NODE_KIND] for s in spans if s.name.startswith("ai.node ")} >= {
        "draft",
        "seed",
        "seed_agg",
    }


def test_an_anthropic_call_is_one_chat_span_with_its_tokens(
    http_wire, stub: LLMStub, instrumentor: AIScientistInstrumentor, monkeypatch: pytest.MonkeyPatch
) -> None:
    anthropic = pytest.importorskip("anthropic")
    from ai_scientist.llm import get_response_from_llm

    client = anthropic.Anthropic(
        api_key="sk-ant-test", base_url=stub.base_url.removesuffix("/v1"), max_retries=0
    )
    with otel_ai.run("anthropic-run") as run, run.stage("1_initial_implementation") as stage:
        text, _ = get_response_from_llm(
            "[[task:review_paper]] review", client, "claude-3-5-sonnet", "You review."
        )
    assert "REVIEW JSON" in text
    chat = http_wire.span(lambda s: s.name == "chat claude-3-5-sonnet")
    assert chat.parent_span_id == f"{stage.span_context.span_id:016x}"
    assert chat.attributes[semconv.GEN_AI_PROVIDER_NAME] == "anthropic"
    assert (
        chat.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] > 0
        and chat.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] > 0
    )
    assert list(chat.attributes[semconv.GEN_AI_RESPONSE_FINISH_REASONS]) == ["end_turn"]
