"""``otel-ai show --jaeger`` and ``otel-ai report --jaeger``: a run read from Jaeger's
query API v3 (issue 9, deliverable 3).

A small fake Jaeger on 127.0.0.1 serves what the demo pod worker really wrote, in the
shape of Jaeger v2's api_v3 HTTP gateway: ``GET /api/v3/traces/{trace_id}`` and
``GET /api/v3/traces?query.service_name=...&query.attributes=...`` answer
``{"result": {"resourceSpans": [...]}}``; nothing found is a 404 with
``{"error": {"httpCode": 404, "message": ...}}``. It checks the parameters as Jaeger
does (start and end times required, RFC 3339) and records every request.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from report_runs import OTEL_AI, clean_env, demo_run

from otel_ai import semconv
from otel_ai.cli import main as cli_main
from otel_ai.read import load_directory, read_jsonl
from otel_ai.read.jaeger import load_from_jaeger

NODE_LINE = re.compile(r"[├└]── [●✗★○] .*$")


@dataclass
class FakeJaeger:
    """Traces by id (OTLP/JSON ``TracesData``), served like Jaeger v2's /api/v3."""

    traces: dict[str, dict[str, Any]]
    honour_attributes: bool = True  # Jaeger before 2.19 ignores query.attributes
    fail_with: int | None = None
    requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str) -> None:
                self._answer(status, {"error": {"httpCode": status, "message": message}})

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                url = urlparse(self.path)
                query = parse_qs(url.query)
                fake.requests.append((url.path, query))
                if fake.fail_with is not None:
                    self._error(fake.fail_with, "storage backend unavailable")
                    return
                if url.path.startswith("/api/v3/traces/"):
                    trace = fake.traces.get(unquote(url.path.rsplit("/", 1)[1]).lower())
                    if trace is None:
                        self._error(404, "trace not found")
                    else:
                        self._answer(200, {"result": trace})
                    return
                if url.path == "/api/v3/traces":
                    try:
                        start = datetime.fromisoformat(
                            query["query.start_time_min"][0].replace("Z", "+00:00")
                        )
                        end = datetime.fromisoformat(query["query.start_time_max"][0].replace("Z", "+00:00"))
                    except (KeyError, ValueError):
                        self._error(400, "query.start_time_min and query.start_time_max are required")
                        return
                    if not start < end:
                        self._error(400, "query.start_time_min must be before query.start_time_max")
                        return
                    wanted = (
                        json.loads(query.get("query.attributes", ["{}"])[0]) if fake.honour_attributes else {}
                    )
                    service = query.get("query.service_name", [""])[0]
                    found = [
                        trace
                        for trace in fake.traces.values()
                        if _service_of(trace) == service
                        and all(_has_attribute(trace, k, v) for k, v in wanted.items())
                    ]
                    if not found:
                        self._error(404, "No traces found")
                        return
                    self._answer(
                        200, {"result": {"resourceSpans": [rs for t in found for rs in t["resourceSpans"]]}}
                    )
                    return
                self._error(404, "404 page not found")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def _service_of(trace: dict[str, Any]) -> str | None:
    for rs in trace["resourceSpans"]:
        for attribute in rs.get("resource", {}).get("attributes", []):
            if attribute["key"] == semconv.SERVICE_NAME:
                return str(attribute["value"].get("stringValue"))
    return None


def _has_attribute(trace: dict[str, Any], key: str, value: str) -> bool:
    return any(
        a["key"] == key and str(next(iter(a["value"].values()))) == value
        for rs in trace["resourceSpans"]
        for ss in rs.get("scopeSpans", [])
        for span in ss.get("spans", [])
        for a in span.get("attributes", [])
    )


def traces_by_id(data_dir: Path) -> dict[str, dict[str, Any]]:
    """The OTLP/JSON trace files of ``data_dir`` regrouped by trace id, as Jaeger
    would return each trace."""
    traces: dict[str, dict[str, Any]] = {}
    for path in sorted(data_dir.glob("traces-*.jsonl")):
        with read_jsonl(path) as lines:
            for request in lines:
                for rs in request.get("resourceSpans", []):
                    for ss in rs.get("scopeSpans", []):
                        for span in ss.get("spans", []):
                            trace = traces.setdefault(span["traceId"].lower(), {"resourceSpans": []})
                            trace["resourceSpans"].append(
                                {
                                    "resource": rs.get("resource", {}),
                                    "scopeSpans": [{"scope": ss.get("scope", {}), "spans": [span]}],
                                }
                            )
    return traces


@dataclass
class Runs:
    data_dir: Path
    ok: str
    failed: str


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("jaeger")
    data_dir = root / "runs"
    for run_id, extra in (("jaeger-fail", ("--fail",)), ("jaeger-ok", ())):
        run_dir, result = demo_run(root, run_id, *extra)
        assert result.returncode == (1 if extra else 0), result.stderr
        data_dir.mkdir(exist_ok=True)
        for file in run_dir.glob("*.jsonl"):
            file.rename(data_dir / f"{file.stem}-{run_id}.jsonl")
    return Runs(data_dir, "jaeger-ok", "jaeger-fail")


@pytest.fixture
def jaeger(runs: Runs) -> Iterator[FakeJaeger]:
    fake = FakeJaeger(traces_by_id(runs.data_dir))
    yield fake
    fake.close()


def _show(*args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(OTEL_AI), "show", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(data_dir),
    )


def _tree(output: str) -> list[str]:
    """The stage headers and node lines of a show output (what Jaeger holds: the trace)."""
    return [
        line for line in output.splitlines() if NODE_LINE.search(line) or "Stage " in line or "nodes " in line
    ]


def _trace_id(runs: Runs, run_id: str) -> str:
    return next(
        s.trace_id for s in load_directory(runs.data_dir).spans if s.attributes.get(semconv.RUN_ID) == run_id
    )


def test_show_from_jaeger_by_run_id_matches_show_from_files(
    runs: Runs, jaeger: FakeJaeger, tmp_path: Path
) -> None:
    from_files = _show(runs.ok, "--data-dir", str(runs.data_dir))
    from_jaeger = _show(runs.ok, "--jaeger", jaeger.url, data_dir=tmp_path / "nothing-here")
    assert from_files.returncode == 0, from_files.stderr
    assert from_jaeger.returncode == 0, from_jaeger.stderr
    assert from_jaeger.stdout.splitlines()[0] == from_files.stdout.splitlines()[0]  # run, outcome, trace id
    assert len(_tree(from_jaeger.stdout)) > 30
    assert _tree(from_jaeger.stdout) == _tree(from_files.stdout)
    # a search on the run id, then the whole trace by its id
    (search_path, query), (get_path, _) = jaeger.requests
    assert search_path == "/api/v3/traces"
    assert query["query.service_name"] == [semconv.DEFAULT_SERVICE_NAME]
    assert json.loads(query["query.attributes"][0]) == {semconv.RUN_ID: runs.ok}
    assert get_path == f"/api/v3/traces/{_trace_id(runs, runs.ok)}"
    # the Jaeger it read from is where the link goes
    assert from_jaeger.stdout.splitlines()[-1] == f"Jaeger: {jaeger.url}/trace/{_trace_id(runs, runs.ok)}"


def test_show_from_jaeger_by_trace_id(runs: Runs, jaeger: FakeJaeger) -> None:
    trace_id = _trace_id(runs, runs.failed)
    result = _show(trace_id.upper(), "--jaeger", jaeger.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Run {runs.failed}  failed")
    assert "DemoFailure" in result.stdout
    assert [path for path, _ in jaeger.requests] == [f"/api/v3/traces/{trace_id}"]


def test_show_from_jaeger_without_a_target_is_the_latest_run(runs: Runs, jaeger: FakeJaeger) -> None:
    result = _show("--jaeger", jaeger.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Run {runs.ok}  completed")


def test_an_old_jaeger_that_ignores_the_attribute_filter(runs: Runs, jaeger: FakeJaeger) -> None:
    """Jaeger before 2.19 answers every trace of the service: the run is picked out."""
    jaeger.honour_attributes = False
    for run_id in (runs.ok, runs.failed):
        telemetry = load_from_jaeger(jaeger.url, run_id)
        assert {s.trace_id for s in telemetry.spans} == {_trace_id(runs, run_id)}


def test_report_from_jaeger(runs: Runs, jaeger: FakeJaeger, tmp_path: Path) -> None:
    out = tmp_path / "from-jaeger.html"
    assert cli_main(["report", runs.ok, "--jaeger", jaeger.url, "-o", str(out)]) == 0
    page = out.read_text()
    data = json.loads(
        re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S).group(1)
    )
    assert data["run"]["id"] == runs.ok
    expected = {
        (s.attributes[semconv.STAGE_NAME], s.attributes[semconv.NODE_ID])
        for s in load_directory(runs.data_dir).spans
        if s.name.startswith(semconv.SPAN_NODE + " ") and s.attributes.get(semconv.RUN_ID) == runs.ok
    }
    assert {(stage["name"], node["id"]) for stage in data["stages"] for node in stage["nodes"]} == expected
    assert data["links"] == [{"label": "Jaeger", "url": f"{jaeger.url}/trace/{_trace_id(runs, runs.ok)}"}]


def test_errors_from_jaeger_are_clear(
    runs: Runs, jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["show", "no-such-run", "--jaeger", jaeger.url]) == 1
    err = capsys.readouterr().err
    assert "no run or trace 'no-such-run'" in err and jaeger.url in err

    jaeger.fail_with = 500
    assert cli_main(["show", runs.ok, "--jaeger", jaeger.url]) == 1
    assert "answered 500" in (err := capsys.readouterr().err) and "storage backend unavailable" in err

    closed = FakeJaeger({})
    url = closed.url
    closed.close()
    assert cli_main(["show", runs.ok, "--jaeger", url]) == 1
    assert "cannot reach Jaeger" in capsys.readouterr().err

    assert cli_main(["show", runs.ok, "--jaeger", "localhost:16686"]) == 1
    assert "--jaeger expects the URL" in capsys.readouterr().err


def test_another_service_name(runs: Runs, jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["show", runs.ok, "--jaeger", jaeger.url, "--service", "other-service"]) == 1
    assert "of service 'other-service'" in capsys.readouterr().err
    assert jaeger.requests[-1][1]["query.service_name"] == ["other-service"]
