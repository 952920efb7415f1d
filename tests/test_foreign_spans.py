"""Under `otel-ai run`, spans otel_ai did not make (the plain OpenTelemetry API, an
installed instrumentation) join the run: with no other parent, in any thread of any
process, their parent is the wrapper's `ai.run` span."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import Wire

from otel_ai.propagation import parse_traceparent
from otel_ai.read import SpanRecord, load_directory

OTEL_AI = [sys.executable, "-m", "otel_ai"]

FOREIGN = textwrap.dedent(
    """
    import asyncio, concurrent.futures, multiprocessing, sys, threading
    import requests
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    import otel_ai

    tracer = trace.get_tracer("experiment")  # module level: taken before any fork

    def work(name):
        with tracer.start_as_current_span(name):
            with tracer.start_as_current_span(name + " inner"):
                pass
        return name

    @tracer.start_as_current_span("decorated")
    def decorated():
        pass

    @tracer.start_as_current_span("coroutine")
    async def coroutine():
        with tracer.start_as_current_span("awaiting"):
            await asyncio.sleep(0.05)

    def explicit(holder):
        tracer.start_span("explicit child", context=trace.set_span_in_context(holder)).end()

    if __name__ == "__main__":
        url = sys.argv[1]
        RequestsInstrumentor().instrument()
        work("main thread")
        decorated()
        asyncio.run(coroutine())
        thread = threading.Thread(target=work, args=("thread",))
        thread.start()
        thread.join()
        holder = tracer.start_span("holder")
        thread = threading.Thread(target=explicit, args=(holder,))
        thread.start()
        thread.join()
        holder.end()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            pool.submit(work, "thread pool").result()
            assert pool.submit(requests.get, url + "/pool", timeout=10).result().status_code == 200
        for method in ("fork", "spawn"):
            context = multiprocessing.get_context(method)
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                pool.submit(work, method + " worker").result()
        assert requests.get(url + "/main", timeout=10).status_code == 200
        with otel_ai.run() as run:
            with run.stage("1_initial_implementation"):
                work("in stage")
                decorated()
                assert requests.get(url + "/stage", timeout=10).status_code == 200
        with tracer.start_as_current_span("own trace", context=Context()):
            work("under own trace")
    """
)


class _Server(ThreadingHTTPServer):
    traceparents: dict[str, str]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.traceparents[self.path] = self.headers.get("traceparent", "")
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass


@pytest.fixture
def http_server() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.traceparents = {}
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def one(spans: list[SpanRecord], name: str) -> SpanRecord:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{name}: {len(found)} spans"
    return found[0]


def test_plain_api_and_instrumentation_spans_join_the_run(tmp_path: Path, http_server: _Server) -> None:
    (tmp_path / "foreign.py").write_text(FOREIGN)
    url = f"http://127.0.0.1:{http_server.server_address[1]}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "TRACEPARENT", "TRACESTATE", "PYTEST_"))
    }
    env["OTEL_AI_DATA_DIR"] = str(tmp_path / "runs")
    result = subprocess.run(
        [
            *OTEL_AI,
            "run",
            "--no-status",
            "--no-watch",
            "--run-id",
            "foreign",
            "--",
            sys.executable,
            "foreign.py",
            url,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    spans = load_directory(tmp_path / "runs").spans
    run = one(spans, "ai.run")
    stage = one(spans, "ai.stage 1_initial_implementation")
    main_pid = one(spans, "main thread").resource["process.pid"]
    assert main_pid != run.resource["process.pid"]

    # no other parent: the run, whatever the thread or process
    for name in ("main thread", "thread", "thread pool", "fork worker", "spawn worker", "holder"):
        span = one(spans, name)
        assert (span.trace_id, span.parent_span_id) == (run.trace_id, run.span_id), name
    for name in ("main thread", "thread", "thread pool", "fork worker", "spawn worker"):
        assert one(spans, f"{name} inner").parent_span_id == one(spans, name).span_id
    for name in ("fork worker", "spawn worker"):
        assert one(spans, name).resource["process.pid"] != main_pid, f"{name} ran in a worker process"
    # the span current at the time, and a parent given explicitly, come first
    assert one(spans, "in stage").parent_span_id == stage.span_id
    assert sorted(s.parent_span_id for s in spans if s.name == "decorated") == sorted(
        [run.span_id, stage.span_id]
    )
    assert one(spans, "explicit child").parent_span_id == one(spans, "holder").span_id
    coroutine = one(spans, "coroutine")
    assert (
        coroutine.parent_span_id == run.span_id and one(spans, "awaiting").parent_span_id == coroutine.span_id
    )
    assert coroutine.end_ns - coroutine.start_ns >= 50_000_000, (
        "a decorated coroutine's span lasts until it ends"
    )

    # an installed instrumentation's spans (requests), and the context they send on
    http = {
        str(s.attributes.get("url.full", s.attributes.get("http.url", ""))).rsplit("/", 1)[-1]: s
        for s in spans
        if s.scope == "opentelemetry.instrumentation.requests"
    }
    assert set(http) == {"pool", "main", "stage"}, sorted(s.name for s in spans)
    assert (http["pool"].parent_span_id, http["main"].parent_span_id) == (run.span_id, run.span_id)
    assert http["stage"].parent_span_id == stage.span_id
    for path, span in http.items():
        assert span.trace_id == run.trace_id
        assert parse_traceparent(http_server.traceparents["/" + path])[:2] == (
            int(span.trace_id, 16),
            int(span.span_id, 16),
        )

    # an explicit empty context is a trace of its own, as the caller asked
    own = one(spans, "own trace")
    assert own.parent_span_id is None and own.trace_id != run.trace_id
    assert one(spans, "under own trace").parent_span_id == own.span_id
    assert {s.trace_id for s in spans} == {run.trace_id, own.trace_id}


RUN_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def as_if_wrapped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """This process seen as a command of `otel-ai run` (its run span in TRACEPARENT)."""
    monkeypatch.setenv("TRACEPARENT", RUN_TRACEPARENT)
    monkeypatch.setenv("OTEL_AI_RUN_ID", "wrapped")
    monkeypatch.setenv("OTEL_AI_CHANNEL", str(tmp_path / "no-wrapper.sock"))


def test_a_decorated_coroutine_gets_its_parent_at_each_call_and_its_whole_duration(
    as_if_wrapped: None, http_wire: Wire
) -> None:
    import asyncio

    from opentelemetry import trace

    tracer = trace.get_tracer("experiment")

    @tracer.start_as_current_span("coroutine")
    async def coroutine() -> None:
        await asyncio.sleep(0.05)

    asyncio.run(coroutine())
    with tracer.start_as_current_span("outer"):
        asyncio.run(coroutine())
    spans = http_wire.spans()
    outer = one(spans, "outer")
    calls = sorted((s for s in spans if s.name == "coroutine"), key=lambda s: s.start_ns)
    assert [s.parent_span_id for s in calls] == ["00f067aa0ba902b7", outer.span_id]
    assert {s.trace_id for s in spans} == {"4bf92f3577b34da6a3ce929d0e0e4736"}
    assert all(s.end_ns - s.start_ns >= 50_000_000 for s in calls), "the span lasts until the coroutine ends"
