"""The embedded default: OTLP/JSON lines files, one per signal per process.

The files are written by the maintained ``opentelemetry-exporter-otlp-json-file``
exporters in the encoding the collector's ``otlpjsonfile`` receiver reads. Names are
``{signal}-{UTC start}-{host}-{pid}.jsonl`` under OTEL_AI_DATA_DIR; a process forked
from a configured parent opens files of its own on its first export.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from opentelemetry.exporter.otlp.common._aggregation import _get_aggregation, _get_temporality
from opentelemetry.exporter.otlp.json.file import FileMetricExporter, FileSpanExporter
from opentelemetry.exporter.otlp.json.file._log_exporter import FileLogExporter
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .losses import DROP_UNWRITABLE, note_lost


class _FileExporter(Protocol):
    def shutdown(self) -> None: ...


_E = TypeVar("_E", bound=_FileExporter)
_R = TypeVar("_R")


def _lost(signal: str, items: int, detail: str = "") -> None:
    note_lost(signal, DROP_UNWRITABLE, items, detail)


def _points(metrics_data: MetricsData) -> int:
    return sum(
        len(getattr(metric.data, "data_points", ()) or ())
        for resource in metrics_data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    )


def signal_file_name(signal: str, pid: int | None = None) -> str:
    """``traces-20261129T231500Z-host-1234.jsonl`` and the like."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:64]
    return f"{signal}-{stamp}-{host}-{os.getpid() if pid is None else pid}.jsonl"


class _Writer(Generic[_E]):
    """One signal's file, written by the wrapped file exporter: opened lazily, and anew in
    a forked child; what cannot be written is counted, never raised."""

    def __init__(self, directory: Path, signal: str, factory: Callable[[Path], _E]) -> None:
        self._directory = directory
        self._signal = signal
        self._factory = factory
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._exporter: _E | None = None
        self.path: Path | None = None

    def get(self) -> _E:
        pid = os.getpid()
        exporter = self._exporter
        if exporter is not None and self._pid == pid:
            return exporter
        with self._lock:
            if self._exporter is None or self._pid != pid:
                self._directory.mkdir(parents=True, exist_ok=True)
                self.path = self._directory / signal_file_name(self._signal, pid)
                # a forked child must not close or write through its parent's file object
                self._exporter = self._factory(self.path)
                self._pid = pid
            return self._exporter

    def opened(self) -> _E | None:
        return self._exporter if self._pid == os.getpid() else None

    def export(self, write: Callable[[_E], _R], items: Callable[[], int], success: _R, failure: _R) -> _R:
        """``write`` through the file exporter; ``items()`` of it are counted as lost when
        the data directory cannot be written or the exporter fails."""
        try:
            result = write(self.get())
        except OSError as exc:  # the data directory cannot be written: counted, not raised
            _lost(self._signal, items(), str(exc))
            return failure
        if result is not success:
            _lost(self._signal, items())
        return result

    def shutdown(self) -> None:
        exporter = self.opened()
        if exporter is not None:
            exporter.shutdown()


class JsonlSpanExporter(SpanExporter):
    """Spans to ``traces-*.jsonl`` in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self._file = _Writer(directory, "traces", FileSpanExporter)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._file.export(
            lambda file: file.export(spans),
            lambda: len(spans),
            SpanExportResult.SUCCESS,
            SpanExportResult.FAILURE,
        )

    def shutdown(self) -> None:
        self._file.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class JsonlLogExporter(LogRecordExporter):
    """Log records to ``logs-*.jsonl`` in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self._file = _Writer(directory, "logs", FileLogExporter)

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        return self._file.export(
            lambda file: file.export(batch),
            lambda: len(batch),
            LogRecordExportResult.SUCCESS,
            LogRecordExportResult.FAILURE,
        )

    def shutdown(self) -> None:
        self._file.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class JsonlMetricExporter(MetricExporter):
    """Metrics to ``metrics-*.jsonl`` in ``directory``."""

    def __init__(self, directory: Path, **kwargs: Any) -> None:
        # the same temporality and aggregation (OTEL_EXPORTER_OTLP_METRICS_* variables)
        # as the OTLP exporters, so files and wire carry the same points
        super().__init__(
            preferred_temporality=_get_temporality(None),
            preferred_aggregation=_get_aggregation(None),
        )
        self._file = _Writer(directory, "metrics", FileMetricExporter)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        return self._file.export(
            lambda file: file.export(metrics_data, timeout_millis=timeout_millis),
            lambda: _points(metrics_data),
            MetricExportResult.SUCCESS,
            MetricExportResult.FAILURE,
        )

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._file.shutdown()
