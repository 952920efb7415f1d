"""Real LLM-observability backends on 127.0.0.1: Arize Phoenix and MLflow, from PyPI.

Their dependencies clash with ours (and with each other), so each lives in a virtual
environment of its own under AI_BACKENDS_DIR (default ``~/.cache/otel-ai-backends``),
one per pinned version, made on first use and reused after (``.ci/run`` makes them before
the tests). When one cannot be made the tests that need it are skipped with the reason,
unless AI_BACKENDS_REQUIRED=1 (CI), where that is a failure.

Each server is started on free ports in its own process group, and stopped with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from real_pipeline import free_port

PHOENIX = ("phoenix", "arize-phoenix==20.26.1", "phoenix.server.main")
# mlflow 3.18.0 needs an mlflow-tracing 3.18.0 that PyPI does not serve (yet)
MLFLOW = ("mlflow", "mlflow==3.17.2", "mlflow.server")
INSTALL_TIMEOUT_S = 1200
HERE = Path(__file__).resolve().parent


def backends_dir() -> Path:
    configured = os.environ.get("AI_BACKENDS_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "otel-ai-backends"


def _unavailable(reason: str) -> None:
    if os.environ.get("AI_BACKENDS_REQUIRED") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def venv_python(spec: tuple[str, str, str]) -> Path:
    """The Python of the backend's own environment, made (pip install) when missing."""
    name, requirement, probe = spec
    venv = backends_dir() / f"{name}-{requirement.split('==')[1]}"
    python = venv / "bin" / "python"
    ready = venv / ".ready"
    if ready.exists() and python.exists():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True, timeout=300
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", requirement],
            check=True,
            capture_output=True,
            timeout=INSTALL_TIMEOUT_S,
        )
        subprocess.run([str(python), "-c", f"import {probe}"], check=True, capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        _unavailable(
            f"cannot make the {requirement} environment in {venv}: {exc} {detail.decode(errors='replace')[-800:]}"
        )
    ready.write_text(requirement + "\n")
    return python


def _get(url: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> Any:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - 127.0.0.1 only
        return json.loads(response.read() or b"null")


def _post(url: str, body: Any, timeout: float = 10.0) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - 127.0.0.1 only
        return json.loads(response.read() or b"null")


class _Server:
    """A backend process in its own session, waited for until ``health`` answers."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"{self.name}.log"

    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def health_url(self) -> str:
        raise NotImplementedError

    def start(self, timeout: float = 180.0) -> _Server:
        argv, env = self.command()
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                urllib.request.urlopen(self.health_url(), timeout=2).close()  # noqa: S310 - 127.0.0.1 only
                return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer in {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            # the server and the workers it started (MLflow's job runners) share its session
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        try:  # stragglers of the group
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process = None


class Phoenix(_Server):
    """``phoenix serve``: OTLP/HTTP at /v1/traces, spans back from its REST API."""

    name = "phoenix"

    def __init__(self, workdir: Path, python: Path) -> None:
        super().__init__(workdir)
        self.python = python
        self.grpc_port = free_port()

    def command(self) -> tuple[list[str], dict[str, str]]:
        env = {
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(self.port),
            "PHOENIX_GRPC_PORT": str(self.grpc_port),
            "PHOENIX_WORKING_DIR": str(self.workdir),
            "PHOENIX_TELEMETRY_ENABLED": "false",
        }
        return [str(self.python), "-m", "phoenix.server.main", "serve"], env

    def health_url(self) -> str:
        return f"{self.base_url}/healthz"

    @property
    def traces_endpoint(self) -> str:
        return f"{self.base_url}/v1/traces"

    def spans(self, project: str = "default") -> list[dict[str, Any]]:
        """Every span of the project, as Phoenix stored it (with what it derived)."""
        spans: list[dict[str, Any]] = []
        cursor = None
        while True:
            url = f"{self.base_url}/v1/projects/{project}/spans?limit=1000" + (
                f"&cursor={cursor}" if cursor else ""
            )
            page = _get(url)
            spans += page.get("data") or []
            cursor = page.get("next_cursor")
            if not cursor:
                return spans


class Mlflow(_Server):
    """``mlflow server`` on SQLite: OTLP/HTTP at /v1/traces with ``x-mlflow-experiment-id``;
    traces back through MLflow's own client (run in its environment)."""

    name = "mlflow"

    def __init__(self, workdir: Path, python: Path) -> None:
        super().__init__(workdir)
        self.python = python

    def command(self) -> tuple[list[str], dict[str, str]]:
        argv = [
            str(self.python),
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--backend-store-uri",
            f"sqlite:///{self.workdir / 'mlflow.db'}",
            "--default-artifact-root",
            str(self.workdir / "artifacts"),
            "--workers",
            "1",
        ]
        return argv, {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

    def health_url(self) -> str:
        return f"{self.base_url}/health"

    @property
    def traces_endpoint(self) -> str:
        return f"{self.base_url}/v1/traces"

    def create_experiment(self, name: str) -> str:
        return str(
            _post(f"{self.base_url}/api/2.0/mlflow/experiments/create", {"name": name})["experiment_id"]
        )

    def traces(self, experiment_id: str) -> list[dict[str, Any]]:
        """The experiment's traces: info (previews, token usage) and spans (inputs, outputs)."""
        result = subprocess.run(
            [str(self.python), str(HERE / "mlflow_read.py"), self.base_url, experiment_id],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if result.returncode != 0:
            raise RuntimeError(f"reading MLflow traces failed:\n{result.stderr[-3000:]}")
        return json.loads(result.stdout)


def main() -> int:
    """Make both environments (``.ci/run`` calls this before the tests), in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    def make(spec: tuple[str, str, str]) -> str:
        started = time.monotonic()
        try:
            python = venv_python(spec)
        except BaseException as exc:  # noqa: BLE001 - pytest's skip/fail outcomes
            return f"{spec[1]}: FAILED {exc}"
        return f"{spec[1]}: {python} ({time.monotonic() - started:.0f} s)"

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(make, (PHOENIX, MLFLOW)))
    print("\n".join(results))
    return 1 if any("FAILED" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
