"""``otel-ai report`` (SPEC section 6, issue 9): the page and the data it draws, checked
without a browser (tests/test_report_browser.py opens it in Chromium).

The demo pod worker runs as a real process (completing, and crashing in stage 2); the
page's embedded data is compared with the spans the run wrote. A synthetic run of 5,000
nodes checks the report stays fast and complete at scale.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from report_runs import OTEL_AI, clean_env, demo_run, span_record, synthetic_run

import otel_ai
from otel_ai import semconv
from otel_ai.cli import main as cli_main
from otel_ai.read import MetricPoint, SpanRecord, Telemetry, load_directory
from otel_ai.read.runview import build_runs
from otel_ai.report import render_html, report_data
from otel_ai.report.data import resource_charts
from otel_ai.report.layout import layered_tree, pack_rows

DATA = re.compile(r'<script type="application/json" id="report-data">(.*?)</script>', re.S)


def page_data(page: str) -> dict[str, Any]:
    match = DATA.search(page)
    assert match, "no embedded data"
    return json.loads(match.group(1))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    root = tmp_path_factory.mktemp("report-demo")
    ok_dir, ok = demo_run(root, "report-ok")
    assert ok.returncode == 0, ok.stderr
    failed_dir, failed = demo_run(root, "report-fail", "--fail")
    assert failed.returncode == 1, failed.stderr
    yield {"ok": ok_dir, "failed": failed_dir}


def _node_spans(data_dir: Path) -> list[SpanRecord]:
    return [s for s in load_directory(data_dir).spans if s.name.startswith(semconv.SPAN_NODE + " ")]


def _report(tmp_path: Path, *args: str) -> tuple[str, dict[str, Any]]:
    out = tmp_path / "report.html"
    assert cli_main(["report", *args, "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    return page, page_data(page)


# --------------------------------------------------------------------------- the demo run


def test_every_node_with_its_status_parent_and_best(demo: dict[str, Path], tmp_path: Path) -> None:
    _, data = _report(tmp_path, "report-ok", "--data-dir", str(demo["ok"]))
    spans = _node_spans(demo["ok"])
    assert len(spans) == 30
    expected = {(s.attributes[semconv.STAGE_NAME], s.attributes[semconv.NODE_ID]): s for s in spans}
    got = {(stage["name"], node["id"]): (stage, node) for stage in data["stages"] for node in stage["nodes"]}
    assert set(got) == set(expected)
    stage_spans = {
        s.attributes[semconv.STAGE_NAME]: s
        for s in load_directory(demo["ok"]).spans
        if s.name.startswith(semconv.SPAN_STAGE + " ")
    }
    for key, span in expected.items():
        stage, node = got[key]
        a = span.attributes
        assert node["st"] == (1 if a[semconv.NODE_IS_BUGGY] else 0), key
        assert node["k"] == a[semconv.NODE_KIND]
        assert node.get("m") == a.get(semconv.NODE_METRIC)
        assert node.get("et") == a.get(semconv.NODE_EXC_TYPE)
        assert node.get("b") == (
            1 if stage_spans[key[0]].attributes[semconv.STAGE_BEST_NODE_ID] == key[1] else None
        )
        parent = a.get(semconv.NODE_PARENT_ID)
        if node["p"] >= 0:
            assert stage["nodes"][node["p"]]["id"] == parent
        else:  # a draft, or derived from the best node of the stage before
            assert node.get("pid") == parent
            assert parent is None or node["ps"] != key[0]
        assert node["n"] == sum(
            1
            for s in load_directory(demo["ok"]).spans
            if s.name == semconv.SPAN_NODE_EXECUTE and s.parent_span_id == span.span_id
        )
    assert [s["name"] for s in data["stages"]] == list(stage_spans)
    assert sum(1 for stage in data["stages"] for node in stage["nodes"] if node.get("b")) == 4


def test_timeline_progress_artifacts_and_review(demo: dict[str, Path], tmp_path: Path) -> None:
    _, data = _report(tmp_path, "report-ok", "--data-dir", str(demo["ok"]))
    assert data["run"]["outcome"] == "completed"
    assert data["failure"] is None
    assert len(data["lanes"]) == 1 and data["lanes"][0]["nodes"] == 30
    nodes = [n for stage in data["stages"] for n in stage["nodes"]]
    assert all(0 <= n["s"] <= n["e"] <= data["run"]["duration"] + 0.001 for n in nodes)
    # the demo's nodes run one after the other: one row
    assert {n["r"] for n in nodes} == {0}
    # executions inside their node's bar
    assert len([bar for bar in data["inner"] if bar[2] == 0]) == sum(n["n"] for n in nodes)
    for si, ni, _kind, start, end, _label in data["inner"]:
        node = data["stages"][si]["nodes"][ni]
        assert node["s"] - 0.001 <= start <= end <= node["e"] + 0.001
    for stage in data["stages"]:
        assert stage["progress"][-1][1] == 1.0
        values = [v for _, v in stage["best_curve"]]
        assert values == sorted(values) and values[-1] == max(n["mv"] for n in stage["nodes"] if "mv" in n)
    assert [a["key"] for a in data["artifacts"] if a["key"]] == [
        "runs/report-ok/validation_accuracy.png",
        "runs/report-ok/ablation_summary.png",
    ]
    assert data["review"]["validation"]["verdict"] == "pass"
    assert data["review"]["paper"]["key"] == "runs/report-ok/paper.pdf"


def test_the_failed_run_shows_its_stack_trace(demo: dict[str, Path], tmp_path: Path) -> None:
    page, data = _report(tmp_path, "--data-dir", str(demo["failed"]))  # the latest run there
    assert data["run"]["outcome"] == "failed"
    failure = data["failure"]
    assert failure["stage"] == "2_baseline_tuning"
    assert failure["type"] == "DemoFailure"
    assert "Traceback (most recent call last)" in failure["stacktrace"]
    assert "illegal memory access" in failure["message"]
    assert [s["name"] for s in data["stages"]] == ["1_initial_implementation", "2_baseline_tuning"]


def test_the_page_can_fetch_nothing(demo: dict[str, Path], tmp_path: Path) -> None:
    """No external resource anywhere, and a policy that would block one anyway."""
    page, _ = _report(
        tmp_path, "report-ok", "--data-dir", str(demo["ok"]), "--jaeger-url", "http://jaeger.example:16686"
    )
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    assert csp, "no Content-Security-Policy"
    policy = dict(part.strip().split(" ", 1) for part in csp.group(1).split(";"))
    assert policy["default-src"] == "'none'"
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert policy["script-src"] == f"'sha256-{digest}'"
    # the SVG namespace is a name, never fetched
    without_data = DATA.sub("", page).replace("'http://www.w3.org/2000/svg'", "")
    assert not re.search(r"\b(src|href|srcset|action)\s*=", without_data, re.I)
    assert not re.search(r"<link|@import|url\(|https?://", without_data, re.I)
    # the link is data, drawn as an <a> the reader may follow
    assert page_data(page)["links"][0]["url"].startswith("http://jaeger.example:16686/trace/")


def test_report_as_a_real_process(demo: dict[str, Path], tmp_path: Path) -> None:
    result = subprocess.run(
        [str(OTEL_AI), "report"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=clean_env(demo["ok"]),
    )
    assert result.returncode == 0, result.stderr
    written = tmp_path / "otel-ai-report-report-ok.html"
    assert f"written to {written.name}" in result.stderr
    assert page_data(written.read_text())["run"]["id"] == "report-ok"
    to_stdout = subprocess.run(
        [str(OTEL_AI), "report", "report-ok", "-o", "-"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=clean_env(demo["ok"]),
    )
    assert to_stdout.returncode == 0, to_stdout.stderr
    assert (
        to_stdout.stdout.startswith("<!DOCTYPE html>")
        and page_data(to_stdout.stdout)["run"]["id"] == "report-ok"
    )


def test_report_errors(demo: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["report", "nope", "--data-dir", str(demo["ok"]), "-o", str(tmp_path / "x.html")]) == 1
    assert "no run 'nope'" in capsys.readouterr().err
    assert cli_main(["report", "--data-dir", str(tmp_path / "empty"), "-o", str(tmp_path / "x.html")]) == 1
    assert "no telemetry at" in capsys.readouterr().err
    assert (
        cli_main(
            [
                "report",
                "report-ok",
                "--data-dir",
                str(demo["ok"]),
                "-o",
                str(tmp_path / "no" / "dir" / "x.html"),
            ]
        )
        == 1
    )
    assert "cannot write" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def test_what_a_collectors_file_exporter_wrote(
    demo: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The collector's file exporter writes every signal under the name its ``path`` says."""
    exported = tmp_path / "collector-out"
    exported.mkdir()
    with open(exported / "otel.json", "w", encoding="utf-8") as out:
        for file in sorted(demo["ok"].glob("*.jsonl")):
            out.write(file.read_text(encoding="utf-8"))
    assert cli_main(["show", str(exported)]) == 0
    assert capsys.readouterr().out.startswith("Run report-ok  completed")
    _, data = _report(tmp_path, str(exported))
    assert sum(len(stage["nodes"]) for stage in data["stages"]) == 30


def test_hostile_values_stay_data(tmp_path: Path) -> None:
    """Ids and texts from the experiment are data: they cannot close the script or
    become markup, and odd numbers do not break the JSON."""
    otel_ai.configure(data_dir=tmp_path / "runs")
    evil = "</script><script>alert(1)</script>"
    with otel_ai.run("run-<b>&amp;") as run, run.stage("1_<i>stage", description=evil) as stage:
        with stage.node(evil, kind="draft") as node:
            node.completed(False, float("nan"), 0.1)
        with stage.node("n\u2028two", parent_id=evil, kind="improve") as node:
            node.completed(True, None, float("inf"), exc_type=evil)
    otel_ai.shutdown(10.0)
    (view,) = build_runs(load_directory(tmp_path / "runs"))
    page = render_html(view)
    assert page.count("</script>") == 2  # the data's and the code's own
    assert "<b>" not in page.split("<body>", 1)[1]
    data = page_data(page)
    nodes = data["stages"][0]["nodes"]
    assert [n["id"] for n in nodes] == [evil, "n\u2028two"]
    assert nodes[1]["p"] == 0 and nodes[1]["et"] == evil
    assert data["run"]["id"] == "run-<b>&amp;" and data["stages"][0]["description"] == evil


# --------------------------------------------------------------------------- geometry


def test_tree_layout_never_overlaps_subtrees() -> None:
    #      0        5
    #    1   2      |
    #   3 4         6
    children = [[1, 2], [3, 4], [], [], [], [6], []]
    x, depth, width, levels = layered_tree(children, [0, 5])
    assert depth == [0, 1, 1, 2, 2, 0, 1]
    assert levels == 3
    assert x[3] < x[4] < x[2] < x[5] and x[1] == (x[3] + x[4]) / 2 and x[0] == (x[1] + x[2]) / 2
    assert x[5] == x[6] and x[5] - x[2] >= 2  # a slot between trees
    assert width == x[6] + 1


def test_tree_layout_of_a_very_deep_chain_and_of_a_cycle() -> None:
    count = 20_000  # far past Python's recursion limit
    children = [[i + 1] for i in range(count - 1)] + [[]]
    x, depth, _, levels = layered_tree(children, [0])
    assert levels == count and depth[-1] == count - 1 and set(x) == {0.0}
    # bad data: 0 -> 1 -> 0 and no root; each node is laid out once
    x, depth, _, _ = layered_tree([[1], [0]], [])
    assert sorted(depth) == [0, 1]


def test_rows_for_overlapping_nodes() -> None:
    rows, count = pack_rows([(0, 10), (1, 3), (3, 4), (2, 5), (10, 11), (4.5, 6)])
    assert count == 3
    assert rows == [0, 1, 1, 2, 0, 1]


def test_a_lane_per_worker_process_and_llm_calls_inside_nodes() -> None:
    stage = {semconv.STAGE_NAME: "s"}
    spans = [
        span_record(semconv.SPAN_RUN, "a" * 16, None, 0, 10, {semconv.RUN_OUTCOME: "completed"}, 1),
        span_record(f"{semconv.SPAN_STAGE} s", "b" * 16, "a" * 16, 0, 10, stage, 1),
        # worker 2 runs two nodes at once (threads), worker 3 one
        span_record(
            f"{semconv.SPAN_NODE} draft", "c" * 16, "b" * 16, 1, 5, {**stage, semconv.NODE_ID: "n1"}, 2
        ),
        span_record(
            f"{semconv.SPAN_NODE} draft", "d" * 16, "b" * 16, 2, 6, {**stage, semconv.NODE_ID: "n2"}, 2
        ),
        span_record(
            f"{semconv.SPAN_NODE} improve",
            "e" * 16,
            "b" * 16,
            2,
            7,
            {**stage, semconv.NODE_ID: "n3", semconv.NODE_PARENT_ID: "n1"},
            3,
        ),
        # an LLM call under an intermediate span of node n3, and one outside any node
        span_record("agent step", "f" * 16, "e" * 16, 2, 4, stage, 3),
        span_record(
            "chat gpt-4o",
            "1" * 16,
            "f" * 16,
            2.5,
            3.5,
            {
                semconv.GEN_AI_OPERATION_NAME: "chat",
                semconv.GEN_AI_REQUEST_MODEL: "gpt-4o",
                semconv.GEN_AI_USAGE_INPUT_TOKENS: 1200,
                semconv.GEN_AI_USAGE_OUTPUT_TOKENS: 300,
            },
            3,
        ),
        span_record(
            "chat o1",
            "2" * 16,
            "a" * 16,
            8,
            9,
            {
                semconv.GEN_AI_REQUEST_MODEL: "o1",
                semconv.GEN_AI_USAGE_INPUT_TOKENS: 10,
                semconv.GEN_AI_USAGE_OUTPUT_TOKENS: 5,
            },
            1,
        ),
    ]
    (view,) = build_runs(Telemetry(spans=spans))
    data = report_data(view)
    assert [lane["label"] for lane in data["lanes"]] == ["pid 2 @ pod", "pid 3 @ pod"]
    assert [lane["rows"] for lane in data["lanes"]] == [2, 1]
    nodes = {n["id"]: n for n in data["stages"][0]["nodes"]}
    assert (nodes["n1"]["l"], nodes["n1"]["r"]) == (0, 0)
    assert (nodes["n2"]["l"], nodes["n2"]["r"]) == (0, 1)
    assert (nodes["n3"]["l"], nodes["n3"]["r"]) == (1, 0)
    assert (nodes["n3"]["c"], nodes["n3"]["ti"], nodes["n3"]["to"]) == (1, 1200, 300)
    assert [bar[2:5] for bar in data["inner"]] == [[1, 2.5, 3.5]]
    assert data["run_row"] == [[2, 8.0, 9.0, "chat o1, 10 in / 5 out tokens"]]
    tokens = data["tokens"]
    assert tokens["source"] == "spans" and tokens["calls"] == 2
    assert sorted(tokens["by_stage"]) == [["(outside stages)", 10, 5, 1], ["s", 1200, 300, 1]]
    assert tokens["curve"][-1] == [9.0, 1210, 305]


# --------------------------------------------------------------------------- 5,000 nodes


def test_a_run_of_5000_nodes(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    data_dir = synthetic_run(tmp_path_factory.getbasetemp(), 5000)
    page, data = _report(tmp_path, "--data-dir", str(data_dir))
    assert len(page.encode()) < 8 << 20
    nodes = [n for stage in data["stages"] for n in stage["nodes"]]
    assert len(nodes) == 5000
    assert len({(stage["name"], n["id"]) for stage in data["stages"] for n in stage["nodes"]}) == 5000
    assert sum(1 for n in nodes if n.get("b")) == 4
    assert data["tokens"]["calls"] == 5000
    # geometry: nodes of one depth never share a slot
    for stage in data["stages"]:
        seen = {(n["gx"], n["gy"]) for n in stage["nodes"]}
        assert len(seen) == len(stage["nodes"])
    shutil.rmtree(tmp_path)


# --------------------------------------------------------------------------- metrics


def _point(
    name: str, t: float, value: float | None, attributes: dict[str, Any] | None = None, **fields: Any
) -> MetricPoint:
    return MetricPoint(
        name=name,
        unit="",
        description="",
        kind=fields.pop("kind", "gauge"),
        time_ns=int(t * 1e9),
        attributes=attributes or {},
        value=value,
        resource={semconv.HOST_NAME: "pod", semconv.PROCESS_PID: 1},
        **fields,
    )


def test_cpu_memory_and_gpu_charts() -> None:
    gpu = {semconv.HW_TYPE: semconv.HW_TYPE_GPU}
    points = [
        _point(semconv.METRIC_PROCESS_CPU_UTILIZATION, t, 0.5 if t != 700 else 0.99) for t in range(1000)
    ]
    points += [
        _point(
            semconv.METRIC_SYSTEM_MEMORY_USAGE,
            1,
            100.0,
            {semconv.SYSTEM_MEMORY_STATE: semconv.MEMORY_STATE_USED},
        ),
        _point(
            semconv.METRIC_SYSTEM_MEMORY_USAGE,
            1,
            900.0,
            {semconv.SYSTEM_MEMORY_STATE: semconv.MEMORY_STATE_FREE},
        ),
        _point(
            semconv.METRIC_GPU_UTILIZATION, 1, 0.25, {**gpu, semconv.HW_ID: "GPU-a", semconv.HW_NAME: "gpu0"}
        ),
        _point(
            semconv.METRIC_GPU_UTILIZATION, 1, 0.75, {**gpu, semconv.HW_ID: "GPU-b", semconv.HW_NAME: "gpu1"}
        ),
        _point(
            semconv.METRIC_GPU_MEMORY_USAGE, 2, 5e9, {**gpu, semconv.HW_ID: "GPU-a", semconv.HW_NAME: "gpu0"}
        ),
        _point(
            semconv.METRIC_GPU_MEMORY_USAGE,
            3,
            float("nan"),
            {**gpu, semconv.HW_ID: "GPU-a", semconv.HW_NAME: "gpu0"},
        ),
    ]
    charts = {chart["title"]: chart for chart in resource_charts(points, t0=0)}
    assert list(charts) == ["CPU", "Memory", "GPU utilization", "GPU memory"]
    cpu = charts["CPU"]["series"][0]["points"]
    assert len(cpu) <= 601 and [700.0, 0.99] in cpu and cpu[-1] == [999.0, 0.5]  # peaks survive
    assert charts["Memory"]["series"] == [{"name": "machine, used", "points": [[1.0, 100.0]]}]
    assert [(s["name"], s["points"]) for s in charts["GPU utilization"]["series"]] == [
        ("gpu0", [[1.0, 0.25]]),
        ("gpu1", [[1.0, 0.75]]),
    ]
    assert charts["GPU memory"]["series"] == [{"name": "gpu0", "points": [[2.0, 5e9]]}]
    assert resource_charts([], t0=0) == []


def test_tokens_from_the_metric_when_no_llm_span() -> None:
    usage = semconv.METRIC_GEN_AI_TOKEN_USAGE
    base = {semconv.RUN_ID: "lanes", semconv.STAGE_NAME: "s"}
    inputs = {**base, semconv.GEN_AI_TOKEN_TYPE: semconv.GEN_AI_TOKEN_TYPE_INPUT}
    outputs = {**base, semconv.GEN_AI_TOKEN_TYPE: semconv.GEN_AI_TOKEN_TYPE_OUTPUT}
    points = [  # cumulative: the latest point of each series counts
        _point(usage, 1, None, inputs, kind="histogram", sum=100.0, count=1, temporality="CUMULATIVE"),
        _point(usage, 2, None, inputs, kind="histogram", sum=300.0, count=3, temporality="CUMULATIVE"),
        _point(usage, 2, None, outputs, kind="histogram", sum=50.0, count=3, temporality="CUMULATIVE"),
    ]
    spans = [span_record(semconv.SPAN_RUN, "a" * 16, None, 0, 10, {semconv.RUN_OUTCOME: "completed"}, 1)]
    (view,) = build_runs(Telemetry(spans=spans, metrics=points))
    tokens = report_data(view)["tokens"]
    assert tokens == {"source": "metrics", "by_stage": [["s", 300, 50, 3]], "curve": [], "calls": None}
