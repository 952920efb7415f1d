"""Links to a run: its Jaeger trace and its logs in Grafana/Loki (issue 9, deliverable 1).

The URLs are checked by decoding them; the label they query by is checked against the
Loki configuration the stack runs; ``otel-ai run`` and ``otel-ai show`` are run as real
processes and their links checked against the trace they wrote.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from report_runs import OTEL_AI, clean_env

from otel_ai import semconv
from otel_ai.cli import main as cli_main
from otel_ai.links import grafana_logs_url, jaeger_trace_url, logql_run_query, loki_name, run_links
from otel_ai.read import load_directory
from otel_ai.read.runview import build_runs

REPO = Path(__file__).resolve().parent.parent
JAEGER = "http://jaeger.example:16686"
GRAFANA = "https://grafana.example/grafana/"


def _pane(url: str) -> dict:
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    assert query["schemaVersion"] == ["1"]
    panes = json.loads(query["panes"][0])
    assert len(panes) == 1
    return next(iter(panes.values()))


def test_jaeger_trace_url() -> None:
    trace_id = "0AF7651916CD43DD8448EB211C80319C"
    assert (
        jaeger_trace_url("http://localhost:16686", trace_id)
        == f"http://localhost:16686/trace/{trace_id.lower()}"
    )
    assert (
        jaeger_trace_url("https://x.example/jaeger/", trace_id.lower())
        == f"https://x.example/jaeger/trace/{trace_id.lower()}"
    )


def test_grafana_explore_url_queries_the_run_in_loki() -> None:
    start_ns, end_ns = 1_700_000_000_000_000_000, 1_700_000_600_000_000_000
    url = grafana_logs_url(GRAFANA, "run-42", start_ns=start_ns, end_ns=end_ns)
    assert url.startswith("https://grafana.example/grafana/explore?")
    pane = _pane(url)
    query = pane["queries"][0]
    assert query["expr"] == '{ai_run_id="run-42"}'
    assert query["datasource"] == {"type": "loki", "uid": "loki"}
    # a minute before the start, five after the end, in epoch milliseconds
    assert pane["range"] == {"from": str(start_ns // 10**6 - 60_000), "to": str(end_ns // 10**6 + 300_000)}
    # while the run is going, up to now; with no time at all, the last week
    assert _pane(grafana_logs_url(GRAFANA, "run-42", start_ns=start_ns))["range"]["to"] == "now"
    assert _pane(grafana_logs_url(GRAFANA, "run-42"))["range"] == {"from": "now-7d", "to": "now"}


def test_logql_quotes_the_run_id() -> None:
    assert logql_run_query('a"b\\c') == '{ai_run_id="a\\"b\\\\c"}'


def test_the_label_is_the_one_loki_indexes() -> None:
    """The stack's Loki makes ``ai.run.id`` an index label; Loki's name for it is ours."""
    config = yaml.safe_load((REPO / "collector-config" / "stack" / "loki.yaml").read_text())
    labels = [
        attribute
        for rule in config["limits_config"]["otlp_config"]["log_attributes"]
        if rule["action"] == "index_label"
        for attribute in rule["attributes"]
    ]
    assert semconv.RUN_ID in labels
    assert loki_name(semconv.RUN_ID) == "ai_run_id"
    assert "{ai_run_id=" in (REPO / "docs" / "operations.md").read_text()
    # the data source uid the link opens is the one the stack provisions
    datasources = yaml.safe_load(
        (
            REPO
            / "collector-config"
            / "stack"
            / "grafana"
            / "provisioning"
            / "datasources"
            / "datasources.yaml"
        ).read_text()
    )
    assert any(ds["type"] == "loki" and ds["uid"] == "loki" for ds in datasources["datasources"])


def test_run_links_only_for_what_is_configured() -> None:
    assert run_links(run_id="r", trace_id="ab" * 16) == []
    links = run_links(run_id="r", trace_id="ab" * 16, jaeger_url=JAEGER)
    assert [(link.label, link.url) for link in links] == [("Jaeger", f"{JAEGER}/trace/{'ab' * 16}")]
    assert [
        link.label for link in run_links(run_id="r", trace_id=None, jaeger_url=JAEGER, grafana_url=GRAFANA)
    ] == ["Grafana"]


# --------------------------------------------------------------------------- otel-ai run


def _wrapped(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    data_dir = tmp_path / "runs"
    result = subprocess.run(
        [
            str(OTEL_AI),
            "run",
            "--run-id",
            "links-run",
            "--no-status",
            "--no-watch",
            *args,
            "--",
            sys.executable,
            "-c",
            "print('experiment output')",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=clean_env(data_dir, **env),
    )
    return result, data_dir


def _link_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("otel-ai run: ")]


def test_otel_ai_run_prints_the_links_at_start_and_end(tmp_path: Path) -> None:
    result, data_dir = _wrapped(tmp_path, OTEL_AI_JAEGER_URL=JAEGER, OTEL_AI_GRAFANA_URL=GRAFANA)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "experiment output\n"
    (view,) = build_runs(load_directory(data_dir))
    lines = _link_lines(result.stderr)
    assert [line.split(":", 2)[1].strip().split(" ")[0] for line in lines] == ["run", "Jaeger", "Grafana"] * 2
    assert lines[0] == f"otel-ai run: run links-run started, trace {view.trace_id}"
    assert lines[3] == f"otel-ai run: run links-run ended, trace {view.trace_id}"
    assert lines[1] == lines[4] == f"otel-ai run: Jaeger: {JAEGER}/trace/{view.trace_id}"
    start_pane, end_pane = _pane(lines[2].split(": ", 2)[2]), _pane(lines[5].split(": ", 2)[2])
    assert start_pane["queries"][0]["expr"] == end_pane["queries"][0]["expr"] == '{ai_run_id="links-run"}'
    assert start_pane["range"]["to"] == "now"
    end_ms = int(end_pane["range"]["to"]) - 300_000
    assert view.start_ns // 10**6 <= end_ms and int(end_pane["range"]["from"]) <= view.start_ns // 10**6


def test_otel_ai_run_jaeger_url_option(tmp_path: Path) -> None:
    result, data_dir = _wrapped(tmp_path, "--jaeger-url", JAEGER + "/")
    assert result.returncode == 0, result.stderr
    (view,) = build_runs(load_directory(data_dir))
    assert f"otel-ai run: Jaeger: {JAEGER}/trace/{view.trace_id}" in _link_lines(result.stderr)
    assert not any("Grafana" in line for line in _link_lines(result.stderr))


def test_otel_ai_run_prints_nothing_without_the_settings(tmp_path: Path) -> None:
    result, _ = _wrapped(tmp_path)
    assert result.returncode == 0, result.stderr
    assert _link_lines(result.stderr) == []


def test_otel_ai_run_refuses_a_bad_url_before_starting(tmp_path: Path) -> None:
    result, _ = _wrapped(tmp_path, OTEL_AI_GRAFANA_URL="grafana:3000")
    assert result.returncode == 2
    assert "OTEL_AI_GRAFANA_URL" in result.stderr
    assert "experiment output" not in result.stdout


# --------------------------------------------------------------------------- otel-ai show


def test_otel_ai_show_prints_the_links(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result, data_dir = _wrapped(tmp_path)
    assert result.returncode == 0, result.stderr
    (view,) = build_runs(load_directory(data_dir))
    monkeypatch.setenv("OTEL_AI_GRAFANA_URL", GRAFANA)
    assert cli_main(["show", "links-run", "--data-dir", str(data_dir), "--jaeger-url", JAEGER]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2] == f"Jaeger: {JAEGER}/trace/{view.trace_id}"
    assert lines[-1].startswith("Grafana: https://grafana.example/grafana/explore?")
    assert _pane(lines[-1].split(": ", 1)[1])["queries"][0]["expr"] == '{ai_run_id="links-run"}'

    monkeypatch.delenv("OTEL_AI_GRAFANA_URL")
    assert cli_main(["show", "links-run", "--data-dir", str(data_dir)]) == 0
    assert "Jaeger:" not in capsys.readouterr().out

    monkeypatch.setenv("OTEL_AI_JAEGER_URL", "jaeger")
    assert cli_main(["show", "links-run", "--data-dir", str(data_dir)]) == 2
    assert "OTEL_AI_JAEGER_URL" in capsys.readouterr().err
