"""``otel-ai show`` with metrics: peak memory, mean CPU, GPU use and the progress curve of
each stage, read back from the embedded default's files (SPEC section 6, issue 6).

Runs are written by real otel_ai pipelines (in this process, or in child processes) into
OTEL_AI_DATA_DIR; ``show`` then reads the files like a user would.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_metrics_gpu import FakeNvml

import otel_ai
import otel_ai.metrics
import otel_ai.testing
from otel_ai.cli import main as cli_main
from otel_ai.export.providers import get_pipeline
from otel_ai.read import load_directory
from otel_ai.read.runview import build_runs

MiB = 1024 * 1024
RESOURCES = re.compile(
    r"Resources  process tree: memory peak (?P<memory>[\d.]+) (?P<unit>MiB|GiB), "
    r"cpu mean (?P<cpu>\d+)% of (?P<cpus>\d+) CPUs \(peak (?P<peak>\d+)%\), up to (?P<processes>\d+) process"
)


@pytest.fixture(autouse=True)
def _no_sampler_left() -> Iterator[None]:
    yield
    otel_ai.metrics.stop()


def _show(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert cli_main(["show", *args, "--color", "never"]) == 0
    return capsys.readouterr().out


def _mib(match: re.Match[str]) -> float:
    return float(match["memory"]) * (1024 if match["unit"] == "GiB" else 1)


def test_show_prints_resources_gpu_and_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "runs"
    otel_ai.configure(data_dir=str(data_dir))
    otel_ai.metrics.start(get_pipeline().meter, nvml=FakeNvml(), min_interval_s=0.0)
    with otel_ai.run("run-show") as run:
        for name in ("1_initial_implementation", "2_baseline_tuning"):
            with run.stage(name) as stage:
                for i in range(1, 9):
                    stage.progress(iteration=i, max_iterations=8, good_nodes=i, buggy_nodes=0, total_nodes=i)
                    otel_ai.force_flush()
    otel_ai.testing.reset()

    out = _show(capsys, str(data_dir))
    lines = out.splitlines()
    assert lines[0].startswith("Run run-show  completed")
    resources = next(line for line in lines if "Resources" in line)
    match = RESOURCES.search(resources)
    assert match is not None, resources
    assert 10 <= _mib(match) <= 2048  # this test process
    assert int(match["cpus"]) >= 1 and 0 <= int(match["cpu"]) <= int(match["peak"]) <= 100
    gpu0 = next(line for line in lines if "gpu0 NVIDIA H100 80GB HBM3" in line)
    assert "util mean 42% (peak 42%)" in gpu0 and "memory peak 30.0 GiB of 80.0 GiB" in gpu0
    assert "61 °C peak" in gpu0 and "312 W mean" in gpu0
    gpu1 = next(line for line in lines if "gpu1 NVIDIA H100 80GB HBM3" in line)
    assert "util mean 0%" in gpu1 and " W mean" not in gpu1  # gpu1 reports no power
    for stage_name in ("1_initial_implementation", "2_baseline_tuning"):
        index = next(i for i, line in enumerate(lines) if f"Stage {stage_name}" in line)
        assert "progress ▂▃▄▅▅▆▇█" in lines[index + 1]
    # the sections the show tests rely on come after the resources
    assert lines.index(resources) < min(i for i, line in enumerate(lines) if "Stage " in line)


CHILD = """
import sys
import otel_ai, otel_ai.metrics
from otel_ai.export.providers import get_pipeline
run_id, sample, allocate = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
otel_ai.configure()
if sample:
    otel_ai.metrics.start(get_pipeline().meter, gpu=False, min_interval_s=0.0)
with otel_ai.run(run_id) as run:
    with run.stage("1_initial_implementation") as stage:
        block = b"\\x01" * (allocate * 1024 * 1024)
        stage.progress(iteration=1, max_iterations=1, good_nodes=1, buggy_nodes=0, total_nodes=1)
        otel_ai.force_flush()
        del block
otel_ai.force_flush()
"""


def _child(data_dir: Path, run_id: str, *, sample: bool, allocate_mib: int = 0) -> None:
    env = {"OTEL_AI_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"}
    if not sample:  # should configure() start a sampler of its own, this says not to
        env["OTEL_AI_SYSTEM_METRICS"] = "false"
    subprocess.run(
        [sys.executable, "-c", CHILD, run_id, "1" if sample else "0", str(allocate_mib)],
        check=True,
        timeout=60,
        env=env,
    )


def test_each_run_gets_its_own_processes_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "runs"
    _child(data_dir, "run-big", sample=True, allocate_mib=200)
    _child(data_dir, "run-small", sample=True)
    _child(data_dir, "run-unsampled", sample=False)

    big = RESOURCES.search(_show(capsys, "run-big", "--data-dir", str(data_dir)))
    small = RESOURCES.search(_show(capsys, "run-small", "--data-dir", str(data_dir)))
    assert big is not None and small is not None
    assert _mib(big) >= _mib(small) + 180, (big.group(0), small.group(0))
    assert "Resources" not in _show(capsys, "run-unsampled", "--data-dir", str(data_dir))


def test_two_runs_in_one_process_split_its_metrics_at_the_second_start(tmp_path: Path) -> None:
    otel_ai.configure(data_dir=str(tmp_path))
    otel_ai.metrics.start(get_pipeline().meter, gpu=False, min_interval_s=0.0)
    with otel_ai.run("first"):
        otel_ai.force_flush()
    with otel_ai.run("second"):
        block = b"\x01" * (100 * MiB)
        otel_ai.force_flush()
        del block
    otel_ai.testing.reset()
    runs = {run.run_id: run for run in build_runs(load_directory(tmp_path))}
    first, second = runs["first"].usage(), runs["second"].usage()
    assert first.samples >= 1 and second.samples >= 1
    assert first.memory_peak is not None and second.memory_peak is not None
    assert second.memory_peak >= first.memory_peak + 90 * MiB
    # the first run's window ends where the second starts, though its 10 s grace is not over
    assert all(p.time_ns < runs["second"].start_ns for p in runs["first"].metrics)
    assert all(p.time_ns >= runs["second"].start_ns for p in runs["second"].metrics)


def test_progress_curve_fills_the_gap_of_omitted_span_events_from_the_gauge(tmp_path: Path) -> None:
    otel_ai.configure(data_dir=str(tmp_path))
    updates = 150
    with otel_ai.run("long-stage") as run:
        with run.stage("1_initial_implementation") as stage:
            for i in range(1, updates + 1):
                stage.progress(
                    iteration=i, max_iterations=updates, good_nodes=i, buggy_nodes=0, total_nodes=i
                )
                if i % 10 == 0:
                    otel_ai.force_flush()
    otel_ai.testing.reset()
    (view,) = build_runs(load_directory(tmp_path))
    (stage_view,) = view.stages
    assert stage_view.span is not None
    kept = [e for e in stage_view.span.events if e.name == "ai.run.stage_progress"]
    assert len(kept) < updates  # the span kept the first and the latest
    values = [v for _, v in stage_view.progress]
    assert len(values) > len(kept)
    # the gap between the first 8 and the latest 64 is filled by the gauge's points
    middle = [v for v in values if 10 / updates < v < (updates - 64) / updates]
    assert middle, values
    assert values == sorted(values)
