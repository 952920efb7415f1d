"""GPU detection through NVML (nvidia-ml-py), optional and lazily imported.

No GPU, no driver or no library means ``GpuInfo("unknown", 0)`` and one INFO line,
never an error.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

logger = logging.getLogger("otel_ai.gpu")


@dataclass(frozen=True)
class GpuInfo:
    name: str
    count: int
    names: tuple[str, ...] = ()


UNKNOWN = GpuInfo("unknown", 0)


@functools.lru_cache(maxsize=1)
def detect_gpus() -> GpuInfo:
    """The GPUs of this machine as NVML sees them (cached for the process)."""
    try:
        import pynvml  # nvidia-ml-py; the "gpu" extra
    except ImportError:
        logger.info("otel_ai: nvidia-ml-py not installed; no GPU detection")
        return UNKNOWN
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - any NVML failure means "no GPU here"
        logger.info("otel_ai: no NVIDIA GPU detected (%s)", exc)
        return UNKNOWN
    try:
        count = pynvml.nvmlDeviceGetCount()
        names = []
        for index in range(count):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(index))
            names.append(name.decode() if isinstance(name, bytes) else str(name))
    except Exception as exc:  # noqa: BLE001
        logger.info("otel_ai: NVML could not list GPUs (%s)", exc)
        return UNKNOWN
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
    if not names:
        return UNKNOWN
    return GpuInfo(names[0], len(names), tuple(names))
