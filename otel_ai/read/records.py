"""The records a run's telemetry is read back into: small, typed, immutable.

:class:`SpanRecord`, :class:`LogRecordData` and :class:`MetricPoint` are flat: each
carries its resource and instrumentation scope, so tests, reports and analysis code
consume them without knowing anything about OTLP. :mod:`otel_ai.read.otlp_json` makes
them from OTLP/JSON and from protobuf requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "EventRecord",
    "LinkRecord",
    "LogRecordData",
    "MetricKind",
    "MetricPoint",
    "SpanRecord",
    "StatusCode",
]

StatusCode = Literal["UNSET", "OK", "ERROR"]
"""Span status code as a short name."""

MetricKind = Literal["gauge", "sum", "histogram", "exponential_histogram", "summary"]
"""The OTLP data kind a :class:`MetricPoint` came from."""

_SPAN_KIND_NAMES: dict[int, str] = {
    0: "UNSPECIFIED",
    1: "INTERNAL",
    2: "SERVER",
    3: "CLIENT",
    4: "PRODUCER",
    5: "CONSUMER",
}


@dataclass(frozen=True)
class EventRecord:
    """A span event.

    Attributes:
        name: Event name.
        time_ns: Event time, nanoseconds since the Unix epoch (0 if absent).
        attributes: Decoded event attributes.
    """

    name: str
    time_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LinkRecord:
    """A link from a span to another span context.

    Attributes:
        trace_id: Linked trace id, lowercase hex (``None`` if missing/invalid).
        span_id: Linked span id, lowercase hex (``None`` if missing/invalid).
        attributes: Decoded link attributes.
        trace_state: W3C trace state of the link, ``""`` if none.
    """

    trace_id: str | None
    span_id: str | None
    attributes: dict[str, Any] = field(default_factory=dict)
    trace_state: str = ""


@dataclass(frozen=True)
class SpanRecord:
    """One finished span, flattened together with its resource and scope.

    Attributes:
        trace_id: Trace id, 32 lowercase hex characters.
        span_id: Span id, 16 lowercase hex characters.
        parent_span_id: Parent span id (hex) or ``None`` for a root span.
        name: Span name.
        kind: OTLP span kind number (0 unspecified, 1 internal, 2 server,
            3 client, 4 producer, 5 consumer).  Note that this is the OTLP
            numbering, which differs from the Python SDK's ``SpanKind`` enum
            values.
        start_ns: Start time, nanoseconds since the Unix epoch.
        end_ns: End time, nanoseconds since the Unix epoch.
        attributes: Decoded span attributes.
        events: Span events, in recorded order.
        links: Span links, in recorded order.
        status_code: ``"UNSET"``, ``"OK"`` or ``"ERROR"``.
        status_message: Status description, ``""`` if none.
        resource: Decoded resource attributes.
        scope: Instrumentation scope name (``""`` if none).
        scope_version: Instrumentation scope version (``""`` if none).
        trace_state: W3C trace state, ``""`` if none.
        flags: OTLP span flags (trace flags in the low byte), 0 if absent.
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[EventRecord]
    links: list[LinkRecord]
    status_code: StatusCode
    status_message: str
    resource: dict[str, Any]
    scope: str
    scope_version: str = ""
    trace_state: str = ""
    flags: int = 0

    @property
    def duration_s(self) -> float:
        """Span duration in seconds (never negative)."""
        return max(0, self.end_ns - self.start_ns) / 1e9

    @property
    def is_root(self) -> bool:
        """``True`` when the span has no parent."""
        return self.parent_span_id is None

    @property
    def kind_name(self) -> str:
        """Span kind as a short name (``"INTERNAL"``, ``"SERVER"``, ...)."""
        return _SPAN_KIND_NAMES.get(self.kind, str(self.kind))


@dataclass(frozen=True)
class LogRecordData:
    """One log record (or event), flattened together with resource and scope.

    Attributes:
        time_ns: Time of the event, nanoseconds since the epoch; 0 if unset.
        observed_ns: Time the SDK observed the record; 0 if unset.
        severity_number: OTLP severity number (0 unspecified, 9 INFO,
            13 WARN, 17 ERROR, ...).
        severity_text: Severity text as given by the emitter, ``""`` if none.
        body: Decoded body (str, int, float, bool, bytes, list, dict or None).
        attributes: Decoded attributes.
        event_name: Event name (OTLP ``eventName``), ``None`` if not an event.
        trace_id: Trace id of the active span (hex) or ``None``.
        span_id: Span id of the active span (hex) or ``None``.
        resource: Decoded resource attributes.
        scope: Instrumentation scope name.
        scope_version: Instrumentation scope version.
        flags: OTLP log record flags (trace flags), 0 if absent.
    """

    time_ns: int
    observed_ns: int
    severity_number: int
    severity_text: str
    body: Any
    attributes: dict[str, Any]
    event_name: str | None
    trace_id: str | None
    span_id: str | None
    resource: dict[str, Any]
    scope: str
    scope_version: str = ""
    flags: int = 0

    @property
    def effective_time_ns(self) -> int:
        """``time_ns`` if set, otherwise ``observed_ns`` (the spec's fallback)."""
        return self.time_ns or self.observed_ns


@dataclass(frozen=True)
class MetricPoint:
    """One data point of one metric, flattened with its metric, resource and scope.

    Fields that do not apply to a point's ``kind`` are ``None`` (or empty).

    Attributes:
        name: Metric name.
        unit: Metric unit, ``""`` if none.
        description: Metric description, ``""`` if none.
        kind: ``"gauge"``, ``"sum"``, ``"histogram"``,
            ``"exponential_histogram"`` or ``"summary"``.
        time_ns: Point timestamp, nanoseconds since the epoch.
        attributes: Decoded point attributes.
        value: Gauge/sum value (``int`` for ``asInt``, ``float`` for
            ``asDouble``); ``None`` for other kinds or a point without value.
        count: Histogram/summary observation count.
        sum: Histogram/summary sum, ``None`` if not recorded.
        min: Histogram minimum, ``None`` if not recorded.
        max: Histogram maximum, ``None`` if not recorded.
        bucket_counts: Explicit-bucket histogram counts (``len(bounds) + 1``).
        explicit_bounds: Explicit-bucket histogram upper bounds.
        resource: Decoded resource attributes.
        scope: Instrumentation scope name.
        scope_version: Instrumentation scope version.
        start_time_ns: Start of the aggregation window, 0 if absent.
        temporality: ``"DELTA"`` / ``"CUMULATIVE"`` for sums and histograms,
            ``None`` otherwise (or when unspecified).
        is_monotonic: For sums, whether the sum is monotonic; ``None`` otherwise.
        flags: OTLP data point flags (1 = no recorded value).
        scale: Exponential histogram scale.
        zero_count: Exponential histogram zero bucket count.
        positive_offset: Exponential histogram positive bucket offset.
        positive_bucket_counts: Exponential histogram positive bucket counts.
        negative_offset: Exponential histogram negative bucket offset.
        negative_bucket_counts: Exponential histogram negative bucket counts.
        quantiles: Summary ``(quantile, value)`` pairs.
    """

    name: str
    unit: str
    description: str
    kind: MetricKind
    time_ns: int = 0
    attributes: dict[str, Any] = field(default_factory=dict)
    value: float | int | None = None
    count: int | None = None
    sum: float | None = None
    min: float | None = None
    max: float | None = None
    bucket_counts: list[int] = field(default_factory=list)
    explicit_bounds: list[float] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""
    scope_version: str = ""
    start_time_ns: int = 0
    temporality: str | None = None
    is_monotonic: bool | None = None
    flags: int = 0
    scale: int | None = None
    zero_count: int | None = None
    positive_offset: int | None = None
    positive_bucket_counts: list[int] = field(default_factory=list)
    negative_offset: int | None = None
    negative_bucket_counts: list[int] = field(default_factory=list)
    quantiles: list[tuple[float, float]] = field(default_factory=list)
