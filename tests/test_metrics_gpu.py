"""GPU metrics (SPEC section 4): NVML readings on the wire, unsupported readings, a GPU
that falls off the bus, and no GPU at all.

Without a GPU here, the callback logic is driven by :class:`FakeNvml`, a small stand-in
for nvidia-ml-py's ``pynvml`` module (same function names, return shapes, units and
exception type) handed to the sampler as its ``nvml``. The "library installed, no driver"
path runs for real in a child process; it is skipped on a machine with a GPU, where
``test_real_gpu_on_the_wire`` runs instead.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Wire

import otel_ai
import otel_ai.metrics
from otel_ai._internal import internal_error_counts
from otel_ai.export.providers import get_pipeline
from otel_ai.metrics.gpu import GpuMetrics, detect_gpus, load_nvml, probe
from otel_ai.read import MetricPoint, load_directory

GiB = 1024**3


@pytest.fixture(autouse=True)
def _no_sampler_left() -> Iterator[None]:
    yield
    otel_ai.metrics.stop()


class NVMLError(Exception):
    """As pynvml's: the NVML return code in ``value``."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value


@dataclass
class _Memory:
    total: int
    free: int
    used: int


@dataclass
class _Utilization:
    gpu: int  # percent
    memory: int


@dataclass
class FakeGpu:
    name: str
    uuid: str
    utilization: int = 42
    used: int = 30 * GiB
    total: int = 80 * GiB
    temperature: int = 61
    milliwatts: int = 312_500
    millijoules: int = 9_000_000
    unsupported: tuple[str, ...] = ()
    lost: bool = False


class FakeNvml:
    """The parts of nvidia-ml-py's ``pynvml`` that otel_ai calls, over fake devices."""

    NVMLError = NVMLError
    NVML_TEMPERATURE_GPU = 0
    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_ERROR_LIBRARY_NOT_FOUND = 12
    NVML_ERROR_GPU_IS_LOST = 15

    def __init__(self, gpus: list[FakeGpu] | None = None, *, init_error: int | None = None) -> None:
        self.gpus = (
            gpus
            if gpus is not None
            else [
                FakeGpu("NVIDIA H100 80GB HBM3", "GPU-11111111-2222-3333-4444-555555555555"),
                FakeGpu(
                    "NVIDIA H100 80GB HBM3",
                    "GPU-66666666-7777-8888-9999-000000000000",
                    utilization=0,
                    used=1 * GiB,
                    unsupported=("power", "energy"),
                ),
            ]
        )
        self.init_error = init_error
        self.initialised = 0
        self.calls: dict[tuple[str, int], int] = {}

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.initialised -= 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:
        return self.gpus[handle].name

    def nvmlDeviceGetUUID(self, handle: int) -> bytes:
        return self.gpus[handle].uuid.encode()

    def _read(self, what: str, handle: int) -> FakeGpu:
        self.calls[(what, handle)] = self.calls.get((what, handle), 0) + 1
        gpu = self.gpus[handle]
        if gpu.lost:
            raise NVMLError(self.NVML_ERROR_GPU_IS_LOST)
        if what in gpu.unsupported:
            raise NVMLError(self.NVML_ERROR_NOT_SUPPORTED)
        return gpu

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> _Utilization:
        return _Utilization(self._read("utilization", handle).utilization, 10)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> _Memory:
        gpu = self._read("memory", handle)
        return _Memory(gpu.total, gpu.total - gpu.used, gpu.used)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._read("temperature", handle).temperature

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return self._read("power", handle).milliwatts

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        return self._read("energy", handle).millijoules


def _gpu_points(points: list[MetricPoint]) -> list[MetricPoint]:
    return [p for p in points if p.name.startswith("hw.")]


def _latest(wire: Wire, name: str, hw_name: str) -> MetricPoint:
    found = [p for p in wire.latest_metrics() if p.name == name and p.attributes.get("hw.name") == hw_name]
    assert len(found) == 1, (name, hw_name, found)
    return found[0]


def test_gpu_metrics_on_the_wire(wire: Wire) -> None:
    nvml = FakeNvml()
    otel_ai.metrics.start(get_pipeline().meter, nvml=nvml, min_interval_s=0.0)
    wire.flush()
    utilization = _latest(wire, "hw.gpu.utilization", "gpu0")
    assert (
        utilization.value == pytest.approx(0.42) and utilization.unit == "1" and utilization.kind == "gauge"
    )
    assert utilization.attributes == {
        "hw.id": "GPU-11111111-2222-3333-4444-555555555555",
        "hw.name": "gpu0",
        "hw.model": "NVIDIA H100 80GB HBM3",
        "hw.vendor": "NVIDIA",
        "hw.type": "gpu",
        "hw.gpu.task": "general",
    }
    assert _latest(wire, "hw.gpu.utilization", "gpu1").value == 0.0
    used = _latest(wire, "hw.gpu.memory.usage", "gpu0")
    limit = _latest(wire, "hw.gpu.memory.limit", "gpu0")
    assert (used.value, limit.value, used.unit, limit.unit) == (30 * GiB, 80 * GiB, "By", "By")
    assert used.kind == "sum" and used.is_monotonic is False
    assert _latest(wire, "hw.gpu.memory.utilization", "gpu0").value == pytest.approx(30 / 80)
    temperature = _latest(wire, "hw.temperature", "gpu0")
    assert (temperature.value, temperature.unit) == (61, "Cel")
    power = _latest(wire, "hw.power", "gpu0")
    assert power.value == pytest.approx(312.5) and power.unit == "W"
    energy = _latest(wire, "hw.energy", "gpu0")
    assert energy.value == pytest.approx(9000.0) and energy.unit == "J" and energy.is_monotonic
    # the resource's detection is the process's (no GPU here); the metrics name their device
    assert all("hw.id" not in p.resource for p in _gpu_points(wire.metrics()))


def test_an_unsupported_reading_is_asked_once_and_left_out(http_wire: Wire) -> None:
    nvml = FakeNvml()
    sampler = otel_ai.metrics.start(get_pipeline().meter, nvml=nvml, min_interval_s=0.0)
    for _ in range(3):
        http_wire.flush()
    latest = http_wire.latest_metrics()  # flushes once more
    assert sampler.passes == 4
    power = {p.attributes["hw.name"] for p in latest if p.name == "hw.power"}
    energy = {p.attributes["hw.name"] for p in latest if p.name == "hw.energy"}
    assert power == energy == {"gpu0"}
    assert nvml.calls[("power", 1)] == 1 and nvml.calls[("energy", 1)] == 1
    assert nvml.calls[("power", 0)] == 4
    assert {p.attributes["hw.name"] for p in latest if p.name == "hw.temperature"} == {"gpu0", "gpu1"}


def test_a_lost_gpu_is_logged_once_and_sampling_goes_on(
    http_wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    nvml = FakeNvml()
    sampler = otel_ai.metrics.start(get_pipeline().meter, nvml=nvml, min_interval_s=0.0)
    http_wire.flush()
    nvml.gpus[1].lost = True
    with caplog.at_level(logging.WARNING, logger="otel_ai.gpu"):
        http_wire.receiver.clear()
        http_wire.flush()
        http_wire.flush()
    after = http_wire.metrics()
    assert {p.attributes["hw.name"] for p in after if p.name == "hw.gpu.utilization"} == {"gpu0"}
    lost = [r for r in caplog.records if r.name == "otel_ai.gpu"]
    # one warning per reading (utilisation, memory, temperature, power unsupported already...)
    assert 1 <= len(lost) <= 5 and all("GPU 1" in r.getMessage() for r in lost)
    assert len({r.getMessage() for r in lost}) == len(lost), "the same failure logged twice"
    assert [p for p in after if p.name == "process.memory.usage"], "the rest of the pass went on"
    nvml.gpus[1].lost = False
    http_wire.flush()
    assert {
        p.attributes["hw.name"] for p in http_wire.latest_metrics() if p.name == "hw.gpu.utilization"
    } == {"gpu0", "gpu1"}
    sampler.stop()
    assert nvml.initialised == 0, "NVML shut down at stop"
    assert {k: v for k, v in internal_error_counts().items() if k.startswith("metrics.")} == {}


@pytest.mark.parametrize(
    "nvml",
    [FakeNvml(init_error=FakeNvml.NVML_ERROR_LIBRARY_NOT_FOUND), FakeNvml(gpus=[])],
    ids=["no-driver", "no-device"],
)
def test_no_gpu_means_no_gpu_metrics_and_one_info_line(
    http_wire: Wire, caplog: pytest.LogCaptureFixture, nvml: FakeNvml
) -> None:
    with caplog.at_level(logging.DEBUG, logger="otel_ai"):
        sampler = otel_ai.metrics.start(get_pipeline().meter, nvml=nvml, min_interval_s=0.0)
        http_wire.flush()
    assert sampler.gpus is None
    points = http_wire.metrics()
    assert _gpu_points(points) == []
    assert [p for p in points if p.name == "process.memory.usage"]
    records = [r for r in caplog.records if r.name.startswith("otel_ai")]
    assert [r.levelname for r in records] == ["INFO"], [r.getMessage() for r in records]
    assert "no GPU metrics" in records[0].getMessage()
    assert nvml.initialised == 0


def test_detection_and_metrics_see_the_same_gpus() -> None:
    nvml = FakeNvml()
    info = probe(nvml)
    assert (info.name, info.count) == ("NVIDIA H100 80GB HBM3", 2)
    assert [d.uuid for d in info.devices] == [g.uuid for g in nvml.gpus]
    gpus = GpuMetrics.open(nvml)
    assert gpus is not None
    assert gpus.devices == list(info.devices)
    gpus.close()
    assert gpus.read() == []
    assert nvml.initialised == 0


CHILD = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
import otel_ai, otel_ai.metrics
from otel_ai.export.providers import get_pipeline
otel_ai.configure(data_dir=sys.argv[1])
sampler = otel_ai.metrics.start(get_pipeline().meter)
otel_ai.force_flush()
print(json.dumps({"gpus": sampler.gpus is not None, "passes": sampler.passes}))
otel_ai.shutdown()
"""


@pytest.mark.skipif(
    detect_gpus().count > 0, reason="a GPU is present: test_real_gpu_on_the_wire runs instead"
)
def test_no_gpu_for_real_one_info_line_and_unknown_resource(tmp_path: Path) -> None:
    data_dir = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(data_dir)], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"gpus": False, "passes": 1}
    lines = [
        line
        for line in result.stderr.splitlines()
        if line.split(" ", 2)[1:2] and line.split(" ", 2)[1].startswith("otel_ai")
    ]
    assert len(lines) == 1, result.stderr
    level, _, message = lines[0].split(" ", 2)
    assert level == "INFO" and "no GPU metrics" in message
    if load_nvml() is not None:  # nvidia-ml-py installed, no driver: NVML's own reason
        assert "no NVIDIA GPU detected" in message
    points = load_directory(data_dir).metrics
    assert [p for p in points if p.name == "process.memory.usage"]
    assert _gpu_points(points) == []
    resource = points[0].resource
    assert (resource["ai.gpu.name"], resource["ai.gpu.count"]) == ("unknown", 0)


@pytest.mark.skipif(detect_gpus().count == 0, reason="needs an NVIDIA GPU and driver")
def test_real_gpu_on_the_wire(http_wire: Wire) -> None:
    info = detect_gpus()
    otel_ai.metrics.start(get_pipeline().meter, min_interval_s=0.0)
    http_wire.flush()
    latest = http_wire.latest_metrics()
    util = [p for p in latest if p.name == "hw.gpu.utilization"]
    assert sorted(p.attributes["hw.id"] for p in util) == sorted(d.uuid for d in info.devices)
    for point in util:
        assert 0.0 <= point.value <= 1.0  # type: ignore[operator]
        assert point.attributes["hw.model"] in info.names and point.attributes["hw.vendor"] == "NVIDIA"
    limits = {p.attributes["hw.id"]: p.value for p in latest if p.name == "hw.gpu.memory.limit"}
    used = {p.attributes["hw.id"]: p.value for p in latest if p.name == "hw.gpu.memory.usage"}
    assert limits.keys() == used.keys() == {d.uuid for d in info.devices}
    assert all(0 <= used[k] <= limits[k] for k in limits)  # type: ignore[operator]
    assert all(10 <= p.value <= 110 for p in latest if p.name == "hw.temperature")  # type: ignore[operator]
    assert all(0 < p.value < 2000 for p in latest if p.name == "hw.power")  # type: ignore[operator]
    resource = latest[0].resource
    assert (resource["ai.gpu.name"], resource["ai.gpu.count"]) == (info.name, info.count)
