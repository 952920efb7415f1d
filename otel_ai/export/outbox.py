"""The OTLP signals of one pipeline: a delivery each, one spool, one bound, one tally, and
the exporters that hand each batch to its delivery and return (imported only where a
signal goes over OTLP: the embedded default spares every process that emits the 60 ms of
the transport, the spool and protobuf)."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry._logs import Logger, SeverityNumber
from opentelemetry.exporter.otlp.common._aggregation import _get_aggregation, _get_temporality
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .. import semconv
from .._internal import report_internal_error
from ..config import SIGNALS, Settings
from ..redaction import default_redactor
from .durable import Delivery, Entry
from .losses import DROP_REFUSED, DROP_SPOOL_FULL, DROP_UNENCODABLE, WARN_EVERY_S, count_dropped
from .requests import count_items
from .sanitize import clean_logs, clean_spans
from .spool import OwnSpool, directory_bytes
from .transport import Sender, make_sender, target_for

logger = logging.getLogger("otel_ai")

_DISK_RESCAN_S = 10.0


class Outbox:
    """The OTLP signals of one pipeline: a :class:`Delivery` each, one spool directory,
    one lock, one bound, one tally of what was dropped."""

    def __init__(
        self,
        settings: Settings,
        senders: Mapping[str, Sender],
        telemetry: Callable[[], tuple[Meter, Logger] | None] = lambda: None,
        channel: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.settings = settings
        # the pipeline's meter and logger, for reporting losses, and the wrapper's channel
        # a child of ``otel-ai run`` inherited (a refusal is said once per run): handed down
        self.telemetry = telemetry
        self.channel = channel
        self.cond = threading.Condition(threading.Lock())
        self.max_request_bytes = settings.max_request_bytes
        self.max_spool_bytes = settings.spool_max_bytes
        # a URL may hold a password (user:password@host): not onto disk either
        info = {
            "endpoints": {
                signal: default_redactor().redact(sender.endpoint) for signal, sender in senders.items()
            }
        }
        self.spool = OwnSpool(settings.data_dir, info)
        self.disk_bytes = 0
        self._others_bytes: int | None = None
        self._others_at = 0.0
        self.dropped: Counter[tuple[str, str]] = Counter()
        self._unreported: Counter[tuple[str, str]] = Counter()
        self._last_warning: dict[str, float] = {}
        self._instrument: Any = None
        self._released = False
        self.deliveries = {signal: Delivery(self, signal, sender) for signal, sender in senders.items()}

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        telemetry: Callable[[], tuple[Meter, Logger] | None] = lambda: None,
        channel: Callable[[], str | None] = lambda: None,
    ) -> Outbox | None:
        senders = {}
        for signal in SIGNALS:
            target = target_for(signal, settings)
            if target is not None:
                senders[signal] = make_sender(target)
        return cls(settings, senders, telemetry, channel) if senders else None

    def exporter(self, signal: str) -> Any:
        delivery = self.deliveries.get(signal)
        if delivery is None:
            return None
        return {"traces": DurableSpanExporter, "logs": DurableLogExporter, "metrics": DurableMetricExporter}[
            signal
        ](delivery)

    def secure(self) -> None:
        """Every signal's undelivered requests onto disk (:meth:`Delivery.secure`)."""
        for delivery in self.deliveries.values():
            delivery.secure()

    # -- the bound ----------------------------------------------------------------------
    def _others(self) -> int:
        now = time.monotonic()
        if self._others_bytes is None or now - self._others_at > _DISK_RESCAN_S:
            self._others_bytes = directory_bytes(self.spool.root, exclude=self.spool.directory)
            self._others_at = now
        return self._others_bytes

    def enforce_bound(self) -> None:
        """Drop the oldest spooled requests until the spool fits its bound."""
        others = self._others()
        victims: list[Path] = []
        with self.cond:
            while self.disk_bytes + others > self.max_spool_bytes:
                victim: tuple[Delivery, Entry] | None = None
                for delivery in self.deliveries.values():
                    for entry in delivery.pending:
                        if entry.path is not None and entry is not delivery.inflight:
                            if victim is None or entry.key < victim[1].key:
                                victim = (delivery, entry)
                            break
                if victim is None:
                    break
                delivery, entry = victim
                delivery.pending.remove(entry)
                entry.removed = True
                self.disk_bytes -= entry.size
                assert entry.path is not None
                victims.append(entry.path)
                self.note_drop(delivery.signal, DROP_SPOOL_FULL, entry.items)
            self.cond.notify_all()
        for path in victims:
            path.unlink(missing_ok=True)

    # -- what was dropped -----------------------------------------------------------------
    def note_drop(self, signal: str, reason: str, items: int) -> None:
        """Count ``items`` dropped (call with ``cond`` held or not; Counter updates are
        atomic enough under the GIL for a tally)."""
        if items <= 0:
            return
        self.dropped[(signal, reason)] += items
        self._unreported[(signal, reason)] += items
        count_dropped(signal, reason, items)
        now = time.monotonic()
        if now - self._last_warning.get(reason, -WARN_EVERY_S) >= WARN_EVERY_S:
            self._last_warning[reason] = now
            logger.warning(
                "otel_ai: dropped %d %s (%s); reported once delivery resumes", items, signal, reason
            )

    def note_refused(self, signal: str, items: int) -> None:
        """Count ``items`` of a signal the endpoint refuses for good: in the
        ``ai.telemetry.dropped`` metric, without a warning or WARN record each time (the
        refusal was said once; a WARN record may itself be of the refused signal)."""
        if items <= 0:
            return
        self.dropped[(signal, DROP_REFUSED)] += items
        count_dropped(signal, DROP_REFUSED, items)

    def observe_drops(self) -> None:
        """Create the ``ai.telemetry.dropped`` counter now (report_drops creates it when
        there are WARN records to write; a refusal writes none)."""
        if self._instrument is not None:
            return
        try:
            telemetry = self.telemetry()
            if telemetry is None:
                return
            self._instrument = telemetry[0].create_observable_counter(
                semconv.TELEMETRY_DROPPED,
                callbacks=[self._observe],
                unit="{item}",
                description="Spans, log records and metric points otel_ai could not deliver",
            )
        except Exception as exc:  # noqa: BLE001 - counting must not stop delivery
            report_internal_error("otel_ai.export.outbox.observe_drops", exc)

    def report_drops(self) -> None:
        """The ``ai.telemetry.dropped`` metric and WARN record for drops not yet reported."""
        with self.cond:
            pending = +self._unreported
            self._unreported.clear()
        if not pending:
            return
        try:
            telemetry = self.telemetry()
            if telemetry is None:
                return
            meter, own_logger = telemetry
            if self._instrument is None:
                self._instrument = meter.create_observable_counter(
                    semconv.TELEMETRY_DROPPED,
                    callbacks=[self._observe],
                    unit="{item}",
                    description="Spans, log records and metric points otel_ai could not deliver",
                )
            for (signal, reason), items in sorted(pending.items()):
                attributes: dict[str, Any] = {
                    semconv.EVENT_NAME: semconv.TELEMETRY_DROPPED,
                    semconv.TELEMETRY_SIGNAL: signal,
                    semconv.TELEMETRY_DROP_REASON: reason,
                    semconv.TELEMETRY_DROPPED_ITEMS: items,
                }
                if self.settings.run_id:
                    attributes[semconv.RUN_ID] = self.settings.run_id
                own_logger.emit(
                    timestamp=time.time_ns(),
                    severity_number=SeverityNumber.WARN,
                    severity_text="WARN",
                    body=f"otel_ai dropped {items} {signal} ({reason}) it could not deliver",
                    attributes=attributes,
                    event_name=semconv.TELEMETRY_DROPPED,
                )
        except Exception as exc:  # noqa: BLE001 - reporting must not stop delivery
            report_internal_error("otel_ai.export.outbox.report_drops", exc)

    def _observe(self, options: CallbackOptions) -> list[Observation]:
        return [
            Observation(count, {semconv.TELEMETRY_SIGNAL: signal, semconv.TELEMETRY_DROP_REASON: reason})
            for (signal, reason), count in list(self.dropped.items())
        ]

    # -- end --------------------------------------------------------------------------------
    def release_when_done(self) -> None:
        """Called when a delivery has shut down and when its thread ends: after the last
        of these (nothing here writes or sends any more), the spool directory is
        unlocked for a recoverer to take, or removed when empty."""
        with self.cond:
            if self._released or not all(d.shut_down and d.thread_done for d in self.deliveries.values()):
                return
            self._released = True
        self.spool.close()


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
            report_internal_error("otel_ai.export.outbox.encode_spans", exc)
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
            report_internal_error("otel_ai.export.outbox.encode_logs", exc)
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
            report_internal_error("otel_ai.export.outbox.encode_metrics", exc)
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
