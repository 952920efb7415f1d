"""Batch processors whose ``force_flush`` waits for the exporter's delivery too (the
durable OTLP exporters of :mod:`otel_ai.export.outbox`; the files are written at once)."""

from __future__ import annotations

import os
import time
from typing import Any

from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from .forked import quiet_at_fork

# the batch processors export every second unless OTEL_BSP/BLRP_SCHEDULE_DELAY say
# otherwise (the SDK's 5 s would leave finished nodes unseen, and unspooled, for longer)
DEFAULT_SCHEDULE_DELAY_MS = 1000.0


def schedule_delay_millis(sdk_variable: str) -> float | None:
    """Our default export cadence unless the SDK's own variable is set."""
    return None if os.environ.get(sdk_variable) else DEFAULT_SCHEDULE_DELAY_MS


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
