"""``otel-ai show`` on what a real run wrote (SPEC section 6).

``examples/pod_worker_demo.py`` runs as a real process (once completing, once crashing
in stage 2) into one OTEL_AI_DATA_DIR; ``otel-ai show`` then runs as a real process too,
and its plain-text tree is checked against what the demo itself printed and against the
telemetry files. Error paths go through ``otel_ai.cli.main`` in-process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from otel_ai.cli import main as cli_main
from otel_ai.read import load_directory

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "pod_worker_demo.py"
OTEL_AI = Path(sys.executable).parent / "otel-ai"
STAGES = ["1_initial_implementation", "2_baseline_tuning", "3_creative_research", "4_ablation_studies"]
SEED = 5
ANSI = re.compile(r"\x1b\[[0-9;]*m")
CRASH_MESSAGE = "experiment worker crashed: CUDA error: an illegal memory access was encountered"

# what the demo prints per stage: "  2_baseline_tuning   7 nodes (5 good, 2 buggy)  best 0.7227 (node f8af3287d050)  0.40s"
DEMO_STAGE_LINE = re.compile(
    r"^\s+(?P<stage>\d_\w+)\s+(?P<total>\d+) nodes \((?P<good>\d+) good, (?P<buggy>\d+) buggy\)\s+"
    r"(?:best [\d.]+ \(node (?P<best>[0-9a-f]+)\)|no good node)"
)
NODE_LINE = re.compile(r"[├└]── (?P<mark>[●✗★○]) (?P<kind>\S+) (?P<id>\S+)(?P<rest>.*)$")
HEADER_COUNTS = re.compile(r"nodes (?P<total>\d+) \((?P<good>\d+) good, (?P<buggy>\d+) buggy\)")


def _env(data_dir: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUNPOD_"))}
    # output must not depend on the caller's terminal settings
    for name in ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    if data_dir is not None:
        env["OTEL_AI_DATA_DIR"] = str(data_dir)
    return env


@dataclass
class DemoRuns:
    data_dir: Path
    ok: subprocess.CompletedProcess[str]
    failed: subprocess.CompletedProcess[str]

    def show(self, *args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(OTEL_AI), "show", *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(data_dir or self.data_dir),
        )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRuns]:
    if not DEMO.is_file():
        pytest.skip(f"{DEMO} not there yet")
    root = tmp_path_factory.mktemp("show")
    data_dir = root / "otel-ai-runs"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(DEMO), *args, "--seed", str(SEED), "--workdir", str(root / args[1])],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            env=_env(data_dir),
        )

    # the failing run first: the completed one is then the latest
    failed = run("--run-id", "show-fail", "--fail")
    ok = run("--run-id", "show-ok")
    yield DemoRuns(data_dir, ok, failed)


def _sections(output: str) -> dict[str, list[str]]:
    """Top-level branches of the tree, keyed by their first words ("Stage X", "Paper"...)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith(("├── ", "└── ")):
            words = line[4:].split()
            key = " ".join(words[:2]) if words[0] == "Stage" else words[0]
            current = sections.setdefault(key, [])
        elif not line.startswith(("│", " ")):
            current = None  # the tree ended (e.g. the "other runs" note)
        if current is not None:
            current.append(line)
    return sections


def _demo_stages(stdout: str) -> dict[str, re.Match[str]]:
    return {m["stage"]: m for m in map(DEMO_STAGE_LINE.match, stdout.splitlines()) if m}


# --------------------------------------------------------------------------- the demo itself


def test_demo_completes(demo: DemoRuns) -> None:
    assert demo.ok.returncode == 0, demo.ok.stderr
    assert list(_demo_stages(demo.ok.stdout)) == STAGES
    names = sorted(p.name.split("-")[0] for p in demo.data_dir.glob("*.jsonl"))
    # two processes, one file per signal each
    assert names == ["logs", "logs", "metrics", "metrics", "traces", "traces"]


def test_demo_fail_exits_1_with_a_traceback(demo: DemoRuns) -> None:
    assert demo.failed.returncode == 1
    stderr = demo.failed.stderr
    assert "Traceback (most recent call last):" in stderr
    # Python 3.10 names the class with its module (__main__.DemoFailure)
    assert stderr.rstrip().splitlines()[-1].removeprefix("__main__.") == f"DemoFailure: {CRASH_MESSAGE}"


# --------------------------------------------------------------------------- show, completed run


@pytest.mark.parametrize("how", ["latest", "run-id", "path"])
def test_show_completed_run(demo: DemoRuns, tmp_path: Path, how: str) -> None:
    if how == "latest":
        result = demo.show()
    elif how == "run-id":
        result = demo.show("show-ok")
    else:
        # the path wins over OTEL_AI_DATA_DIR, which points at nothing here
        result = demo.show(str(demo.data_dir), data_dir=tmp_path / "elsewhere")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert not ANSI.search(out), "colour escapes on a pipe"
    head = out.splitlines()[0]
    assert head.startswith("Run show-ok  completed")
    assert "show-fail" not in head

    sections = _sections(out)
    assert [k for k in sections if k.startswith("Stage")] == [f"Stage {s}" for s in STAGES]
    expected = _demo_stages(demo.ok.stdout)
    for stage in STAGES:
        lines = sections[f"Stage {stage}"]
        want = expected[stage]
        counts = HEADER_COUNTS.search("\n".join(lines[:2]))
        assert counts is not None, lines[:2]
        assert (counts["total"], counts["good"], counts["buggy"]) == (
            want["total"],
            want["good"],
            want["buggy"],
        ), stage
        nodes = [m for m in map(NODE_LINE.search, lines[2:]) if m]
        assert len(nodes) == int(want["total"]), stage
        buggy = [m for m in nodes if m["mark"] == "✗"]
        assert len(buggy) == int(want["buggy"]), stage
        for node in buggy:
            assert re.match(
                r"\s+(ValueError|RuntimeError|KeyError|IndexError|AssertionError)\b", node["rest"]
            ), node.group(0)
        stars = [m for m in nodes if m["mark"] == "★"]
        if want["best"]:
            assert len(stars) == 1, stage
            assert stars[0]["id"] == want["best"]
            assert "(best)" in stars[0]["rest"]
        else:
            assert stars == []

    assert "runs/show-ok/paper.pdf" in "\n".join(sections["Paper"])
    review = "\n".join(sections["Review"])
    assert "verdict pass" in review and "gpt-4o-2024-11-20" in review
    artifacts = "\n".join(sections["Artifacts"])
    assert "figures/validation_accuracy.png" in artifacts
    assert "figures/ablation_summary.png" in artifacts
    assert "Failure" not in sections


def test_show_marks_every_buggy_node_with_its_exception_type(demo: DemoRuns) -> None:
    out = demo.show("show-ok").stdout
    spans = load_directory(demo.data_dir).spans
    (run,) = [s for s in spans if s.name == "ai.run" and s.attributes["ai.run.id"] == "show-ok"]
    nodes = [s for s in spans if s.trace_id == run.trace_id and s.name.startswith("ai.node ")]
    buggy = [s for s in nodes if s.attributes.get("ai.node.is_buggy") is True]
    assert buggy, "the seed is chosen so that the run has buggy nodes"
    lines = {m["id"]: m for m in map(NODE_LINE.search, out.splitlines()) if m}
    assert len(lines) == len(nodes)
    for span in nodes:
        line = lines[span.attributes["ai.node.id"]]
        assert line["kind"] == span.attributes["ai.node.kind"]
        if span in buggy:
            assert line["mark"] == "✗"
            assert span.attributes["ai.node.exc_type"] in line["rest"]
        else:
            assert line["mark"] in "●★"


# --------------------------------------------------------------------------- show, failed run


def test_show_failed_run(demo: DemoRuns) -> None:
    result = demo.show("show-fail")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.splitlines()[0].startswith("Run show-fail  failed")
    sections = _sections(out)
    failure = sections["Failure"]
    assert failure[0].startswith("└── Failure in stage 2_baseline_tuning: DemoFailure: ")
    # the traceback's last lines, as the demo printed them
    shown = [line.lstrip("│├└─ ") for line in failure[1:]]
    assert shown[-1] == f"DemoFailure: {CRASH_MESSAGE}"
    assert any(line.startswith("raise DemoFailure(") for line in shown)
    # stages after the crash never started
    assert [k for k in sections if k.startswith("Stage")] == [f"Stage {s}" for s in STAGES[:2]]
    assert "ended with error" in "\n".join(sections["Stage 2_baseline_tuning"][:2])
    assert "Paper" not in sections and "Review" not in sections
    # another run is there: show says so
    assert "show-ok" in out.splitlines()[-1]


def test_show_does_not_crop_long_lines_on_a_pipe(demo: DemoRuns) -> None:
    out = demo.show("show-fail").stdout
    failure = _sections(out)["Failure"]
    assert failure[0].endswith(f"DemoFailure: {CRASH_MESSAGE}")
    assert any(line.endswith(f'raise DemoFailure("{CRASH_MESSAGE}")') for line in failure)


# --------------------------------------------------------------------------- colour


def test_color_always_produces_ansi_escapes(demo: DemoRuns) -> None:
    result = demo.show("show-ok", "--color", "always")
    assert result.returncode == 0, result.stderr
    assert ANSI.search(result.stdout)
    assert "show-ok" in ANSI.sub("", result.stdout)


def test_color_in_process(demo: DemoRuns, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["show", "show-ok", "--data-dir", str(demo.data_dir)]
    assert cli_main(args) == 0
    plain = capsys.readouterr().out
    assert not ANSI.search(plain)
    assert cli_main([*args, "--color", "always"]) == 0
    coloured = capsys.readouterr().out
    assert ANSI.search(coloured)
    assert cli_main([*args, "--color", "never"]) == 0
    assert not ANSI.search(capsys.readouterr().out)
    assert "Run show-ok" in plain and "Run show-ok" in ANSI.sub("", coloured)


# --------------------------------------------------------------------------- errors


def test_unknown_run_id_lists_known_runs(demo: DemoRuns, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["show", "no-such-run", "--data-dir", str(demo.data_dir)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no-such-run" in captured.err
    assert "show-ok" in captured.err and "show-fail" in captured.err


def test_unknown_run_id_from_environment_data_dir(
    demo: DemoRuns, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_AI_DATA_DIR", str(demo.data_dir))
    assert cli_main(["show", "no-such-run"]) == 1
    assert "show-ok" in capsys.readouterr().err


def test_empty_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["show", "--data-dir", str(empty)]) == 1
    assert str(empty) in capsys.readouterr().err
    assert cli_main(["show", str(empty)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "no run" in captured.err


def test_missing_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "never-created"
    monkeypatch.setenv("OTEL_AI_DATA_DIR", str(missing))
    assert cli_main(["show"]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "OTEL_AI_DATA_DIR" in err


def test_show_unknown_run_as_subprocess(demo: DemoRuns) -> None:
    result = demo.show("no-such-run")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "show-ok" in result.stderr
    assert "Traceback" not in result.stderr


def test_show_and_report_take_infinite_and_nan_values(tmp_path: Path) -> None:
    """A node that reports exec_time_s=inf (or NaN metrics, an infinite ETA) is shown as
    recorded, not a crash."""
    import otel_ai

    data_dir = tmp_path / "inf-runs"
    otel_ai.configure(data_dir=str(data_dir))
    with otel_ai.run("run-inf") as run:
        with run.stage("s") as stage:
            stage.progress(1, 2, 1, 0, 1, best_metric=float("inf"), eta_s=float("inf"))
            with stage.node("n1", kind="draft") as node:
                node.completed(False, "0.5", float("inf"))
            with stage.node("n2", kind="draft") as node:
                node.completed(False, "nan", float("nan"))
            stage.progress(2, 2, 2, 0, 2, best_metric=float("nan"), eta_s=float("-inf"))
    otel_ai.shutdown(5.0)
    env = {**os.environ, "OTEL_AI_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    shown = subprocess.run(
        [sys.executable, "-m", "otel_ai", "show", "run-inf"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "exec infs" in shown.stdout and "draft n2" in shown.stdout
    assert cli_main(["report", "run-inf", "--data-dir", str(data_dir), "-o", str(tmp_path / "r.html")]) == 0


def test_a_stage_counts_the_nodes_its_pool_workers_made(tmp_path: Path) -> None:
    """Pool workers that report their nodes through `EventEmitter` (no instrumentor) each
    open a stage span of that name: the stage's line counts every node the trace holds,
    not those of whichever of its spans started last."""
    from test_python_versions import POOL

    (tmp_path / "pool.py").write_text(POOL)
    env = _env(tmp_path / "runs")
    run = subprocess.run(
        [str(OTEL_AI), "run", "--no-status", "--no-watch", "--run-id", "pool-counts", "--"]
        + [sys.executable, "pool.py", "fork"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    show = subprocess.run(
        [str(OTEL_AI), "show", "pool-counts", "--color", "never"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert show.returncode == 0, show.stderr
    section = _sections(ANSI.sub("", show.stdout))["Stage 1_initial_implementation"]
    counts = HEADER_COUNTS.search("\n".join(section))
    assert counts is not None, show.stdout
    assert counts.group("total", "good", "buggy") == ("6", "6", "0")
    assert len([line for line in section if NODE_LINE.search(line)]) == 6
