"""otel_ai on the other CPythons it says it runs on (``requires-python >= 3.10``).

GPU images ship the Python of their distribution (3.10 on Ubuntu 22.04, 3.12 on 24.04),
and each version changed something otel_ai depends on: 3.10 lacks ``datetime.UTC``,
3.12 starts no thread at interpreter exit, 3.13 reports a file descriptor closed twice.
For each of them found on this machine, a fresh virtual environment gets otel_ai
installed from this checkout (as a user installs it, not editable), then runs the
README's main command and a wrapped process pool. Versions not installed here are
skipped, saying so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from otel_ai import semconv
from otel_ai.read import load_directory

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ("3.10", "3.12", "3.13")

POOL = textwrap.dedent(
    """
    import concurrent.futures, multiprocessing, os, sys
    import otel_ai

    RUN = os.environ["OTEL_AI_RUN_ID"]

    def work(i):
        emitter = otel_ai.EventEmitter()
        emitter.node_created(RUN, "1_initial_implementation", f"node-{i}", None, "draft")
        emitter.node_completed(RUN, "1_initial_implementation", f"node-{i}", False, 0.5, 0.1)
        return os.getpid()

    if __name__ == "__main__":
        with otel_ai.run() as run:
            with run.stage("1_initial_implementation"):
                context = multiprocessing.get_context(sys.argv[1])
                with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
                    print("pids", sorted(set(pool.map(work, range(6)))), flush=True)
    """
)


def _interpreter(version: str) -> str | None:
    """``python{version}`` on PATH, or one that pyenv installed (its shims run only the
    versions selected)."""
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    candidates = [shutil.which(f"python{version}")]
    candidates += [str(p) for p in sorted(pyenv.glob(f"{version}.*/bin/python{version}"), reverse=True)]
    for found in candidates:
        if found is None:
            continue
        try:
            said = subprocess.run(
                [found, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if said.returncode == 0 and said.stdout.strip() == version:
            return found
    return None


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACEPARENT", "PYTHON"))}
    env["OTEL_AI_DATA_DIR"] = str(data_dir)
    return env


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout without what is built or run in it: pip builds in the tree it is
    given, and a ``build/`` left there by another install would go into the wheel."""
    copy = tmp_path_factory.mktemp("source") / "otel_ai"
    left_out = shutil.ignore_patterns(
        ".*", "__pycache__", "build", "dist", "*.egg-info", "otel-ai-runs", "test-output"
    )
    shutil.copytree(ROOT, copy, ignore=left_out)
    return copy


@pytest.fixture(scope="module", params=VERSIONS)
def venv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, source: Path) -> Path:
    version: str = request.param
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        pytest.skip(f"Python {version} runs the rest of the tests")
    python = _interpreter(version)
    if python is None:
        pytest.skip(f"no python{version} on this machine")
    directory = tmp_path_factory.mktemp(f"venv{version}")
    subprocess.run([python, "-m", "venv", str(directory)], check=True, timeout=300)
    installed = subprocess.run(
        [
            str(directory / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return directory


def test_the_readme_main_command(venv: Path, tmp_path: Path) -> None:
    env = _env(tmp_path / "runs")
    demo = subprocess.run(
        [str(venv / "bin" / "python"), str(ROOT / "examples" / "pod_worker_demo.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    show = subprocess.run(
        [str(venv / "bin" / "otel-ai"), "show"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert show.returncode == 0, show.stderr[-3000:]
    assert show.stderr == ""
    first = show.stdout.splitlines()[0]
    assert first.startswith("Run ") and " completed " in first, show.stdout[:2000]
    for stage in ("1_initial_implementation", "4_ablation_studies"):
        assert f"Stage {stage}" in show.stdout
    # the reader's quick way (msgspec) takes what the exporters wrote, on this version too
    quick = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            QUICK_READ,
            *map(str, sorted((tmp_path / "runs").glob("*.jsonl"))),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert quick.returncode == 0, quick.stderr[-3000:]
    said = quick.stdout.splitlines()
    assert len(said) >= 3 and set(said) == {"taken"}, quick.stdout  # a file per signal at least


QUICK_READ = """
import json, sys
from otel_ai.read import otlp_structs
kinds = {"traces": otlp_structs.TraceRequest, "logs": otlp_structs.LogsRequest, "metrics": otlp_structs.MetricsRequest}
for path in sys.argv[1:]:
    kind = kinds[path.rsplit("/", 1)[1].split("-", 1)[0]]
    with open(path) as lines:
        taken = all(otlp_structs.convert(json.loads(line), kind) is not None for line in lines)
    print("taken" if taken else "not taken: " + path)
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_wrapped_process_pool(venv: Path, tmp_path: Path, method: str) -> None:
    (tmp_path / "pool.py").write_text(POOL)
    result = subprocess.run(
        [
            str(venv / "bin" / "otel-ai"),
            "run",
            "--no-status",
            "--no-watch",
            "--run-id",
            f"pool-{method}",
            "--",
        ]
        + [str(venv / "bin" / "python"), "pool.py", method],
        cwd=tmp_path,
        env=_env(tmp_path / "runs"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # no traceback at exit, no file closed twice, nothing lost said on stderr
    assert result.stderr == "", result.stderr[-3000:]
    pids = {int(p) for p in result.stdout.split("pids ", 1)[1].strip(" []\n").split(", ")}
    telemetry = load_directory(tmp_path / "runs")
    nodes = [s for s in telemetry.spans if s.name.startswith(semconv.SPAN_NODE + " ")]
    assert sorted(s.attributes[semconv.NODE_ID] for s in nodes) == [f"node-{i}" for i in range(6)]
    assert {s.resource.get(semconv.PROCESS_PID) for s in nodes} <= pids
    (run,) = [s for s in telemetry.spans if s.name == semconv.SPAN_RUN]
    assert run.attributes[semconv.RUN_OUTCOME] == "completed"
    assert {s.trace_id for s in nodes} == {run.trace_id}
