"""The embedded default (SPEC section 5): with no OTLP endpoint, OTLP/JSON lines files
under OTEL_AI_DATA_DIR, one per signal per process; and the promises around it (SPEC
section 7): OTEL_SDK_DISABLED, fork, a hanging collector at shutdown, and a process that
exits without ending its run.

Files are read back with :func:`otel_ai.read.load_directory`; the same scenario
sent to the in-test OTLP receiver is the reference they are compared with.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from otlp_receiver import OTLPReceiver

import otel_ai
import otel_ai.testing
from otel_ai.read import (
    LogRecordData,
    SpanRecord,
    Telemetry,
    load_directory,
)

SIGNALS = ("traces", "logs", "metrics")


def _data_dir() -> Path:
    return Path(os.environ["OTEL_AI_DATA_DIR"])


def _scenario() -> None:
    """A small but complete run: two stages, a buggy node, a debug child, executions,
    best-node selection, progress, a log line, artifacts, paper and review."""
    with otel_ai.run("embedded-1", image="ghcr.io/x/ai-scientist:1") as run:
        with run.stage("1_initial_implementation", description="first working code") as stage:
            with stage.node("draft-a", kind="draft") as node:
                node.code_generated("print('hello')\n")
                with node.executing("experiment"):
                    pass
                node.completed(True, None, 0.01, exc_type="ValueError")
            with stage.node("debug-b", parent_id="draft-a", kind="debug") as node:
                with node.executing("experiment"):
                    pass
                node.completed(False, 0.71, 0.02)
            stage.selected_best("debug-b", 0.71)
            stage.progress(2, 2, good_nodes=1, buggy_nodes=1, total_nodes=2, best_metric=0.71)
            stage.metric("best_validation_accuracy", 0.71)
            run.log("stage 1 done", "info", "agent_manager")
        with run.stage("2_baseline_tuning") as stage:
            with stage.node("tune-c", parent_id="debug-b", kind="hyperparam") as node:
                node.completed(False, 0.75, 0.01)
            stage.selected_best("tune-c", 0.75)
        run.artifact_detected("figures/acc.png", "plot", 123)
        run.artifact_registered("runs/embedded-1/acc.png", 123, "0" * 64, "image/png", "plot")
        with run.paper() as paper:
            paper.generated("runs/embedded-1/paper.pdf")
        with run.validation("gpt-4o") as review:
            review.completed("pass", {"overall": 0.8}, "fine")


def _events(logs: list[LogRecordData]) -> list[LogRecordData]:
    return sorted((r for r in logs if r.event_name), key=lambda r: r.attributes["ai.event.seq"])


def _signature(spans: list[SpanRecord], logs: list[LogRecordData]) -> dict[str, Any]:
    """What must be identical between files and wire: names, structure, attribute keys,
    span events and the ordered event stream (ids and timings differ by nature)."""
    by_id = {s.span_id: s for s in spans}
    return {
        "spans": Counter(s.name for s in spans),
        "structure": Counter(
            (s.name, by_id[s.parent_span_id].name if s.parent_span_id else None) for s in spans
        ),
        "attribute_keys": sorted((s.name, tuple(sorted(s.attributes))) for s in spans),
        "span_events": sorted((s.name, tuple(e.name for e in s.events)) for s in spans),
        "links": sorted((s.name, len(s.links)) for s in spans),
        "status": sorted((s.name, s.attributes.get("ai.node.id", ""), s.status_code) for s in spans),
        "event_names": [r.event_name for r in _events(logs)],
        "event_spans": [by_id[r.span_id].name for r in _events(logs)],
        "event_attribute_keys": [tuple(sorted(r.attributes)) for r in _events(logs)],
        "plain_logs": sorted(str(r.body) for r in logs if not r.event_name),
    }


def _check_tree(spans: list[SpanRecord], logs: list[LogRecordData]) -> None:
    """Parent/child ids hold together inside one data set."""
    by_id = {s.span_id: s for s in spans}
    assert len(by_id) == len(spans), "a span id appears twice"
    (run,) = [s for s in spans if s.name == "ai.run"]
    assert run.parent_span_id is None
    assert {s.trace_id for s in spans} == {run.trace_id}
    for span in spans:
        if span.name.startswith("ai.stage ") or span.name in ("ai.paper", "ai.validation"):
            assert span.parent_span_id == run.span_id, span.name
        elif span.name.startswith("ai.node "):
            parent = by_id[span.parent_span_id]  # type: ignore[index]
            assert parent.name == f"ai.stage {span.attributes['ai.stage.name']}"
        elif span.name == "ai.node.execute":
            assert by_id[span.parent_span_id].name.startswith("ai.node ")  # type: ignore[index]
    nodes = {s.attributes["ai.node.id"]: s for s in spans if s.name.startswith("ai.node ")}
    # the node a node derives from: ai.node.parent_id and a link to its span
    debug = nodes["debug-b"]
    assert debug.attributes["ai.node.parent_id"] == "draft-a"
    assert [link.span_id for link in debug.links] == [nodes["draft-a"].span_id]
    # every log record points into this trace, at a span that exists
    for record in logs:
        assert record.trace_id == run.trace_id
        assert record.span_id in by_id, record.event_name
        assert record.attributes["ai.run.id"] == "embedded-1"


# --------------------------------------------------------------------------- files


def test_no_endpoint_writes_one_jsonl_file_per_signal() -> None:
    _scenario()
    assert otel_ai.shutdown(10.0)
    files = sorted(p.name for p in _data_dir().iterdir())
    host = re.escape("".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:64])
    assert len(files) == 3, files
    for signal, name in zip(("logs", "metrics", "traces"), files, strict=False):
        assert re.fullmatch(rf"{signal}-\d{{8}}T\d{{6}}Z-{host}-{os.getpid()}\.jsonl", name), name


def test_files_are_otlp_json_lines_the_collector_reads() -> None:
    _scenario()
    assert otel_ai.shutdown(10.0)
    top_keys = {"traces": "resourceSpans", "logs": "resourceLogs", "metrics": "resourceMetrics"}
    for signal, key in top_keys.items():
        (path,) = _data_dir().glob(f"{signal}-*.jsonl")
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        assert lines
        for line in lines:
            assert list(json.loads(line)) == [key]
    (traces,) = _data_dir().glob("traces-*.jsonl")
    span = json.loads(traces.read_text().splitlines()[0])["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    # the otlpjsonfile encoding: ids in lowercase hex, not base64
    assert re.fullmatch(r"[0-9a-f]{32}", span["traceId"])
    assert re.fullmatch(r"[0-9a-f]{16}", span["spanId"])
    assert load_directory(_data_dir()).skipped_lines == 0


def test_files_read_back_like_the_wire(otlp_receiver: OTLPReceiver) -> None:
    _scenario()
    assert otel_ai.shutdown(10.0)
    files = load_directory(_data_dir())

    otel_ai.testing.reset()
    otel_ai.configure(endpoint=otlp_receiver.http_endpoint)
    _scenario()
    assert otel_ai.force_flush(10.0)
    wire_spans, wire_logs = otlp_receiver.spans(), otlp_receiver.logs()
    otel_ai.testing.reset()

    _check_tree(files.spans, files.logs)
    _check_tree(wire_spans, wire_logs)
    assert _signature(files.spans, files.logs) == _signature(wire_spans, wire_logs)
    # and nothing of the OTLP run landed in a file
    assert len(list(_data_dir().glob("traces-*.jsonl"))) == 1
    assert len(load_directory(_data_dir()).spans) == len(files.spans)

    # the same metric names on both paths
    assert {m.name for m in files.metrics} == {m.name for m in otlp_receiver.metrics()}
    assert {"ai.nodes", "ai.stage.progress"} <= {m.name for m in files.metrics}


def test_files_hold_the_attributes_as_given() -> None:
    _scenario()
    assert otel_ai.shutdown(10.0)
    telemetry = load_directory(_data_dir())
    nodes = {s.attributes["ai.node.id"]: s for s in telemetry.spans if s.name.startswith("ai.node ")}
    assert nodes["draft-a"].name == "ai.node draft"
    assert nodes["draft-a"].attributes["ai.node.is_buggy"] is True
    assert nodes["draft-a"].attributes["ai.node.exc_type"] == "ValueError"
    assert nodes["draft-a"].status_code == "ERROR"
    assert nodes["debug-b"].attributes["ai.node.metric.value"] == pytest.approx(0.71)
    assert nodes["tune-c"].attributes["ai.stage.name"] == "2_baseline_tuning"
    (run,) = telemetry.spans_named("ai.run")
    assert run.attributes["ai.run.outcome"] == "completed"
    assert run.attributes["container.image.name"] == "ghcr.io/x/ai-scientist:1"
    assert run.status_code == "OK"
    names = [r.event_name for r in _events(telemetry.logs)]
    assert names[0] == "ai.run.started" and names[-1] == "ai.run.completed"
    # one sequence per process over every record, plain log lines included: no gaps
    seqs = sorted(r.attributes["ai.event.seq"] for r in telemetry.logs)
    assert seqs == list(range(1, len(telemetry.logs) + 1))
    for record in _events(telemetry.logs):
        assert record.attributes["event.name"] == record.event_name


# --------------------------------------------------------------------------- subprocesses


def _python(
    script: str, env_extra: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_sdk_disabled_runs_the_experiment_and_writes_nothing() -> None:
    result = _python(
        """
        import otel_ai
        settings = otel_ai.configure()
        assert settings.disabled
        with otel_ai.run("off") as run:
            with run.stage("1_initial_implementation") as stage:
                with stage.node("n1", kind="draft") as node:
                    with node.executing():
                        total = sum(range(10))
                    node.completed(False, 0.9, 0.1)
                stage.progress(1, 1, 1, 0, 1)
            run.log("a line")
            run.artifact_detected("plot.png", "plot", 1)
        print("experiment result", total)
        """,
        {"OTEL_SDK_DISABLED": "true"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "experiment result 45"
    assert not _data_dir().exists() or list(_data_dir().iterdir()) == []


FORK_SCRIPT = """
    import json, os, sys
    import otel_ai
    otel_ai.configure()
    with otel_ai.run("fork-run") as run:
        with run.stage("1_initial_implementation") as stage:
            with stage.node("parent-node", kind="draft") as node:
                node.completed(False, 0.5, 0.01)
            pid = os.fork()
            if pid == 0:
                # a forked worker: its node joins the inherited stage, then it exits
                # normally, unwinding through the parent's with-blocks and atexit
                with stage.node("child-node", parent_id="parent-node", kind="improve") as node:
                    node.completed(False, 0.6, 0.01)
                run.log("hello from the child")
                sys.exit(0)
            _, status = os.waitpid(pid, 0)
            with stage.node("parent-node-2", parent_id="parent-node", kind="improve") as node:
                node.completed(False, 0.7, 0.01)
    print(json.dumps({"parent": os.getpid(), "child": pid, "status": status}))
"""


@pytest.fixture(scope="module")
def forked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, int], Path]]:
    data_dir = tmp_path_factory.mktemp("fork") / "otel-ai-runs"
    pids = _pids_of(FORK_SCRIPT, data_dir)
    assert pids["status"] == 0
    yield pids, data_dir


def _pids_of(script: str, data_dir: Path, **env_extra: str) -> dict[str, int]:
    """Run ``script`` in a process of its own (no OTEL_ settings but ``env_extra``),
    telemetry to ``data_dir``; the pids it prints last, as JSON."""
    pids: dict[str, int] = _last_json(script, data_dir, **env_extra)
    return pids


def _last_json(script: str, data_dir: Path, **env_extra: str) -> Any:
    """:func:`_pids_of`: what ``script`` prints last, as JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUNPOD_"))}
    env.update(OTEL_AI_DATA_DIR=str(data_dir), **env_extra)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _by_pid(data_dir: Path, signal: str, pid: int) -> Telemetry:
    files = [p for p in data_dir.glob(f"{signal}-*.jsonl") if p.stem.endswith(f"-{pid}")]
    assert len(files) == 1, sorted(p.name for p in data_dir.iterdir())
    return load_directory(files[0])


def test_forked_child_writes_its_own_files(forked: tuple[dict[str, int], Path]) -> None:
    pids, data_dir = forked
    assert pids["child"] != pids["parent"]
    for signal in ("traces", "logs"):
        _by_pid(data_dir, signal, pids["parent"])
        _by_pid(data_dir, signal, pids["child"])
    names = sorted(p.name for p in data_dir.iterdir() if p.is_file())
    assert all(re.search(rf"-({pids['parent']}|{pids['child']})\.jsonl$", n) for n in names), names

    child_nodes = {s.attributes.get("ai.node.id") for s in _by_pid(data_dir, "traces", pids["child"]).spans}
    parent_nodes = {s.attributes.get("ai.node.id") for s in _by_pid(data_dir, "traces", pids["parent"]).spans}
    assert child_nodes == {"child-node"}
    assert "child-node" not in parent_nodes
    assert {"parent-node", "parent-node-2"} <= parent_nodes

    child_logs = _by_pid(data_dir, "logs", pids["child"]).logs
    assert "hello from the child" in [r.body for r in child_logs]
    assert "hello from the child" not in [r.body for r in _by_pid(data_dir, "logs", pids["parent"]).logs]


def test_forked_child_spans_join_the_parents_trace(forked: tuple[dict[str, int], Path]) -> None:
    _, data_dir = forked
    spans = load_directory(data_dir).spans
    (run,) = [s for s in spans if s.name == "ai.run"]
    (stage,) = [s for s in spans if s.name.startswith("ai.stage ")]
    (child,) = [s for s in spans if s.attributes.get("ai.node.id") == "child-node"]
    assert child.trace_id == run.trace_id
    assert child.parent_span_id == stage.span_id


def test_the_parents_stage_counts_the_node_its_forked_child_made(forked: tuple[dict[str, int], Path]) -> None:
    (stage,) = [
        s
        for s in _by_pid(data_dir=forked[1], signal="traces", pid=forked[0]["parent"]).spans
        if s.name.startswith("ai.stage ")
    ]
    assert stage.attributes["ai.stage.nodes.total"] == 3  # the child's node told through the ledger
    assert stage.attributes["ai.stage.nodes.good"] == 3


def test_forked_child_does_not_end_the_parents_spans(forked: tuple[dict[str, int], Path]) -> None:
    pids, data_dir = forked
    telemetry = load_directory(data_dir)
    runs = [s for s in telemetry.spans if s.name == "ai.run"]
    assert len(runs) == 1, "the run span was exported more than once"
    (run,) = runs
    assert Counter(s.span_id for s in telemetry.spans)[run.span_id] == 1
    assert run.attributes["ai.run.outcome"] == "completed"
    assert run.end_ns >= max(s.end_ns for s in telemetry.spans)  # ended by the parent, last
    assert len([s for s in telemetry.spans if s.name.startswith("ai.stage ")]) == 1
    # nor emitted their end events
    ends = [
        r
        for r in telemetry.logs
        if r.event_name in ("ai.run.completed", "ai.run.abandoned", "ai.run.stage_completed")
    ]
    assert sorted(r.event_name for r in ends) == ["ai.run.completed", "ai.run.stage_completed"]
    child_events = {r.event_name for r in _by_pid(data_dir, "logs", pids["child"]).logs if r.event_name}
    assert child_events <= {"ai.node.created", "ai.node.completed"}


QUIET_CHILD_SCRIPT = """
    import json, os, time
    import otel_ai
    otel_ai.configure()
    with otel_ai.run("quiet-child") as run:
        with run.stage("1_initial_implementation") as stage:
            with stage.node("n1", kind="draft") as node:
                node.completed(False, 0.5, 0.01)  # points on the parent's meter
            pid = os.fork()
            if pid == 0:
                # as AI-Scientist-v2's Interpreter child: runs code, emits nothing,
                # outlives several metric export intervals, is ended from outside
                time.sleep(1.0)
                os._exit(0)
            os.waitpid(pid, 0)
    print(json.dumps({"parent": os.getpid(), "child": pid}))
"""


def test_a_forked_child_that_emits_nothing_writes_nothing_of_its_parents(tmp_path: Path) -> None:
    """The parent's pipeline stays the parent's in a forked child: its metric reader does
    not export the parent's points again from there (they were exported twice, under a
    second service.instance.id, by a child living past an export interval)."""
    data_dir = tmp_path / "otel-ai-runs"
    pids = _pids_of(QUIET_CHILD_SCRIPT, data_dir, OTEL_METRIC_EXPORT_INTERVAL="100")
    names = sorted(p.name for p in data_dir.glob("*.jsonl"))
    assert not [n for n in names if n.endswith(f"-{pids['child']}.jsonl")], names
    nodes = [p for p in _by_pid(data_dir, "metrics", pids["parent"]).metrics if p.name == "ai.nodes"]
    assert nodes and {p.resource["process.pid"] for p in nodes} == {pids["parent"]}


QUIET_THREADS_SCRIPT = """
    import json, os, threading
    from pathlib import Path
    import otel_ai
    from opentelemetry.sdk.trace import TracerProvider
    from otel_ai.export.delivering import DeliveringBatchSpanProcessor
    from otel_ai.export.files import JsonlSpanExporter

    def batch_threads():
        return sorted(t.name for t in threading.enumerate() if t.name.startswith("OtelBatch"))

    otel_ai.configure()
    with otel_ai.run("threads") as run:
        run.log("the parent's pipeline holds its export threads")
    # a provider of its own whose processor a forked child does record through
    direct = Path(os.environ["DIRECT_DIR"])
    provider = TracerProvider()
    provider.add_span_processor(DeliveringBatchSpanProcessor(JsonlSpanExporter(direct)))
    with provider.get_tracer("t").start_as_current_span("in the parent"):
        pass
    provider.force_flush()
    report = {"parent": batch_threads()}

    def child(name, then=None):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            seen = {"at the fork": batch_threads()}
            with provider.get_tracer("t").start_as_current_span(name):
                pass
            seen["after recording"] = batch_threads()
            if then:
                seen["grandchild"] = then()
            provider.force_flush()
            os.write(write, json.dumps(seen).encode())
            os._exit(0)
        os.close(write)
        data = b""
        while chunk := os.read(read, 65536):
            data += chunk
        os.waitpid(pid, 0)
        return json.loads(data)

    report["child"] = child("in the child", then=lambda: child("in the grandchild"))
    print(json.dumps(report))
"""


def test_a_forked_child_starts_no_export_thread_until_it_records(tmp_path: Path) -> None:
    """AI-Scientist-v2's Interpreter forks a child from a pool worker for every run of a
    node's code. The batch processors a child inherits start no thread at the fork (each
    cost the child's start 0.3-0.5 ms); one the child records through starts its thread
    then and delivers, in a grandchild too."""
    direct = tmp_path / "direct"
    report = _last_json(QUIET_THREADS_SCRIPT, tmp_path / "otel-ai-runs", DIRECT_DIR=str(direct))
    assert report["parent"].count("OtelBatchSpanRecordProcessor") == 2, report
    for name in ("child", "grandchild"):
        seen = report["child"] if name == "child" else report["child"]["grandchild"]
        assert seen["at the fork"] == [], report
        assert seen["after recording"] == ["OtelBatchSpanRecordProcessor"], report
    names = sorted(span.name for span in load_directory(direct).spans)
    assert names == ["in the child", "in the grandchild", "in the parent"]


def test_forked_child_resource_names_the_child(forked: tuple[dict[str, int], Path]) -> None:
    pids, data_dir = forked
    child = _by_pid(data_dir, "traces", pids["child"]).spans
    parent = _by_pid(data_dir, "traces", pids["parent"]).spans
    assert child
    assert {s.resource["process.pid"] for s in child} == {pids["child"]}
    assert {s.resource["process.pid"] for s in parent} == {pids["parent"]}
    (child_instance,) = {s.resource["service.instance.id"] for s in child}
    (parent_instance,) = {s.resource["service.instance.id"] for s in parent}
    assert child_instance != parent_instance


RESOURCE_FORK_SCRIPT = """
    import json, os
    import opentelemetry.sdk.resources as sdk_resources
    import otel_ai
    from otel_ai.export.providers import get_pipeline

    detected = []
    real = sdk_resources.get_aggregated_resources
    sdk_resources.get_aggregated_resources = lambda *a, **k: detected.append(os.getpid()) or real(*a, **k)
    otel_ai.configure()
    with otel_ai.run("resource-run"):
        pass
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        with otel_ai.run("in the child"):
            pass
        os.write(w, json.dumps([os.getpid() in detected]).encode())
        otel_ai.shutdown()
        os._exit(0)
    os.close(w)
    (child_detected,) = json.loads(os.read(r, 1000))
    os.waitpid(pid, 0)
    otel_ai.shutdown()
    print(json.dumps({"parent": os.getpid(), "child": pid, "child_detected": child_detected}))
"""


@pytest.mark.parametrize(
    "detectors", ["", "otel,service_instance"], ids=["default detectors", "detectors of the user's choice"]
)
def test_a_forked_child_takes_its_parents_resource_with_its_own_identity(
    tmp_path: Path, detectors: str
) -> None:
    """A pool worker does not run the resource detectors again (a thread pool, 2-3 ms a
    worker): it takes its parent's resource with its own ``process.pid`` and
    ``service.instance.id``; one given by OTEL_RESOURCE_ATTRIBUTES stays. Detectors of
    the user's choice run again, as they may describe the process."""
    data_dir = tmp_path / "otel-ai-runs"
    env = {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=lab,team=vision"}
    if detectors:
        env["OTEL_EXPERIMENTAL_RESOURCE_DETECTORS"] = detectors
    report = _last_json(RESOURCE_FORK_SCRIPT, data_dir, **env)
    assert report["child_detected"] is bool(detectors)
    (parent,) = {
        tuple(sorted(s.resource.items())) for s in _by_pid(data_dir, "traces", report["parent"]).spans
    }
    (child,) = {tuple(sorted(s.resource.items())) for s in _by_pid(data_dir, "traces", report["child"]).spans}
    parent_resource, child_resource = dict(parent), dict(child)
    assert child_resource["process.pid"] == report["child"] != parent_resource["process.pid"]
    assert child_resource["service.instance.id"] != parent_resource["service.instance.id"]
    assert child_resource["team"] == "vision" and child_resource["deployment.environment.name"] == "lab"
    same = {"process.pid", "service.instance.id"}
    assert {k: v for k, v in child_resource.items() if k not in same} == {
        k: v for k, v in parent_resource.items() if k not in same
    }

    given = _last_json(
        RESOURCE_FORK_SCRIPT, tmp_path / "given", OTEL_RESOURCE_ATTRIBUTES="service.instance.id=pod-7"
    )
    for pid in (given["parent"], given["child"]):
        assert {
            s.resource["service.instance.id"] for s in _by_pid(tmp_path / "given", "traces", pid).spans
        } == {"pod-7"}


def test_process_exiting_without_ending_its_run_abandons_it() -> None:
    result = _python(
        """
        import otel_ai
        run = otel_ai.run("left-open")
        stage = run.stage("1_initial_implementation")
        node = stage.node("n1", kind="draft")
        print("bye")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "bye"
    telemetry = load_directory(_data_dir())
    (run,) = telemetry.spans_named("ai.run")
    assert run.attributes["ai.run.id"] == "left-open"
    assert run.attributes["ai.run.outcome"] == "abandoned"
    assert run.status_code == "ERROR"
    (stage,) = telemetry.spans_named("ai.stage 1_initial_implementation")
    assert stage.parent_span_id == run.span_id
    assert stage.end_ns <= run.end_ns
    (node,) = telemetry.spans_named("ai.node draft")
    assert node.parent_span_id == stage.span_id
    abandoned = [r for r in telemetry.logs if r.event_name == "ai.run.abandoned"]
    assert len(abandoned) == 1
    assert abandoned[0].span_id == run.span_id
    assert abandoned[0].attributes["ai.run.outcome"] == "abandoned"


NO_THREAD_AT_EXIT = """
    import atexit, threading
    import otel_ai

    otel_ai.configure()  # its exit hook is registered now
    run = otel_ai.run("left-open")
    stage = run.stage("1_initial_implementation")

    def as_python_3_12():
        # Python 3.12+ starts no thread once the interpreter exits, in atexit callbacks
        # too; on 3.11 here, the same rule
        def start(self):
            raise RuntimeError("can't create new thread at interpreter shutdown")

        threading.Thread.start = start

    atexit.register(as_python_3_12)  # registered after otel_ai's: runs before it
    print("bye")
"""


@pytest.mark.parametrize("where", ["files", "otlp"])
def test_what_is_left_at_exit_is_written_where_no_thread_can_start(
    where: str, otlp_receiver: OTLPReceiver
) -> None:
    """The exit hook ends the open run and stage and flushes them without starting a
    thread (Python 3.12+ refuses to at exit: the hook failed with a traceback and the
    run's spans were lost)."""
    env = {}
    if where == "otlp":
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.http_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }
    result = _python(NO_THREAD_AT_EXIT, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "bye"
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    spans = load_directory(_data_dir()).spans if where == "files" else otlp_receiver.spans()
    (run,) = [s for s in spans if s.name == "ai.run"]
    assert run.attributes["ai.run.outcome"] == "abandoned"
    (stage,) = [s for s in spans if s.name == "ai.stage 1_initial_implementation"]
    assert stage.parent_span_id == run.span_id


def test_run_ended_by_the_code_is_not_abandoned_at_exit() -> None:
    result = _python(
        """
        import otel_ai
        run = otel_ai.run("ended")
        run.complete()
        """
    )
    assert result.returncode == 0, result.stderr
    telemetry = load_directory(_data_dir())
    (run,) = telemetry.spans_named("ai.run")
    assert run.attributes["ai.run.outcome"] == "completed"
    assert not [r for r in telemetry.logs if r.event_name == "ai.run.abandoned"]


# --------------------------------------------------------------------------- shutdown deadline


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_shutdown_against_a_hanging_collector_keeps_its_deadline(protocol: str) -> None:
    with OTLPReceiver(mode="hang", hang_timeout=15.0) as receiver:
        endpoint = receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint
        otel_ai.configure(endpoint=endpoint, protocol=protocol)
        started = time.monotonic()
        _scenario()
        # emitting never waits for the collector (which holds every request for 15 s)
        assert time.monotonic() - started < 5.0
        started = time.monotonic()
        ok = otel_ai.shutdown(timeout=1.0)
        elapsed = time.monotonic() - started
        assert ok is False
        assert elapsed < 5.0, f"shutdown(timeout=1.0) took {elapsed:.1f} s: it waited on the collector"
        # telemetry after shutdown is dropped, without error or delay
        started = time.monotonic()
        with otel_ai.run("after-shutdown"):
            pass
        assert time.monotonic() - started < 5.0  # not held by the hanging collector either
    assert receiver.spans() == []


DELIVERY_MODULES = (
    "otel_ai.export.outbox",
    "otel_ai.export.transport",
    "otel_ai.export.spool",
    "google.protobuf",
)

_WHAT_IS_LOADED = textwrap.dedent(
    """
    import json, sys
    import otel_ai

    with otel_ai.run("loaded") as run:
        with run.stage("1_initial_implementation"):
            otel_ai.EventEmitter().log("loaded", "a line")
    otel_ai.shutdown()
    print(json.dumps(sorted(m for m in sys.modules if m.startswith(tuple(sys.argv[1:])))))
    """
)


@pytest.mark.parametrize("endpoint", [False, True], ids=["embedded default", "OTLP endpoint"])
def test_the_otlp_delivery_is_loaded_only_where_a_signal_goes_to_a_collector(
    tmp_path: Path, endpoint: bool
) -> None:
    """The transport, the spool and protobuf cost a process 60 ms to import: the embedded
    default's processes (every process of a run on the files) never load them, and still
    write every signal."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACEPARENT"))}
    env["OTEL_AI_DATA_DIR"] = str(tmp_path / "runs")
    with OTLPReceiver() as receiver:
        if endpoint:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.http_endpoint
        done = subprocess.run(
            [sys.executable, "-c", _WHAT_IS_LOADED, *DELIVERY_MODULES],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        loaded = json.loads(done.stdout.strip().splitlines()[-1])
        if endpoint:
            assert {"otel_ai.export.outbox", "otel_ai.export.transport", "otel_ai.export.spool"} <= set(
                loaded
            )
            assert any(s.name == "ai.run" for s in receiver.spans())
        else:
            assert not [m for m in loaded if m.startswith(DELIVERY_MODULES)], loaded
            telemetry = load_directory(tmp_path / "runs")
            assert [s.name for s in telemetry.spans if s.name == "ai.run"] == ["ai.run"]
            assert any(r.body == "a line" for r in telemetry.logs)


_WRAPPER_LOADS = textwrap.dedent(
    """
    import json, sys
    from otel_ai.cli import main

    code = main(["run", "--no-status", "--", sys.executable, "-c", "print('a line')"])
    print(json.dumps([code, sorted(m for m in sys.modules if m.startswith(tuple(sys.argv[1:])))]))
    """
)


def _loaded_by_the_wrapper(tmp_path: Path, script: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules starting with ``prefixes`` that ``script`` (an `otel-ai run` of a
    command printing "a line") had loaded, the run's telemetry in ``tmp_path/runs``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACEPARENT"))}
    env["OTEL_AI_DATA_DIR"] = str(tmp_path / "runs")
    done = subprocess.run(
        [sys.executable, "-c", script, *prefixes],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    code, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert code == 0
    return list(loaded)


@pytest.mark.parametrize("spooled", [False, True], ids=["nothing spooled", "an earlier spool"])
def test_the_wrapper_loads_the_otlp_delivery_only_for_a_spool_to_deliver(
    tmp_path: Path, spooled: bool
) -> None:
    """`otel-ai run` delivers what dead processes spooled; on the embedded default nothing
    ever is, and its wrapper does not load the delivery to find that out. A spool left by
    an earlier run with a collector is still looked at (and kept: no endpoint now)."""
    if spooled:
        (tmp_path / "runs" / "spool" / "20261130T101500Z-pod-1234-3f9a1c" / "traces").mkdir(parents=True)
    loaded = _loaded_by_the_wrapper(tmp_path, _WRAPPER_LOADS, DELIVERY_MODULES)
    if spooled:
        assert "otel_ai.export.spool" in loaded
    else:
        assert not [m for m in loaded if m.startswith(DELIVERY_MODULES)], loaded
    telemetry = load_directory(tmp_path / "runs")
    assert [s.name for s in telemetry.spans if s.name == "ai.run"] == ["ai.run"]
    assert any(r.body == "a line" for r in telemetry.logs)


def test_the_wrapper_loads_rich_only_to_draw_its_status_line(tmp_path: Path) -> None:
    """The status line is drawn only on a terminal: with stderr a pipe (CI, `nohup`, a
    pod's log collector) the wrapper does without rich, which it would import for nothing
    while the experiment starts."""
    script = _WRAPPER_LOADS.replace('"run", "--no-status", "--"', '"run", "--"')
    assert script != _WRAPPER_LOADS
    loaded = _loaded_by_the_wrapper(tmp_path, script, ("rich", "otel_ai.runner.status"))
    assert "otel_ai.runner.status" in loaded  # the wrapper itself was loaded and ran
    assert not [m for m in loaded if m == "rich" or m.startswith("rich.")], loaded
    assert any(r.body == "a line" for r in load_directory(tmp_path / "runs").logs)
