"""Metrics on the wire (SPEC section 4): search progress from the model's events, token
usage, artifact uploads, system and process-tree metrics of real child processes, and
every name and unit against docs/semconv.md.

The search metrics come from the front doors; the system and process metrics from a
sampler started on the pipeline's meter (``otel_ai.metrics.start``) and read by the real
metric reader at each flush, decoded by the in-test OTLP receiver.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Wire

import otel_ai
import otel_ai.metrics
from otel_ai._internal import internal_error_counts
from otel_ai.export.providers import get_pipeline
from otel_ai.read import MetricPoint

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "semconv.md").read_text(encoding="utf-8")
SPEC = next((p for p in (ROOT / "SPEC.md", ROOT.parent / "shared" / "SPEC.md") if p.exists()), None)
MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def _no_sampler_left() -> Iterator[None]:
    yield
    otel_ai.metrics.stop()


def _errors() -> dict[str, int]:
    return {k: v for k, v in internal_error_counts().items() if k.startswith("metrics.")}


def _series(points: list[MetricPoint], name: str, **attributes: object) -> list[MetricPoint]:
    found = [
        p for p in points if p.name == name and all(p.attributes.get(k) == v for k, v in attributes.items())
    ]
    return sorted(found, key=lambda p: p.time_ns)


def _latest(wire: Wire, name: str, **attributes: object) -> MetricPoint:
    found = _series(wire.latest_metrics(), name, **attributes)
    assert len(found) == 1, f"{name} {attributes}: {found}"
    return found[0]


def _start(**kwargs: object) -> otel_ai.metrics.Sampler:
    kwargs.setdefault("min_interval_s", 0.0)  # a fresh pass at every flush
    kwargs.setdefault("gpu", False)
    return otel_ai.metrics.start(get_pipeline().meter, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- search metrics


def test_progress_values_match_the_events_sent(wire: Wire) -> None:
    sent = [0.05, 0.2, 0.35, 0.5, 0.8, 1.0]
    with otel_ai.run("run-progress") as run:
        with run.stage("1_initial_implementation") as stage:
            for i, value in enumerate(sent, start=1):
                stage.progress(
                    progress=value,
                    iteration=i,
                    max_iterations=len(sent),
                    good_nodes=i,
                    buggy_nodes=0,
                    total_nodes=i,
                    best_metric=0.5 + value / 10,
                )
                wire.flush()  # one collection per event: the gauge's latest value each time
    points = _series(wire.metrics(), "ai.stage.progress", **{"ai.run.id": "run-progress"})
    values: list[float] = []
    for point in points:  # cumulative re-exports repeat the last value; keep the changes
        if not values or values[-1] != point.value:
            values.append(float(point.value))  # type: ignore[arg-type]
    assert values == sent
    assert {tuple(sorted(p.attributes)) for p in points} == {("ai.run.id", "ai.stage.name")}
    assert all(p.unit == "1" and p.kind == "gauge" for p in points)
    best = _latest(wire, "ai.stage.best_metric", **{"ai.stage.name": "1_initial_implementation"})
    assert best.value == pytest.approx(0.6)


def test_node_metrics_count_good_and_buggy_without_node_ids(http_wire: Wire) -> None:
    exec_times = {"n1": 1.5, "n2": 2.5, "n3": 4.0}
    with otel_ai.run("run-nodes") as run:
        with run.stage("2_baseline_tuning") as stage:
            for node_id, exec_time in exec_times.items():
                with stage.node(node_id, kind="draft") as node:
                    node.completed(is_buggy=node_id == "n2", metric=0.9, exec_time_s=exec_time)
    labels = {"ai.run.id": "run-nodes", "ai.stage.name": "2_baseline_tuning"}
    good = _latest(http_wire, "ai.nodes", **labels, **{"ai.node.status": "good"})
    buggy = _latest(http_wire, "ai.nodes", **labels, **{"ai.node.status": "buggy"})
    assert (good.value, buggy.value) == (2, 1)
    assert good.is_monotonic and good.unit == "{node}"
    exec_hist = _latest(http_wire, "ai.node.exec_time", **labels)
    assert exec_hist.count == 3 and exec_hist.sum == pytest.approx(8.0) and exec_hist.unit == "s"
    duration = _latest(http_wire, "ai.node.duration", **labels)
    assert duration.count == 3 and duration.unit == "s"
    for point in http_wire.latest_metrics():
        assert not any(key.startswith("ai.node.id") for key in point.attributes), point


def test_token_usage_per_genai_conventions(http_wire: Wire) -> None:
    with otel_ai.run("run-tokens") as run:
        with run.stage("1_initial_implementation") as stage:
            with stage.node("n1", kind="draft") as node:
                # inside the node: run and stage come from the active span
                otel_ai.metrics.record_token_usage(
                    1200,
                    300,
                    provider="openai",
                    request_model="gpt-4o-2024-11-20",
                    response_model="gpt-4o-2024-11-20",
                )
                otel_ai.metrics.record_token_usage(
                    800,
                    None,
                    provider="openai",
                    request_model="gpt-4o-2024-11-20",
                    response_model="gpt-4o-2024-11-20",
                )
                node.completed(is_buggy=False, metric=1.0)
        otel_ai.metrics.record_token_usage(
            50, 7, provider="anthropic", request_model="claude-3-5-sonnet", run_id="other-run", stage="review"
        )
        otel_ai.metrics.record_token_usage("many", -3, provider="openai")  # bad counts: nothing, no error
    common = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-2024-11-20",
        "gen_ai.response.model": "gpt-4o-2024-11-20",
        "ai.run.id": "run-tokens",
        "ai.stage.name": "1_initial_implementation",
    }
    usage_in = _latest(http_wire, "gen_ai.client.token.usage", **common, **{"gen_ai.token.type": "input"})
    usage_out = _latest(http_wire, "gen_ai.client.token.usage", **common, **{"gen_ai.token.type": "output"})
    assert (usage_in.count, usage_in.sum) == (2, 2000)
    assert (usage_out.count, usage_out.sum) == (1, 300)
    assert usage_in.unit == "{token}" and usage_in.kind == "histogram"
    # the GenAI conventions' advised buckets: 1, 4, 16 ... 4**13
    assert usage_in.explicit_bounds == [float(4**i) for i in range(14)]
    other = _series(http_wire.latest_metrics(), "gen_ai.client.token.usage", **{"ai.run.id": "other-run"})
    assert {p.attributes["gen_ai.token.type"] for p in other} == {"input", "output"}
    assert all(p.attributes["ai.stage.name"] == "review" for p in other)
    assert len(_series(http_wire.latest_metrics(), "gen_ai.client.token.usage")) == 4


def test_artifact_uploaded_counts_bytes_per_kind(http_wire: Wire) -> None:
    with otel_ai.run("run-artifacts"):
        otel_ai.metrics.record_artifact_uploaded(1000, kind="figure")
        otel_ai.metrics.record_artifact_uploaded(500, kind="figure")
        otel_ai.metrics.record_artifact_uploaded(2048, kind="paper")
        otel_ai.metrics.record_artifact_uploaded(None, kind="paper")
    figure = _latest(http_wire, "ai.artifact.uploaded", **{"ai.artifact.kind": "figure"})
    paper = _latest(http_wire, "ai.artifact.uploaded", **{"ai.artifact.kind": "paper"})
    assert (figure.value, paper.value) == (1500, 2048)
    assert figure.unit == "By" and figure.is_monotonic
    assert figure.attributes["ai.run.id"] == "run-artifacts"


# --------------------------------------------------------------------------- system and process tree

CHILD_ALLOCATES = """
import sys
block = b"\\x01" * (200 * 1024 * 1024)   # written, so resident
print("ready", flush=True)
sys.stdin.readline()
"""

CHILD_BURNS_CPU = """
import time
end = time.process_time() + 0.6
while time.process_time() < end:
    pass
"""


def test_process_tree_memory_rises_with_a_child_that_allocates_200_mb(http_wire: Wire) -> None:
    sampler = _start()
    assert sampler.root_pid == os.getpid()
    http_wire.flush()
    before_memory = _latest(http_wire, "process.memory.usage").value
    before_count = _latest(http_wire, "ai.process.count").value
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_ALLOCATES], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        http_wire.flush()
        during_memory = _latest(http_wire, "process.memory.usage").value
        during_count = _latest(http_wire, "ai.process.count").value
        during_threads = _latest(http_wire, "process.thread.count").value
    finally:
        assert child.stdin is not None
        child.stdin.write("\n")
        child.stdin.close()
        child.wait(30)
        child.stdout.close()  # type: ignore[union-attr]
    http_wire.flush()
    after_memory = _latest(http_wire, "process.memory.usage").value
    assert before_memory is not None and during_memory is not None and after_memory is not None
    grown = during_memory - before_memory
    assert 190 * MiB <= grown <= 260 * MiB, f"grew by {grown / MiB:.0f} MiB"
    assert before_count is not None and during_count == before_count + 1
    assert during_threads is not None and during_threads >= 2
    assert after_memory < during_memory - 150 * MiB
    assert _latest(http_wire, "ai.process.count").value == before_count
    assert _errors() == {}


def test_cpu_time_of_children_counts_after_they_exit(http_wire: Wire) -> None:
    _start()
    http_wire.flush()
    cpu_before = sum(p.value for p in _series(http_wire.latest_metrics(), "process.cpu.time"))  # type: ignore[misc]
    subprocess.run([sys.executable, "-c", CHILD_BURNS_CPU], check=True, timeout=60)
    time.sleep(0.6)  # a utilisation window of at least 0.5 s
    http_wire.flush()
    latest = _series(http_wire.latest_metrics(), "process.cpu.time")
    assert {p.attributes["cpu.mode"] for p in latest} == {"user", "system"}
    assert all(p.is_monotonic and p.unit == "s" for p in latest)
    cpu_after = sum(p.value for p in latest)  # type: ignore[misc]
    # the child is gone, reaped by this process: its CPU time still counts
    assert cpu_after - cpu_before >= 0.5
    utilization = _latest(http_wire, "process.cpu.utilization").value
    assert utilization is not None and 0.0 < utilization <= 1.0


def test_system_cpu_and_memory(http_wire: Wire) -> None:
    _start()
    http_wire.flush()
    time.sleep(0.05)
    http_wire.flush()
    limit = _latest(http_wire, "system.memory.limit").value
    used = _latest(http_wire, "system.memory.usage", **{"system.memory.state": "used"}).value
    free = _latest(http_wire, "system.memory.usage", **{"system.memory.state": "free"}).value
    assert limit is not None and used is not None and free is not None
    # one pass gives used + free == limit; a periodic collection racing the flush may mix two
    assert used + free == pytest.approx(limit, rel=0.02)
    utilization = _latest(http_wire, "system.memory.utilization", **{"system.memory.state": "used"}).value
    assert utilization == pytest.approx(used / limit, rel=0.05)
    cpu = _latest(http_wire, "system.cpu.utilization").value
    assert cpu is not None and 0.0 <= cpu <= 1.0
    assert _latest(http_wire, "system.cpu.logical.count").value == os.cpu_count()


def test_observe_process_tree_moves_the_root_to_a_child(http_wire: Wire) -> None:
    _start()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_ALLOCATES], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        sampler = otel_ai.metrics.observe_process_tree(child.pid)
        assert sampler is otel_ai.metrics.current() and sampler.root_pid == child.pid
        http_wire.flush()
        assert _latest(http_wire, "ai.process.count").value == 1
        memory = _latest(http_wire, "process.memory.usage").value
        assert memory is not None and 195 * MiB <= memory <= 260 * MiB
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(30)
        child.stdout.close()  # type: ignore[union-attr]
    # the root is gone: no process metrics from now on, and no error
    http_wire.receiver.clear()
    http_wire.flush()
    assert _series(http_wire.metrics(), "process.memory.usage") == []
    assert _series(http_wire.metrics(), "system.memory.limit") != []
    assert _errors() == {}


def test_one_pass_per_collection_and_no_pass_after_stop(http_wire: Wire) -> None:
    sampler = _start(min_interval_s=60.0)
    http_wire.flush()
    http_wire.flush()
    assert sampler.passes == 1  # all instruments, two collections, one pass
    sampler.stop()
    assert otel_ai.metrics.current() is None
    http_wire.receiver.clear()
    http_wire.flush()
    assert _series(http_wire.metrics(), "process.memory.usage") == []
    assert sampler.passes == 1


def test_a_second_sampler_on_the_same_meter_takes_over(http_wire: Wire) -> None:
    first = _start()
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.readline()"], stdin=subprocess.PIPE
    )
    try:
        second = _start(root_pid=child.pid)
        assert first.stopped and not second.stopped
        http_wire.flush()
        assert _latest(http_wire, "ai.process.count").value == 1
        assert second.passes >= 1 and first.passes == 0
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(30)


def test_disabled_pipeline_samples_nothing() -> None:
    otel_ai.configure(disabled=True)
    sampler = _start()
    assert sampler.passes == 0
    assert otel_ai.force_flush(1.0)
    assert sampler.passes == 0


# --------------------------------------------------------------------------- names and units

_KINDS = {
    "gauge": ("gauge", None),
    "counter": ("sum", True),
    "updowncounter": ("sum", False),
    "histogram": ("histogram", None),
}


def _documented() -> dict[str, tuple[str, str]]:
    """name -> (instrument, unit) from the tables of docs/semconv.md section 4."""
    section = DOC.split("## 4. Metrics", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`") and cells[1] in _KINDS:
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    return rows


def test_every_metric_on_the_wire_is_documented_with_its_unit_and_instrument(http_wire: Wire) -> None:
    from test_metrics_gpu import FakeNvml

    documented = _documented()
    assert len(documented) >= 20
    _start(gpu=True, nvml=FakeNvml())
    with otel_ai.run("run-names") as run:
        with run.stage("1_initial_implementation") as stage:
            with stage.node("n1", kind="draft") as node:
                otel_ai.metrics.record_token_usage(10, 5, provider="openai", request_model="m")
                node.completed(is_buggy=False, metric=0.5, exec_time_s=1.0)
            stage.progress(
                iteration=1, max_iterations=2, good_nodes=1, buggy_nodes=0, total_nodes=1, best_metric=0.5
            )
        otel_ai.metrics.record_artifact_uploaded(10, kind="figure")
    http_wire.flush()
    points = http_wire.metrics()
    seen = {p.name for p in points}
    for point in points:
        assert point.name in documented, f"{point.name} is not in docs/semconv.md section 4"
        instrument, unit = documented[point.name]
        kind, monotonic = _KINDS[instrument]
        assert point.unit == unit, point.name
        assert point.kind == kind, point.name
        if monotonic is not None:
            assert point.is_monotonic is monotonic, point.name
        assert point.scope == "otel_ai"
    assert seen == set(documented), f"documented but not exported: {set(documented) - seen}"
    if SPEC is not None:
        section = SPEC.read_text(encoding="utf-8").split("## 4. Metrics", 1)[1].split("\n## ", 1)[0]
        for name in re.findall(r"`([a-z_]+(?:\.[a-z_]+)+)`", section):
            if (
                not name.endswith("*")
                and "." in name
                and name.split(".")[0] in ("ai", "hw")
                and name not in ("ai.node.status", "ai.artifact.kind", "hw.id", "hw.model")
            ):
                assert name in seen, f"SPEC section 4 names {name}, not exported"


FORK = """
import os, sys
import otel_ai, otel_ai.metrics
from otel_ai.export.providers import get_pipeline
otel_ai.configure(data_dir=sys.argv[1])
sampler = otel_ai.metrics.start(get_pipeline().meter, gpu=False, min_interval_s=0.0)
pid = os.fork()
seen = len(sampler.observations("process.memory.usage", fresh=True))
if pid == 0:
    print("child", seen, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("parent", seen, flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_report_its_parents_tree(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", FORK, str(tmp_path)], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split("\n")[:2]) == ["child 0", "parent 1"]


def test_system_cpu_utilization_has_a_value_from_the_first_pass_and_at_every_pass() -> None:
    from otel_ai.metrics.process import SystemReadings

    readings = SystemReadings()
    samples = [readings.sample().cpu_utilization for _ in range(50)]  # most within one clock tick
    assert all(value is not None and 0.0 <= value <= 1.0 for value in samples), samples
