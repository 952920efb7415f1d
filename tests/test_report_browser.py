"""The report opened in a real browser: Debian's chromium, headless, networking off.

The page of a real run (the simulated AI-Scientist search, examples/simulated_bfts.py,
under ``otel-ai run``: worker processes, LLM calls, CPU and memory samples), of the demo
pod worker (completed and failed) and of a synthetic run of 5,000 nodes are opened
over the DevTools protocol (tests/report_browser.py): the DOM must hold every node of
the telemetry, buggy nodes and each stage's best node marked; the page must run without
an error and request nothing but itself. Screenshots go to ``test-output/report/`` in
the repository (ignored by git).

A control page that does ask for remote resources shows the recording sees them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from report_browser import Browser, Page, find_chromium
from report_runs import SIMULATED_BFTS, demo_run, simulated_search, span_record, synthetic_run

from otel_ai import semconv
from otel_ai.cli import main as cli_main
from otel_ai.read import load_directory

REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO / "test-output" / "report"
READY = "window.__otelAiReport !== undefined && window.__otelAiReport.ready === true"

# what the page says about itself: every node circle per stage, by id and class
DOM_FACTS = """JSON.stringify({
  errors: window.__otelAiReport.errors,
  outcome: document.getElementById('outcome').textContent,
  stages: Array.from(document.querySelectorAll('svg.tree')).map(function (svg) {
    return {
      name: svg.getAttribute('data-stage'),
      nodes: Array.from(svg.querySelectorAll('circle.n')).map(function (c) {
        return [c.getAttribute('data-node-id'), c.getAttribute('class')];
      })
    };
  }),
  charts: document.querySelectorAll('.chart svg').length,
  resources: document.querySelectorAll('#resources .chart').length,
  artifacts: Array.from(document.querySelectorAll('#artifacts-table tr')).slice(1).map(function (r) { return r.cells[0].textContent; }),
  stacktrace: (document.getElementById('stacktrace') || {}).textContent || null,
  timeline: document.querySelectorAll('#timeline canvas').length
})"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    binary = find_chromium()
    if binary is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    started = Browser(binary, tmp_path_factory.mktemp("chromium"))
    yield started
    started.close()


def _open(browser: Browser, page_path: Path) -> tuple[Page, float]:
    page = Page(browser)
    started = time.monotonic()
    page.open(page_path.resolve().as_uri(), ready=READY)
    return page, time.monotonic() - started


def _facts(page: Page) -> dict[str, Any]:
    facts: dict[str, Any] = json.loads(page.evaluate(DOM_FACTS))
    return facts


def _expected_nodes(data_dir: Path, run_id: str) -> dict[str, dict[str, bool]]:
    """stage -> node id -> buggy, from the spans the run wrote."""
    expected: dict[str, dict[str, bool]] = {}
    for span in load_directory(data_dir).spans:
        if span.name.startswith(semconv.SPAN_NODE + " ") and span.attributes.get(semconv.RUN_ID) == run_id:
            a = span.attributes
            expected.setdefault(str(a[semconv.STAGE_NAME]), {})[str(a[semconv.NODE_ID])] = bool(
                a[semconv.NODE_IS_BUGGY]
            )
    return expected


def _best_nodes(data_dir: Path, run_id: str) -> dict[str, str]:
    return {
        str(s.attributes[semconv.STAGE_NAME]): str(s.attributes[semconv.STAGE_BEST_NODE_ID])
        for s in load_directory(data_dir).spans
        if s.name.startswith(semconv.SPAN_STAGE + " ")
        and s.attributes.get(semconv.RUN_ID) == run_id
        and semconv.STAGE_BEST_NODE_ID in s.attributes
    }


def _check_nodes(facts: dict[str, Any], expected: dict[str, dict[str, bool]], best: dict[str, str]) -> None:
    assert [s["name"] for s in facts["stages"]] == list(expected)
    for stage in facts["stages"]:
        name = stage["name"]
        classes = {node_id: set(cls.split()) for node_id, cls in stage["nodes"]}
        assert len(classes) == len(stage["nodes"]), f"a node drawn twice in {name}"
        assert set(classes) == set(expected[name]), name
        assert {n for n, c in classes.items() if "buggy" in c} == {
            n for n, b in expected[name].items() if b
        }, name
        assert {n for n, c in classes.items() if "good" in c} == {
            n for n, b in expected[name].items() if not b
        }, name
        assert {n for n, c in classes.items() if "best" in c} == ({best[name]} if name in best else set()), (
            name
        )


def _check_offline(page: Page, page_path: Path) -> None:
    # the page itself is the one request; the recorder works (it saw that one)
    assert page.requested_urls() == [page_path.resolve().as_uri()]
    assert page.problems() == []


def test_the_report_of_the_simulated_search(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """AI-Scientist-v2's search (examples/simulated_bfts.py) through the instrumentor,
    under otel-ai run: nodes made in two pool workers, LLM calls, then paper and review."""
    if not SIMULATED_BFTS.is_file():
        pytest.skip(f"{SIMULATED_BFTS} is not there")
    root = tmp_path_factory.mktemp("browser-bfts")
    data_dir, result = simulated_search(root, "browser-bfts")
    assert result.returncode == 0, result.stderr[-3000:]
    page_path = root / "browser-bfts.html"
    assert cli_main(["report", "browser-bfts", "--data-dir", str(data_dir), "-o", str(page_path)]) == 0
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page_path.read_text(), re.S).group(1))
    assert len(data["lanes"]) >= 2, data["lanes"]  # the pool's worker processes
    assert any(bar[2] == 1 for bar in data["inner"]), "no LLM call inside a node"
    assert data["tokens"] is not None and data["tokens"]["calls"] > 0

    page, _ = _open(browser, page_path)
    facts = _facts(page)
    assert facts["errors"] == []
    assert facts["outcome"] == "completed"
    expected = _expected_nodes(data_dir, "browser-bfts")
    assert sum(len(nodes) for nodes in expected.values()) >= 20
    _check_nodes(facts, expected, _best_nodes(data_dir, "browser-bfts"))
    assert any("buggy" in cls for stage in facts["stages"] for _, cls in stage["nodes"])
    assert facts["resources"] >= 2
    _check_offline(page, page_path)
    page.screenshot(SCREENSHOTS / "simulated-search.png")


def test_the_report_of_the_demo_run(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("browser-demo")
    data_dir, result = demo_run(root, "browser-ok", wrapped=True)
    assert result.returncode == 0, result.stderr
    page_path = root / "browser-ok.html"
    assert cli_main(["report", "browser-ok", "--data-dir", str(data_dir), "-o", str(page_path)]) == 0

    page, _ = _open(browser, page_path)
    facts = _facts(page)
    assert facts["errors"] == []
    assert facts["outcome"] == "completed"
    expected = _expected_nodes(data_dir, "browser-ok")
    assert sum(len(nodes) for nodes in expected.values()) == 30
    best = _best_nodes(data_dir, "browser-ok")
    assert len(best) == 4
    _check_nodes(facts, expected, best)
    assert facts["timeline"] == 1
    assert facts["resources"] >= 2  # CPU and memory, sampled by otel-ai run
    assert facts["charts"] >= 5
    # the demo's own reports, and what `otel-ai run`'s watcher of the working directory saw
    assert sorted(facts["artifacts"]) == sorted(
        [
            "figures/validation_accuracy.png",
            "figures/ablation_summary.png",
            "runs/browser-ok/validation_accuracy.png",
            "runs/browser-ok/ablation_summary.png",
            "work-browser-ok/figures/validation_accuracy.png",
            "work-browser-ok/figures/ablation_summary.png",
        ]
    )
    _check_offline(page, page_path)
    shot = page.screenshot(SCREENSHOTS / "demo-run.png")
    assert shot.stat().st_size > 10_000

    # select the best node of the last stage: its details and its path to the root
    last = list(expected)[-1]
    selected = page.evaluate(
        "(function () {"
        f"  var c = document.querySelector('svg.tree[data-stage=\"{last}\"] circle.best');"
        "  c.dispatchEvent(new PointerEvent('pointerdown', {bubbles: true, clientX: 1, clientY: 1}));"
        "  c.dispatchEvent(new PointerEvent('pointerup', {bubbles: true, clientX: 1, clientY: 1}));"
        "  var d = document.getElementById('details');"
        "  return [getComputedStyle(d).display, d.textContent, document.querySelectorAll('circle.selected').length];"
        "})()"
    )
    assert selected[0] == "block"
    assert best[last] in selected[1] and "best node of the stage" in selected[1]
    assert selected[2] == 1
    page.screenshot(SCREENSHOTS / "demo-run-selected.png", max_height=1400)
    _check_offline(page, page_path)


def test_the_report_of_a_failed_run(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("browser-fail")
    data_dir, result = demo_run(root, "browser-fail", "--fail")
    assert result.returncode == 1, result.stderr
    page_path = root / "browser-fail.html"
    assert cli_main(["report", "--data-dir", str(data_dir), "-o", str(page_path)]) == 0
    page, _ = _open(browser, page_path)
    facts = _facts(page)
    assert facts["errors"] == []
    assert facts["outcome"] == "failed"
    assert "Traceback (most recent call last)" in facts["stacktrace"]
    assert "DemoFailure: experiment worker crashed" in facts["stacktrace"]
    _check_nodes(facts, _expected_nodes(data_dir, "browser-fail"), _best_nodes(data_dir, "browser-fail"))
    _check_offline(page, page_path)
    page.screenshot(SCREENSHOTS / "failed-run.png", max_height=2400)


def test_the_report_of_5000_nodes(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> None:
    data_dir = synthetic_run(tmp_path_factory.getbasetemp(), 5000)
    page_path = tmp_path_factory.mktemp("browser-5000") / "synthetic-5000.html"
    assert cli_main(["report", "--data-dir", str(data_dir), "-o", str(page_path)]) == 0
    page, opened_in = _open(browser, page_path)
    assert opened_in < 30, f"the page of 5,000 nodes took {opened_in:.1f}s to draw"
    facts = _facts(page)
    assert facts["errors"] == []
    assert sum(len(stage["nodes"]) for stage in facts["stages"]) == 5000
    expected = _expected_nodes(data_dir, "synthetic")
    _check_nodes(facts, expected, _best_nodes(data_dir, "synthetic"))
    # still usable: finding a node selects it and brings it into view
    target = sorted(expected[list(expected)[2]])[700]
    found = page.evaluate(
        "(function () { var i = document.querySelector('#trees input');"
        f" i.value = '{target}'; i.dispatchEvent(new KeyboardEvent('keydown', {{key: 'Enter'}}));"
        " return document.querySelector('circle.selected').getAttribute('data-node-id'); })()"
    )
    assert found == target
    _check_offline(page, page_path)
    page.screenshot(SCREENSHOTS / "synthetic-5000.png", max_height=3000)


def test_the_recording_sees_a_page_that_asks_the_network(browser: Browser, tmp_path: Path) -> None:
    """Control: the checks above are not vacuous. A page that loads a remote image and
    calls fetch is seen asking, and its requests never leave the machine (the trap)."""
    control = tmp_path / "control.html"
    control.write_text(
        "<!DOCTYPE html><html><body><img src='http://example.invalid/pixel.png'>"
        "<script>fetch('https://api.example.invalid/v1').catch(function () {}).then(function () { window.__done = true; });</script>"
        "</body></html>"
    )
    page = Page(browser)
    page.open(control.as_uri(), ready="window.__done === true")
    urls = page.requested_urls()
    assert "http://example.invalid/pixel.png" in urls
    assert "https://api.example.invalid/v1" in urls
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(
        "example.invalid" in line for line in browser.trap.requests
    ):
        time.sleep(0.1)
    assert any("example.invalid" in line for line in browser.trap.requests)


def test_a_run_whose_process_died(browser: Browser, tmp_path: Path) -> None:
    """No run span, a stage never ended, a node never finished: drawn, and said so."""
    from otel_ai.read import Telemetry
    from otel_ai.read.runview import build_runs
    from otel_ai.report import render_html

    stage = {semconv.STAGE_NAME: "1_initial_implementation"}
    spans = [
        span_record(
            f"{semconv.SPAN_NODE} draft",
            "c" * 16,
            "b" * 16,
            1,
            5,
            {
                **stage,
                semconv.NODE_ID: "done",
                semconv.NODE_IS_BUGGY: True,
                semconv.NODE_EXC_TYPE: "KeyError",
            },
            2,
        ),
        span_record(
            f"{semconv.SPAN_NODE} debug",
            "d" * 16,
            "b" * 16,
            5,
            6,
            {**stage, semconv.NODE_ID: "cut-short", semconv.NODE_PARENT_ID: "done"},
            2,
        ),
    ]
    (view,) = build_runs(Telemetry(spans=spans))
    page_path = tmp_path / "died.html"
    page_path.write_text(render_html(view), encoding="utf-8")
    page, _ = _open(browser, page_path)
    facts = _facts(page)
    assert facts["errors"] == []
    assert facts["outcome"] == "unfinished"
    assert facts["stages"] == [
        {"name": "1_initial_implementation", "nodes": [["done", "n buggy"], ["cut-short", "n unknown"]]}
    ]
    assert "process may have died" in page.evaluate("document.querySelector('header').textContent")
    _check_offline(page, page_path)
