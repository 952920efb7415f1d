"""The real collector (otelcol-ai) and Jaeger v2 as processes on 127.0.0.1, for
tests/test_real_pipeline.py and benchmarks/bench_pipeline.py.

Both binaries are built by ``collector-config/build.sh`` into ``$OTEL_AI_BIN_DIR``
(default ``~/.cache/otel-ai/bin``). :func:`binaries` finds them (building them first when
Go is here: the script reuses a binary whose sources did not change) or says why they
cannot be had. Every process gets free ports through the environment variables the
shipped configs read, its own storage directory, and a log file that a failing test shows.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "collector-config"
BUILD_SCRIPT = CONFIG_DIR / "build.sh"
JAEGER_CONFIG = CONFIG_DIR / "stack" / "jaeger.yaml"

T = TypeVar("T")


def bin_dir() -> Path:
    return Path(os.environ.get("OTEL_AI_BIN_DIR") or Path.home() / ".cache" / "otel-ai" / "bin")


@dataclass(frozen=True)
class Binaries:
    otelcol: Path
    jaeger: Path


def binaries(which: str = "all") -> Binaries | str:
    """The two binaries, or the reason they cannot be used here (a skip reason).

    They must be built from the sources in the repository as they are now
    (``build.sh check``): .ci/run builds them before the tests; on a developer's machine,
    ``collector-config/build.sh`` does (about 15 minutes on 2 cores the first time)."""
    directory = bin_dir()
    found = Binaries(directory / "otelcol-ai", directory / "jaeger")
    check = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "check", which], capture_output=True, check=False, timeout=60
    )
    if check.returncode == 0:
        return found
    go = "" if shutil.which("go") else "there is no Go toolchain here, and "
    names = {"collector": "otelcol-ai is", "jaeger": "jaeger is"}.get(which, "otelcol-ai and jaeger are")
    state = "out of date" if found.otelcol.is_file() and found.jaeger.is_file() else "not built"
    return (
        f"{go}{names} {state} in {directory}: run collector-config/build.sh "
        "(Go 1.24+ and the Go module proxy; .ci/run does it)"
    )


_handed_out: set[int] = set()


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a server that binds it later (a collector, Jaeger).

    Taken below the kernel's ephemeral range: a port the kernel hands out for ``bind(0)``
    is also one it may give any outgoing connection (ours to the collector, say) before
    the server gets to bind it ("address already in use")."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)
        if port in _handed_out:  # not bound yet by the server it was given to
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def wait_until(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - 127.0.0.1 only
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


@dataclass
class Process:
    """One real binary, started and stopped by a test."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    health_url: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Process:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"\n=== start {' '.join(self.argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=self.log.parent
            )
        try:
            wait_until(f"{self.name} to be healthy", self._healthy, timeout)
        except AssertionError:
            raise AssertionError(f"{self.name} did not become healthy:\n{self.tail()}") from None
        return self

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
        return http_get(self.health_url, timeout=2)[0] == 200

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def tail(self, chars: int = 6000) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class Collector(Process):
    """otelcol-ai with one config set; its ports are in ``ports``."""

    ports: dict[str, int] = field(default_factory=dict)

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the collector's own metric ``name`` over the series matching ``labels``."""
        status, body = http_get(f"http://127.0.0.1:{self.ports['metrics']}/metrics")
        assert status == 200, (self.name, status)
        return prometheus_sum(body.decode(), name, labels)


def prometheus_sum(text: str, name: str, labels: Mapping[str, str]) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        base, _, label_text = metric.partition("{")
        if base not in (name, f"{name}_total"):  # counters carry _total or not, by version
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total


def collector(
    otelcol: Path,
    name: str,
    configs: Sequence[str | Path],
    workdir: Path,
    env: Mapping[str, str] | None = None,
) -> Collector:
    """A collector ready to start: ``configs`` are files of collector-config/ (or paths),
    merged in order; ports and storage come through the configs' variables."""
    ports = {k: free_port() for k in ("grpc", "http", "health", "metrics")}
    own = workdir / name
    own.mkdir(parents=True, exist_ok=True)
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(workdir)),
        "OTELCOL_LISTEN_HOST": "127.0.0.1",
        "OTELCOL_OTLP_GRPC_PORT": str(ports["grpc"]),
        "OTELCOL_OTLP_HTTP_PORT": str(ports["http"]),
        "OTELCOL_HEALTH_PORT": str(ports["health"]),
        "OTELCOL_METRICS_PORT": str(ports["metrics"]),
        "OTELCOL_STORAGE_DIR": str(own / "storage"),
        "HOSTNAME": name,
        **(env or {}),
    }
    argv = [str(otelcol)] + [f"--config={CONFIG_DIR / c if isinstance(c, str) else c}" for c in configs]
    return Collector(
        name, argv, full_env, own / "collector.log", f"http://127.0.0.1:{ports['health']}/", ports=ports
    )


@dataclass
class Jaeger(Process):
    """Jaeger v2 with the stack's config (stack/jaeger.yaml): Badger on disk."""

    ports: dict[str, int] = field(default_factory=dict)

    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.ports['otlp_grpc']}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['query_http']}"

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """GET /api/v3/traces/{id}: the OTLP/JSON answer, None when Jaeger has none."""
        status, body = http_get(f"{self.url}/api/v3/traces/{trace_id}", timeout=30)
        if status == 404:
            return None
        assert status == 200, (status, body[:500])
        return json.loads(body)


def jaeger(binary: Path, workdir: Path) -> Jaeger:
    ports = {
        k: free_port() for k in ("otlp_grpc", "otlp_http", "query_http", "query_grpc", "health", "metrics")
    }
    own = workdir / "jaeger"
    own.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(workdir)),
        "JAEGER_LISTEN_HOST": "127.0.0.1",
        "JAEGER_OTLP_GRPC_PORT": str(ports["otlp_grpc"]),
        "JAEGER_OTLP_HTTP_PORT": str(ports["otlp_http"]),
        "JAEGER_QUERY_HTTP_PORT": str(ports["query_http"]),
        "JAEGER_QUERY_GRPC_PORT": str(ports["query_grpc"]),
        "JAEGER_HEALTH_PORT": str(ports["health"]),
        "JAEGER_METRICS_PORT": str(ports["metrics"]),
        "JAEGER_BADGER_DIR": str(own / "badger"),
    }
    argv = [str(binary), f"--config={JAEGER_CONFIG}"]
    return Jaeger(
        "jaeger", argv, env, own / "jaeger.log", f"http://127.0.0.1:{ports['health']}/status", ports=ports
    )
