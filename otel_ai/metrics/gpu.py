"""GPUs through NVML (nvidia-ml-py): detection for the resource, readings for the metrics.

nvidia-ml-py (the ``gpu`` extra) is imported lazily. No GPU, no driver or no library
means ``GpuInfo("unknown", 0)``, no GPU metrics and one INFO line, never an error.
:func:`detect_gpus` (cached for the process) feeds the resource's ``ai.gpu.name`` and
``ai.gpu.count``; :class:`GpuMetrics` keeps an NVML session with cached device handles
and reads utilisation, memory, temperature, power and energy once per sampling pass.

Every function that talks to NVML takes the module as a parameter (``nvml``), so tests
can hand in a small stand-in for the library instead of a real driver.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import semconv

logger = logging.getLogger("otel_ai.gpu")

# NVML return codes (nvml.h) meaning "this device cannot tell you that": stop asking
_NVML_ERROR_NOT_SUPPORTED = 3
_NVML_ERROR_FUNCTION_NOT_FOUND = 13
_LOG_EVERY_S = 300.0


@dataclass(frozen=True)
class GpuDevice:
    """One GPU as NVML enumerates it."""

    index: int
    uuid: str
    name: str


@dataclass(frozen=True)
class GpuInfo:
    """The GPUs of this machine: the first one's name, how many, and each of them."""

    name: str
    count: int
    names: tuple[str, ...] = ()
    devices: tuple[GpuDevice, ...] = ()


UNKNOWN = GpuInfo("unknown", 0)


def load_nvml() -> Any | None:
    """The ``pynvml`` module of nvidia-ml-py, or None when it is not installed."""
    try:
        import pynvml  # nvidia-ml-py; the "gpu" extra
    except ImportError:
        return None
    return pynvml


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _enumerate(nvml: Any) -> list[tuple[GpuDevice, Any]]:
    """Devices and their handles; NVML must be initialised."""
    found = []
    for index in range(int(nvml.nvmlDeviceGetCount())):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        name = _text(nvml.nvmlDeviceGetName(handle))
        try:
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        except nvml.NVMLError:
            uuid = f"gpu{index}"
        found.append((GpuDevice(index, uuid, name), handle))
    return found


def probe(nvml: Any | None) -> GpuInfo:
    """Initialise NVML, list the GPUs, shut NVML down. Logs one INFO line when there is
    no GPU to report (``nvml`` None means the library is not installed)."""
    if nvml is None:
        logger.info("otel_ai: nvidia-ml-py not installed; no GPU detection and no GPU metrics")
        return UNKNOWN
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - any NVML failure means "no GPU here"
        logger.info("otel_ai: no NVIDIA GPU detected (%s); no GPU metrics", exc)
        return UNKNOWN
    try:
        devices = tuple(device for device, _ in _enumerate(nvml))
    except Exception as exc:  # noqa: BLE001
        logger.info("otel_ai: NVML could not list GPUs (%s); no GPU metrics", exc)
        return UNKNOWN
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
    if not devices:
        logger.info("otel_ai: NVML sees no GPU; no GPU metrics")
        return UNKNOWN
    names = tuple(device.name for device in devices)
    return GpuInfo(names[0], len(names), names, devices)


@functools.lru_cache(maxsize=1)
def detect_gpus() -> GpuInfo:
    """The GPUs of this machine as NVML sees them (cached for the process)."""
    return probe(load_nvml())


@dataclass
class GpuReading:
    """One device's values from one sampling pass; None where the device cannot say."""

    attributes: dict[str, str]
    utilization: float | None = None  # 0..1
    memory_used: int | None = None  # bytes
    memory_total: int | None = None  # bytes
    temperature: float | None = None  # Cel
    power: float | None = None  # W
    energy: float | None = None  # J, since the driver was loaded


@dataclass
class _Device:
    info: GpuDevice
    handle: Any
    attributes: dict[str, str]
    unsupported: set[str] = field(default_factory=set)


class GpuMetrics:
    """An open NVML session with cached device handles; :meth:`read` samples every GPU.

    Open it with :meth:`open`, which returns None (after one INFO line) when there is
    no GPU to watch. A reading NVML cannot give (not supported by the device or the
    driver) is asked for once and then left out; other NVML errors (a GPU fallen off the
    bus) skip that value for the pass and are logged at most every few minutes.
    """

    def __init__(self, nvml: Any, devices: list[tuple[GpuDevice, Any]]) -> None:
        self._nvml = nvml
        self._devices = [
            _Device(
                info,
                handle,
                {
                    semconv.HW_ID: info.uuid,
                    semconv.HW_NAME: f"gpu{info.index}",
                    semconv.HW_MODEL: info.name,
                    semconv.HW_VENDOR: semconv.HW_VENDOR_NVIDIA,
                    semconv.HW_TYPE: semconv.HW_TYPE_GPU,
                },
            )
            for info, handle in devices
        ]
        self._closed = False
        self._lock = threading.Lock()
        self._last_logged: dict[str, float] = {}

    @classmethod
    def open(cls, nvml: Any | None = None) -> GpuMetrics | None:
        """Start an NVML session for the metrics, or None when there is no GPU.

        With ``nvml`` None the installed nvidia-ml-py is used, after the process's cached
        :func:`detect_gpus` says there is a GPU (so "no GPU" is logged once, there).
        """
        if nvml is None:
            if detect_gpus().count == 0:
                return None
            nvml = load_nvml()
            if nvml is None:
                return None
        try:
            nvml.nvmlInit()
        except Exception as exc:  # noqa: BLE001
            logger.info("otel_ai: no NVIDIA GPU detected (%s); no GPU metrics", exc)
            return None
        try:
            devices = _enumerate(nvml)
        except Exception as exc:  # noqa: BLE001
            logger.info("otel_ai: NVML could not list GPUs (%s); no GPU metrics", exc)
            devices = None
        if not devices:
            if devices is not None:
                logger.info("otel_ai: NVML sees no GPU; no GPU metrics")
            try:
                nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
            return None
        return cls(nvml, devices)

    @property
    def devices(self) -> list[GpuDevice]:
        return [device.info for device in self._devices]

    def read(self) -> list[GpuReading]:
        """One pass over every GPU. Never raises for an NVML error."""
        with self._lock:
            if self._closed:
                return []
            nvml = self._nvml
            readings = []
            for device in self._devices:
                reading = GpuReading(device.attributes)
                rates = self._ask(device, "utilization", nvml.nvmlDeviceGetUtilizationRates)
                if rates is not None:
                    reading.utilization = min(max(float(rates.gpu) / 100.0, 0.0), 1.0)
                memory = self._ask(device, "memory", nvml.nvmlDeviceGetMemoryInfo)
                if memory is not None:
                    reading.memory_used = int(memory.used)
                    reading.memory_total = int(memory.total)
                sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
                temperature = self._ask(device, "temperature", nvml.nvmlDeviceGetTemperature, sensor)
                if temperature is not None:
                    reading.temperature = float(temperature)
                milliwatts = self._ask(device, "power", nvml.nvmlDeviceGetPowerUsage)
                if milliwatts is not None:
                    reading.power = float(milliwatts) / 1000.0
                millijoules = self._ask(device, "energy", nvml.nvmlDeviceGetTotalEnergyConsumption)
                if millijoules is not None:
                    reading.energy = float(millijoules) / 1000.0
                readings.append(reading)
            return readings

    def _ask(self, device: _Device, what: str, call: Callable[..., Any], *args: Any) -> Any:
        if what in device.unsupported:
            return None
        try:
            return call(device.handle, *args)
        except self._nvml.NVMLError as exc:
            code = getattr(exc, "value", None)
            not_supported = getattr(self._nvml, "NVML_ERROR_NOT_SUPPORTED", _NVML_ERROR_NOT_SUPPORTED)
            not_found = getattr(self._nvml, "NVML_ERROR_FUNCTION_NOT_FOUND", _NVML_ERROR_FUNCTION_NOT_FOUND)
            if code in (not_supported, not_found):
                device.unsupported.add(what)
                logger.debug("otel_ai: GPU %d does not report %s (%s)", device.info.index, what, exc)
            else:
                self._log_limited(
                    f"{device.info.index}:{what}",
                    "otel_ai: GPU %d: reading %s failed: %s",
                    device.info.index,
                    what,
                    exc,
                )
            return None

    def _log_limited(self, key: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        last = self._last_logged.get(key)
        if last is None or now - last >= _LOG_EVERY_S:
            self._last_logged[key] = now
            logger.warning(message, *args)

    def close(self) -> None:
        """End the NVML session; :meth:`read` returns nothing afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
