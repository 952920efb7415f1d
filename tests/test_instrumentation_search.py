"""Issue 4 acceptance: ``otel-ai run -- python examples/simulated_bfts.py`` (a four-stage
tree search on the fake AI-Scientist, pool workers started by fork and by spawn), read
back from the embedded default's files."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from test_run_wrapper import wrapper_env

from otel_ai import semconv
from otel_ai.read import SpanRecord, load_directory

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "simulated_bfts.py"
WORKER_KINDS = {"draft", "debug", "improve", "hyperparam", "ablation", "seed"}


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[SpanRecord], list]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "otel_ai",
            "run",
            "--no-status",
            "--",
            sys.executable,
            str(EXAMPLE),
            "--workdir",
            str(tmp_path / "work"),
            *args,
        ],
        cwd=tmp_path,
        env=wrapper_env(tmp_path / "runs", OTEL_AI_RAISE_INTERNAL_ERRORS="1"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    data = load_directory(tmp_path / "runs")
    return result, data.spans, data.logs


def _stub_totals(stdout: str) -> tuple[int, int, int]:
    match = re.search(r"llm stub: (\d+) calls, (\d+) input tokens, (\d+) output tokens", stdout)
    assert match, stdout[-2000:]
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_simulated_search_is_one_complete_trace(tmp_path: Path, method: str) -> None:
    result, spans, logs = _run(tmp_path, "--start-method", method)
    by_id = {s.span_id: s for s in spans}
    assert len(by_id) == len(spans), "no span exported twice"
    run = next(s for s in spans if s.name == semconv.SPAN_RUN)
    assert {s.trace_id for s in spans} == {run.trace_id}, "one trace"
    assert [s.name for s in spans if s.parent_span_id and s.parent_span_id not in by_id] == [], (
        "no parent missing"
    )
    assert run.attributes[semconv.RUN_OUTCOME] == semconv.OUTCOME_COMPLETED

    # stages: the four main stages, each a child of the run
    stages = {
        s.attributes[semconv.STAGE_NAME]: s for s in spans if s.name.startswith(semconv.SPAN_STAGE + " ")
    }
    assert {name.split("_")[0] for name in stages} == {"1", "2", "3", "4"}
    assert all(s.parent_span_id == run.span_id for s in stages.values())
    main_pid = run.resource.get(semconv.PROCESS_PID)
    stage_pids = {s.resource[semconv.PROCESS_PID] for s in stages.values()}
    assert len(stage_pids) == 1 and main_pid not in stage_pids, (
        "stages in the experiment's process, not the wrapper"
    )

    # nodes: every one under its stage, with its kind, id, parent id and link
    nodes = [s for s in spans if s.name.startswith(semconv.SPAN_NODE + " ")]
    assert len(nodes) >= 20
    node_spans_by_key = {(n.attributes[semconv.STAGE_NAME], n.attributes[semconv.NODE_ID]): n for n in nodes}
    assert len(node_spans_by_key) == len(nodes), "a node id is unique within its stage"
    kinds = Counter(n.attributes[semconv.NODE_KIND] for n in nodes)
    assert {"draft", "seed", "seed_agg", "node"} <= set(kinds) and set(kinds) <= set(semconv.NODE_KINDS)
    assert (
        kinds["draft"] >= 2
        and (kinds["improve"] + kinds["hyperparam"] + kinds["ablation"] + kinds["debug"]) >= 4
    )
    children: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        children[span.parent_span_id or ""].append(span)
    for node in nodes:
        kind = node.attributes[semconv.NODE_KIND]
        stage = by_id[node.parent_span_id]
        assert stage.name == f"{semconv.SPAN_STAGE} {node.attributes[semconv.STAGE_NAME]}", node.name
        assert node.name == f"{semconv.SPAN_NODE} {kind}"
        assert node.attributes[semconv.NODE_IS_BUGGY] in (True, False)
        assert (node.status_code == "ERROR") == node.attributes[semconv.NODE_IS_BUGGY]
        pid = node.resource[semconv.PROCESS_PID]
        if kind in WORKER_KINDS:
            assert pid not in stage_pids, f"{kind} nodes are born in pool workers"
        else:
            assert pid in stage_pids, f"{kind} nodes are made in the main process"
        parent_id = node.attributes.get(semconv.NODE_PARENT_ID)
        if kind == "draft":
            assert parent_id is None and not node.links
        elif kind == "node":  # a best node copied into the next stage under the same id
            origin = node.attributes[semconv.NODE_COPIED_FROM_STAGE]
            (link,) = node.links
            assert link.attributes[semconv.LINK_TYPE] == semconv.LINK_COPIED_FROM
            assert by_id[link.span_id] is node_spans_by_key[(origin, node.attributes[semconv.NODE_ID])]
        else:
            assert parent_id is not None, node.name
            (link,) = node.links
            assert link.attributes[semconv.LINK_TYPE] == semconv.LINK_PARENT_NODE
            assert link.attributes[semconv.NODE_ID] == parent_id
            assert by_id[link.span_id] is node_spans_by_key[(node.attributes[semconv.STAGE_NAME], parent_id)]
        if kind != "node":
            generated = [e for e in node.events if e.name == semconv.NODE_CODE_GENERATED]
            assert generated and generated[0].attributes[semconv.NODE_CODE_SIZE] > 0
            executions = [c for c in children[node.span_id] if c.name == semconv.SPAN_NODE_EXECUTE]
            purposes = [e.attributes[semconv.NODE_EXEC_PURPOSE] for e in executions]
            if kind == "seed_agg":
                assert purposes == [semconv.EXEC_PURPOSE_PLOTTING]
            else:
                assert purposes[0] == semconv.EXEC_PURPOSE_EXPERIMENT
                if not node.attributes[semconv.NODE_IS_BUGGY]:
                    assert purposes == [
                        semconv.EXEC_PURPOSE_EXPERIMENT,
                        semconv.EXEC_PURPOSE_METRICS,
                        semconv.EXEC_PURPOSE_PLOTTING,
                    ]
                    assert isinstance(node.attributes[semconv.NODE_METRIC_VALUE], float)
                assert all(e.resource[semconv.PROCESS_PID] == pid for e in executions)

    # LLM calls: one span each (as many as the stub answered), GenAI attributes, under
    # the node they served (in workers) or the stage, paper, review or run
    calls, input_tokens, output_tokens = _stub_totals(result.stdout)
    chats = [s for s in spans if s.name.startswith(semconv.GEN_AI_OPERATION_CHAT + " ")]
    assert len(chats) == calls
    for chat in chats:
        attrs = chat.attributes
        assert attrs[semconv.GEN_AI_OPERATION_NAME] == semconv.GEN_AI_OPERATION_CHAT
        assert attrs[semconv.GEN_AI_PROVIDER_NAME] == semconv.GEN_AI_PROVIDER_OPENAI
        assert chat.name == f"chat {attrs[semconv.GEN_AI_REQUEST_MODEL]}"
        assert attrs[semconv.GEN_AI_RESPONSE_MODEL].startswith(attrs[semconv.GEN_AI_REQUEST_MODEL])
        assert attrs[semconv.GEN_AI_USAGE_INPUT_TOKENS] > 0 and attrs[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] > 0
        assert semconv.GEN_AI_INPUT_MESSAGES not in attrs, "no message content unless asked for"
        parent = by_id[chat.parent_span_id]
        if chat.resource[semconv.PROCESS_PID] not in stage_pids:
            assert parent.name.startswith(semconv.SPAN_NODE + " "), "a worker's calls serve its node"
        else:
            assert parent.name.split(" ")[0] in (
                semconv.SPAN_STAGE,
                semconv.SPAN_NODE,
                semconv.SPAN_PAPER,
                semconv.SPAN_VALIDATION,
                semconv.SPAN_RUN,
            )
    assert sum(c.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] for c in chats) == input_tokens
    assert sum(c.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] for c in chats) == output_tokens

    # token roll-up: node, stage and run totals are the sums of their LLM spans
    def below(span: SpanRecord) -> list[SpanRecord]:
        found, todo = [], [span.span_id]
        while todo:
            for child in children[todo.pop()]:
                found.append(child)
                todo.append(child.span_id)
        return [c for c in found if c in chats]

    for owner in [*nodes, *stages.values(), run]:
        mine = below(owner)
        assert owner.attributes.get(semconv.LLM_INPUT_TOKENS, 0) == sum(
            c.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] for c in mine
        ), owner.name
        assert owner.attributes.get(semconv.LLM_OUTPUT_TOKENS, 0) == sum(
            c.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] for c in mine
        ), owner.name
    assert run.attributes[semconv.LLM_INPUT_TOKENS] == input_tokens
    assert run.attributes[semconv.LLM_OUTPUT_TOKENS] == output_tokens

    # progress, decisions and best nodes on the stage spans
    for stage in stages.values():
        names = [e.name for e in stage.events]
        assert semconv.STAGE_PROGRESS in names and semconv.STAGE_DECISION in names, stage.name
        assert semconv.NODE_SELECTED_BEST in names, stage.name
        best_links = [
            link for link in stage.links if link.attributes[semconv.LINK_TYPE] == semconv.LINK_SELECTED_BEST
        ]
        assert best_links and all(
            by_id[link.span_id].attributes[semconv.NODE_ID] == link.attributes[semconv.NODE_ID]
            for link in best_links
        )
        last = [e for e in stage.events if e.name == semconv.STAGE_PROGRESS][-1]
        assert last.attributes[semconv.STAGE_NODES_TOTAL] == sum(
            1 for n in nodes if n.attributes[semconv.STAGE_NAME] == stage.attributes[semconv.STAGE_NAME]
        )

    # paper and validation close the run
    paper = next(s for s in spans if s.name == semconv.SPAN_PAPER)
    review = next(s for s in spans if s.name == semconv.SPAN_VALIDATION)
    assert paper.parent_span_id == run.span_id == review.parent_span_id
    assert paper.attributes[semconv.ARTIFACT_KEY].endswith(".pdf")
    assert review.attributes[semconv.VALIDATION_VERDICT] == "Reject"
    assert review.attributes[semconv.VALIDATION_SCORE_PREFIX + "Overall"] == 5.0
    assert max(s.end_ns for s in stages.values()) <= paper.start_ns <= paper.end_ns <= review.start_ns

    # every node is also an ai.node.created log-based event
    created = [r for r in logs if r.event_name == semconv.NODE_CREATED]
    assert Counter(
        (r.attributes[semconv.STAGE_NAME], r.attributes[semconv.NODE_ID]) for r in created
    ) == Counter(list(node_spans_by_key))
