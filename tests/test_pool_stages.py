"""Nodes that pool workers report through `EventEmitter` (no AI-Scientist instrumentor)
belong to the stage the task was submitted in: its one span is their parent, and the
stage span counts them.

Before, under `otel-ai run`, each spawned worker (and each forked worker started before
the stage) opened an `ai.stage` span of its own, and the stage's own span said
`ai.stage.nodes.total = 0` whatever its workers made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from otlp_receiver import OTLPReceiver

from otel_ai.read.files import load_directory
from otel_ai.read.records import SpanRecord

OTEL_AI = Path(sys.executable).parent / "otel-ai"

# Two stages; node i is buggy when i % 3 == 0: stage 1 nodes 0-5 (2 buggy), stage 2
# nodes 6-9 (2 buggy: 6 and 9). "shared": one pool whose workers start before the run
# does (they inherit no stage); "per-stage": a pool per stage, as AI-Scientist-v2 has.
SEARCH = """
import concurrent.futures, json, multiprocessing, os, sys
import otel_ai

RUN = "pool-stages"
STAGES = (("1_initial_implementation", range(6)), ("2_baseline_tuning", range(6, 10)))

def work(stage, i):
    emitter = otel_ai.EventEmitter()
    emitter.node_created(RUN, stage, f"node-{i}", None, "draft")
    emitter.node_completed(RUN, stage, f"node-{i}", i % 3 == 0, 0.5, 0.1)

if __name__ == "__main__":
    method, layout = sys.argv[1], sys.argv[2]
    context = multiprocessing.get_context(method)
    shared = concurrent.futures.ProcessPoolExecutor(2, mp_context=context)
    if layout == "shared":
        list(shared.map(abs, [0, 1]))  # its workers start now, before the run
    with otel_ai.run(RUN) as run:
        for stage, nodes in STAGES:
            with run.stage(stage):
                if layout == "shared":
                    list(shared.map(work, [stage] * len(nodes), nodes))
                else:
                    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
                        list(pool.map(work, [stage] * len(nodes), nodes))
    shared.shutdown()
    print(json.dumps({"main": os.getpid()}))
"""

EXPECTED = {"1_initial_implementation": (6, 4, 2), "2_baseline_tuning": (4, 2, 2)}  # total, good, buggy


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUNPOD_"))}
    env["OTEL_AI_DATA_DIR"] = str(data_dir)
    return env


def _run(tmp_path: Path, command: list[str], **env: str) -> tuple[list[SpanRecord], int]:
    (tmp_path / "search.py").write_text(textwrap.dedent(SEARCH))
    data_dir = tmp_path / "runs"
    done = subprocess.run(
        command, cwd=tmp_path, env={**_env(data_dir), **env}, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    main_pid: int = json.loads(done.stdout.strip().splitlines()[-1])["main"]
    return load_directory(data_dir).spans, main_pid


def _check(spans: list[SpanRecord], main_pid: int) -> None:
    stages = [span for span in spans if span.name.startswith("ai.stage ")]
    assert sorted(span.name for span in stages) == [f"ai.stage {name}" for name in sorted(EXPECTED)]
    for stage in stages:
        name = stage.attributes["ai.stage.name"]
        assert stage.resource["process.pid"] == main_pid
        assert "ai.span.synthesized" not in stage.attributes
        nodes = [
            span for span in spans if span.name.startswith("ai.node") and span.parent_span_id == stage.span_id
        ]
        assert nodes and all(node.resource["process.pid"] != main_pid for node in nodes)
        total, good, buggy = EXPECTED[name]
        assert len(nodes) == total
        counted = (
            stage.attributes["ai.stage.nodes.total"],
            stage.attributes["ai.stage.nodes.good"],
            stage.attributes["ai.stage.nodes.buggy"],
        )
        assert counted == (total, good, buggy), name
    all_nodes = [span for span in spans if span.name.startswith("ai.node")]
    assert len(all_nodes) == sum(total for total, _, _ in EXPECTED.values())


@pytest.mark.parametrize("layout", ["shared", "per-stage"])
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_workers_nodes_join_the_stage_they_were_submitted_in(
    tmp_path: Path, method: str, layout: str
) -> None:
    spans, main_pid = _run(
        tmp_path,
        [str(OTEL_AI), "run", "--no-status", "--no-watch", "--"]
        + [sys.executable, "search.py", method, layout],
    )
    _check(spans, main_pid)


def test_forked_workers_nodes_are_counted_without_the_wrapper(tmp_path: Path) -> None:
    """Without `otel-ai run` no pool is instrumented and nothing is carried, but workers
    forked inside a stage know it by inheritance: their nodes are counted on its span."""
    spans, main_pid = _run(tmp_path, [sys.executable, "search.py", "fork", "per-stage"])
    _check(spans, main_pid)


def test_over_otlp_the_collector_gets_one_stage_span_with_its_workers_nodes(tmp_path: Path) -> None:
    """The same over the wire: what an OTLP receiver on 127.0.0.1 decodes (spawned workers,
    started before the run)."""
    with OTLPReceiver() as receiver:
        _, main_pid = _run(
            tmp_path,
            [
                str(OTEL_AI),
                "run",
                "--no-status",
                "--no-watch",
                "--",
                sys.executable,
                "search.py",
                "spawn",
                "shared",
            ],
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.http_endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        )
        _check(receiver.spans(), main_pid)
