"""Exporters that hand each batch to a durable delivery and return, and batch
processors whose ``force_flush`` waits for that delivery (see :mod:`otel_ai.export.durable`)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.common._aggregation import (
    _get_aggregation,
    _get_temporality,
)
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from .._internal import report_internal_error
from .durable import Delivery
from .forked import quiet_at_fork
from .losses import DROP_UNENCODABLE
from .requests import count_items
from .sanitize import clean_logs, clean_spans

# the batch processors export every second unless OTEL_BSP/BLRP_SCHEDULE_DELAY say
# otherwise (the SDK's 5 s would leave finished nodes unseen, and unspooled, for longer)
DEFAULT_SCHEDULE_DELAY_MS = 1000.0


def schedule_delay_millis(sdk_variable: str) -> float | None:
    """Our default export cadence unless the SDK's own variable is set."""
    return None if os.environ.get(sdk_variable) else DEFAULT_SCHEDULE_DELAY_MS


class DurableSpanExporter(SpanExporter):
    """Spans to the collector through a :class:`Delivery`; returns at once."""

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.delivery.refused is not None:  # nothing to encode for an endpoint that refuses
            self.delivery.refuse_items(len(spans))
            return SpanExportResult.SUCCESS
        try:
            data = encode_spans(clean_spans(spans)).SerializeToString()
        except Exception as exc:  # noqa: BLE001 - a span the encoder cannot take
            report_internal_error("otel_ai.export.delivering.encode_spans", exc)
            self.delivery.drop(DROP_UNENCODABLE, len(spans))
            return SpanExportResult.FAILURE
        self.delivery.submit(data, len(spans))
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.delivery.flush(timeout_millis / 1000)

    def shutdown(self, timeout_millis: float | None = None) -> None:
        self.delivery.shutdown(None if timeout_millis is None else timeout_millis / 1000)


class DurableLogExporter(LogRecordExporter):
    """Log records to the collector through a :class:`Delivery`; returns at once."""

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if self.delivery.refused is not None:
            self.delivery.refuse_items(len(batch))
            return LogRecordExportResult.SUCCESS
        try:
            data = encode_logs(clean_logs(batch)).SerializeToString()
        except Exception as exc:  # noqa: BLE001
            report_internal_error("otel_ai.export.delivering.encode_logs", exc)
            self.delivery.drop(DROP_UNENCODABLE, len(batch))
            return LogRecordExportResult.FAILURE
        self.delivery.submit(data, len(batch))
        return LogRecordExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.delivery.flush(timeout_millis / 1000)

    def shutdown(self, timeout_millis: float | None = None) -> None:
        self.delivery.shutdown(None if timeout_millis is None else timeout_millis / 1000)


class DurableMetricExporter(MetricExporter):
    """Metric points to the collector through a :class:`Delivery`; returns at once."""

    def __init__(self, delivery: Delivery) -> None:
        # the temporality and aggregation the OTLP exporters would use
        # (OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE and friends)
        super().__init__(
            preferred_temporality=_get_temporality(None), preferred_aggregation=_get_aggregation(None)
        )
        self.delivery = delivery

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        try:
            request = encode_metrics(metrics_data)
            items = count_items("metrics", request)
            data = request.SerializeToString() if items else b""
        except Exception as exc:  # noqa: BLE001
            report_internal_error("otel_ai.export.delivering.encode_metrics", exc)
            return MetricExportResult.FAILURE
        if data:
            self.delivery.submit(data, items)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.delivery.flush(timeout_millis / 1000)

    def shutdown(self, timeout_millis: float | None = None, **kwargs: Any) -> None:
        # the SDK's metric reader passes the time left as ``timeout`` (milliseconds)
        millis = kwargs.get("timeout", timeout_millis)
        self.delivery.shutdown(None if millis is None else float(millis) / 1000)


# --------------------------------------------------------------------------- processors


class DeliveringBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor, whose ``force_flush`` also waits for the exporter to
    deliver (the SDK's stops once the exporter has the batches), and which starts no
    thread in a forked child until the child records through it (see :mod:`.forked`)."""

    def __init__(self, span_exporter: SpanExporter, **kwargs: Any) -> None:
        with quiet_at_fork(BatchSpanProcessor):
            super().__init__(span_exporter, **kwargs)
        self._delivering = span_exporter

    def force_flush(self, timeout_millis: int | None = 30000) -> bool:
        deadline = time.monotonic() + (timeout_millis if timeout_millis is not None else 30000) / 1000
        handed = super().force_flush(timeout_millis)
        left = int(max(deadline - time.monotonic(), 0.0) * 1000)
        return bool(handed) and self._delivering.force_flush(left) is not False

    def hand_over(self, timeout_millis: int = 30000) -> bool:
        """The SDK's flush: every span ended so far handed to the exporter, without
        waiting for its delivery."""
        return bool(super().force_flush(timeout_millis))


class DeliveringBatchLogRecordProcessor(BatchLogRecordProcessor):
    """:class:`DeliveringBatchSpanProcessor` for log records."""

    def __init__(self, exporter: LogRecordExporter, **kwargs: Any) -> None:
        with quiet_at_fork(BatchLogRecordProcessor):
            super().__init__(exporter, **kwargs)
        self._delivering = exporter

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        deadline = time.monotonic() + (timeout_millis if timeout_millis is not None else 30000) / 1000
        handed = super().force_flush(timeout_millis)
        left = int(max(deadline - time.monotonic(), 0.0) * 1000)
        return bool(handed) and self._delivering.force_flush(left) is not False

    def hand_over(self, timeout_millis: int = 30000) -> bool:
        """:meth:`DeliveringBatchSpanProcessor.hand_over` for log records."""
        return bool(super().force_flush(timeout_millis))
