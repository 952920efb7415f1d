"""Read OTLP/JSON telemetry back into small, typed, immutable records.

The embedded default of ``otel_ai`` writes telemetry as *OTLP/JSON lines*: one
JSON object per line, each an ``ExportTraceServiceRequest``,
``ExportLogsServiceRequest`` or ``ExportMetricsServiceRequest`` in the
protobuf-JSON mapping used by the OpenTelemetry collector's ``otlpjsonfile``
receiver and ``file`` exporter (and by ``opentelemetry-exporter-otlp-json-file``).
The top-level key of a line says what it carries: ``resourceSpans``,
``resourceLogs`` or ``resourceMetrics``.

This module turns those objects into flat records (:class:`SpanRecord`,
:class:`LogRecordData`, :class:`MetricPoint`) that tests, reports and analysis
code can consume without knowing anything about OTLP.  The same decoder is
used for data that arrived over the wire: convert the protobuf request with
``google.protobuf.json_format.MessageToDict`` and pass the dict to
:func:`spans_from_request` / :func:`logs_from_request` /
:func:`metrics_from_request`.

The decoder is deliberately lenient, because the JSON mapping omits default
values and because two dialects exist in practice:

* OTLP/JSON proper (files, the collector): trace/span ids as lowercase hex,
  enums as integers.
* ``MessageToDict`` output: ids as base64 (the generic ``bytes`` mapping),
  enums as their names (``"STATUS_CODE_ERROR"``, ``"SPAN_KIND_SERVER"``...).

Both are accepted and normalised: ids become lowercase hex (an empty or
all-zero id becomes ``None``), enums become integers or the short names
documented on each field, 64-bit integers given as strings become ``int``.

Reading files never raises on bad content: :func:`read_jsonl` skips (and
counts) lines that are not JSON objects, e.g. the half-written last line of a
process that crashed while exporting.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import string
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "EventRecord",
    "JsonlReader",
    "LinkRecord",
    "LogRecordData",
    "MetricKind",
    "MetricPoint",
    "SpanRecord",
    "StatusCode",
    "Telemetry",
    "decode_any_value",
    "decode_attributes",
    "load_directory",
    "logs_from_request",
    "metrics_from_request",
    "normalize_id",
    "read_jsonl",
    "spans_from_request",
]

StatusCode = Literal["UNSET", "OK", "ERROR"]
"""Span status code as a short name."""

MetricKind = Literal["gauge", "sum", "histogram", "exponential_histogram", "summary"]
"""The OTLP data kind a :class:`MetricPoint` came from."""

#: File-name patterns :func:`load_directory` reads from a directory.
FILE_PATTERNS: tuple[str, ...] = ("traces-*.jsonl", "logs-*.jsonl", "metrics-*.jsonl")

_SPAN_KINDS: dict[str, int] = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
_SPAN_KIND_NAMES: dict[int, str] = {v: k[len("SPAN_KIND_") :] for k, v in _SPAN_KINDS.items()}

_STATUS_CODES: dict[int, StatusCode] = {0: "UNSET", 1: "OK", 2: "ERROR"}

_SEVERITY_NAMES: tuple[str, ...] = (
    "UNSPECIFIED",
    "TRACE", "TRACE2", "TRACE3", "TRACE4",
    "DEBUG", "DEBUG2", "DEBUG3", "DEBUG4",
    "INFO", "INFO2", "INFO3", "INFO4",
    "WARN", "WARN2", "WARN3", "WARN4",
    "ERROR", "ERROR2", "ERROR3", "ERROR4",
    "FATAL", "FATAL2", "FATAL3", "FATAL4",
)  # fmt: skip
_SEVERITIES: dict[str, int] = {f"SEVERITY_NUMBER_{name}": i for i, name in enumerate(_SEVERITY_NAMES)}

_TEMPORALITIES: dict[int, str] = {1: "DELTA", 2: "CUMULATIVE"}

_HEXDIGITS = frozenset(string.hexdigits)


# --------------------------------------------------------------------------- records


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


# --------------------------------------------------------------------------- scalars


def _as_int(value: Any, default: int = 0) -> int:
    """Parse an OTLP integer (JSON number or decimal string); ``default`` on failure."""
    if value is None or isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    try:
        if isinstance(value, float):
            return int(value)
        return int(str(value).strip())
    except (TypeError, ValueError):
        try:
            return int(float(str(value)))
        except (TypeError, ValueError, OverflowError):
            return default


def _as_float(value: Any) -> float | None:
    """Parse an OTLP double (number or ``"NaN"``/``"Infinity"``/``"-Infinity"``)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _as_str(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _as_dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _enum(value: Any, names: Mapping[str, int], prefix: str = "") -> int:
    """Decode an enum given as int, numeric string, full name or short name."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    upper = text.upper()
    if upper in names:
        return names[upper]
    return names.get(prefix + upper, 0)


def normalize_id(value: Any, size: int | None = None) -> str | None:
    """Normalise a trace/span id to lowercase hex.

    Accepts lowercase/uppercase hex (the OTLP/JSON form) and standard or
    URL-safe base64 (the generic protobuf-JSON ``bytes`` form produced by
    ``MessageToDict``).  ``size`` is the expected length in bytes (16 for
    trace ids, 8 for span ids); it is used to tell the two encodings apart.

    Returns ``None`` for a missing, empty or all-zero (invalid) id.  A value
    that is neither valid hex nor base64 is returned unchanged rather than
    raising.
    """
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        as_hex = bytes(value).hex()
        return None if not as_hex or set(as_hex) == {"0"} else as_hex
    text = str(value).strip()
    if not text:
        return None
    is_hex = all(c in _HEXDIGITS for c in text) and len(text) % 2 == 0
    result: str | None
    if is_hex and (size is None or len(text) == 2 * size):
        result = text.lower()
    else:
        result = None
        for decoder in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                raw = decoder(text + "=" * (-len(text) % 4))
            except (binascii.Error, ValueError):
                continue
            if raw and (size is None or len(raw) == size):
                result = raw.hex()
                break
        if result is None:
            result = text.lower() if is_hex else text
    return None if set(result) == {"0"} else result


# --------------------------------------------------------------------------- AnyValue


def decode_any_value(v: Any) -> Any:
    """Decode an OTLP/JSON ``AnyValue`` object into a plain Python value.

    * ``stringValue`` -> ``str``; ``boolValue`` -> ``bool``
    * ``intValue`` (JSON number or decimal string) -> ``int``
    * ``doubleValue`` -> ``float`` (``"NaN"``, ``"Infinity"`` understood)
    * ``bytesValue`` (base64) -> ``bytes``
    * ``arrayValue`` -> ``list``; ``kvlistValue`` -> ``dict`` (last key wins)
    * an empty ``AnyValue`` (``{}``) or ``None`` -> ``None``

    Anything that is not a mapping is returned unchanged, so a caller may pass
    already-plain values through.
    """
    if v is None:
        return None
    if not isinstance(v, Mapping):
        return v
    if "stringValue" in v:
        return _as_str(v["stringValue"])
    if "intValue" in v:
        return _as_int(v["intValue"])
    if "doubleValue" in v:
        parsed = _as_float(v["doubleValue"])
        return math.nan if parsed is None else parsed
    if "boolValue" in v:
        raw = v["boolValue"]
        return raw if isinstance(raw, bool) else str(raw).lower() == "true"
    if "arrayValue" in v:
        return [decode_any_value(item) for item in _as_list(_as_dict(v["arrayValue"]).get("values"))]
    if "kvlistValue" in v:
        return decode_attributes(_as_dict(v["kvlistValue"]).get("values"))
    if "bytesValue" in v:
        raw = v["bytesValue"]
        if isinstance(raw, (bytes, bytearray)):
            return bytes(raw)
        text = _as_str(raw)
        try:
            return base64.b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            try:
                return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            except (binascii.Error, ValueError):
                return text.encode()
    return None


def decode_attributes(items: Any) -> dict[str, Any]:
    """Decode a list of OTLP/JSON ``KeyValue`` objects into a dict.

    Entries without a key are ignored; for duplicate keys the last one wins.
    """
    result: dict[str, Any] = {}
    for item in _as_list(items):
        if not isinstance(item, Mapping) or "key" not in item:
            continue
        result[_as_str(item["key"])] = decode_any_value(item.get("value"))
    return result


def _scope_of(scoped: Mapping[str, Any]) -> tuple[str, str]:
    scope = _as_dict(scoped.get("scope"))
    return _as_str(scope.get("name")), _as_str(scope.get("version"))


def _iter_scoped(
    obj: Mapping[str, Any], resource_key: str, scope_key: str, items_key: str
) -> Iterator[tuple[dict[str, Any], str, str, Mapping[str, Any]]]:
    """Yield ``(resource, scope_name, scope_version, item)`` for every item."""
    for resource_block in _as_list(_as_dict(obj).get(resource_key)):
        if not isinstance(resource_block, Mapping):
            continue
        resource = decode_attributes(_as_dict(resource_block.get("resource")).get("attributes"))
        for scoped in _as_list(resource_block.get(scope_key)):
            if not isinstance(scoped, Mapping):
                continue
            scope, version = _scope_of(scoped)
            for item in _as_list(scoped.get(items_key)):
                if isinstance(item, Mapping):
                    yield resource, scope, version, item


# --------------------------------------------------------------------------- spans


def _status_code(value: Any) -> StatusCode:
    if value is None:
        return "UNSET"
    if isinstance(value, int) and not isinstance(value, bool):
        return _STATUS_CODES.get(value, "UNSET")
    text = str(value).strip().upper()
    if text.isdigit():
        return _STATUS_CODES.get(int(text), "UNSET")
    text = text.removeprefix("STATUS_CODE_")
    return text if text in ("OK", "ERROR") else "UNSET"  # type: ignore[return-value]


def spans_from_request(obj: Mapping[str, Any]) -> list[SpanRecord]:
    """Decode an ``ExportTraceServiceRequest`` (OTLP/JSON dict) into span records.

    Unknown or missing optional fields fall back to their protobuf defaults;
    malformed entries are skipped rather than raising.
    """
    records: list[SpanRecord] = []
    for resource, scope, version, span in _iter_scoped(obj, "resourceSpans", "scopeSpans", "spans"):
        status = _as_dict(span.get("status"))
        records.append(
            SpanRecord(
                trace_id=normalize_id(span.get("traceId"), 16) or "",
                span_id=normalize_id(span.get("spanId"), 8) or "",
                parent_span_id=normalize_id(span.get("parentSpanId"), 8),
                name=_as_str(span.get("name")),
                kind=_enum(span.get("kind"), _SPAN_KINDS, "SPAN_KIND_"),
                start_ns=_as_int(span.get("startTimeUnixNano")),
                end_ns=_as_int(span.get("endTimeUnixNano")),
                attributes=decode_attributes(span.get("attributes")),
                events=[
                    EventRecord(
                        name=_as_str(event.get("name")),
                        time_ns=_as_int(event.get("timeUnixNano")),
                        attributes=decode_attributes(event.get("attributes")),
                    )
                    for event in _as_list(span.get("events"))
                    if isinstance(event, Mapping)
                ],
                links=[
                    LinkRecord(
                        trace_id=normalize_id(link.get("traceId"), 16),
                        span_id=normalize_id(link.get("spanId"), 8),
                        attributes=decode_attributes(link.get("attributes")),
                        trace_state=_as_str(link.get("traceState")),
                    )
                    for link in _as_list(span.get("links"))
                    if isinstance(link, Mapping)
                ],
                status_code=_status_code(status.get("code")),
                status_message=_as_str(status.get("message")),
                resource=resource,
                scope=scope,
                scope_version=version,
                trace_state=_as_str(span.get("traceState")),
                flags=_as_int(span.get("flags")),
            )
        )
    return records


# --------------------------------------------------------------------------- logs


def logs_from_request(obj: Mapping[str, Any]) -> list[LogRecordData]:
    """Decode an ``ExportLogsServiceRequest`` (OTLP/JSON dict) into log records."""
    records: list[LogRecordData] = []
    for resource, scope, version, log in _iter_scoped(obj, "resourceLogs", "scopeLogs", "logRecords"):
        event_name = log.get("eventName")
        records.append(
            LogRecordData(
                time_ns=_as_int(log.get("timeUnixNano")),
                observed_ns=_as_int(log.get("observedTimeUnixNano")),
                severity_number=_enum(log.get("severityNumber"), _SEVERITIES, "SEVERITY_NUMBER_"),
                severity_text=_as_str(log.get("severityText")),
                body=decode_any_value(log.get("body")),
                attributes=decode_attributes(log.get("attributes")),
                event_name=_as_str(event_name) or None,
                trace_id=normalize_id(log.get("traceId"), 16),
                span_id=normalize_id(log.get("spanId"), 8),
                resource=resource,
                scope=scope,
                scope_version=version,
                flags=_as_int(log.get("flags")),
            )
        )
    return records


# --------------------------------------------------------------------------- metrics


def _temporality(value: Any) -> str | None:
    code = _enum(
        value,
        {"AGGREGATION_TEMPORALITY_DELTA": 1, "AGGREGATION_TEMPORALITY_CUMULATIVE": 2},
        "AGGREGATION_TEMPORALITY_",
    )
    return _TEMPORALITIES.get(code)


def _number_value(point: Mapping[str, Any]) -> float | int | None:
    if "asInt" in point:
        return _as_int(point["asInt"])
    if "asDouble" in point:
        parsed = _as_float(point["asDouble"])
        return math.nan if parsed is None else parsed
    return None


def _int_list(values: Any) -> list[int]:
    return [_as_int(v) for v in _as_list(values)]


def _float_list(values: Any) -> list[float]:
    return [f if (f := _as_float(v)) is not None else math.nan for v in _as_list(values)]


def metrics_from_request(obj: Mapping[str, Any]) -> list[MetricPoint]:
    """Decode an ``ExportMetricsServiceRequest`` (OTLP/JSON dict) into metric points.

    One :class:`MetricPoint` is produced per data point.  A metric whose data
    kind is unknown (or missing) yields no points.
    """
    points: list[MetricPoint] = []
    for resource, scope, version, metric in _iter_scoped(obj, "resourceMetrics", "scopeMetrics", "metrics"):
        common: dict[str, Any] = {
            "name": _as_str(metric.get("name")),
            "unit": _as_str(metric.get("unit")),
            "description": _as_str(metric.get("description")),
            "resource": resource,
            "scope": scope,
            "scope_version": version,
        }
        for kind, key in (
            ("gauge", "gauge"),
            ("sum", "sum"),
            ("histogram", "histogram"),
            ("exponential_histogram", "exponentialHistogram"),
            ("summary", "summary"),
        ):
            if key not in metric:
                continue
            data = _as_dict(metric.get(key))
            temporality = _temporality(data.get("aggregationTemporality"))
            for point in _as_list(data.get("dataPoints")):
                if not isinstance(point, Mapping):
                    continue
                base: dict[str, Any] = dict(
                    common,
                    kind=kind,
                    time_ns=_as_int(point.get("timeUnixNano")),
                    start_time_ns=_as_int(point.get("startTimeUnixNano")),
                    attributes=decode_attributes(point.get("attributes")),
                    flags=_as_int(point.get("flags")),
                )
                if kind in ("gauge", "sum"):
                    extra: dict[str, Any] = {"value": _number_value(point)}
                    if kind == "sum":
                        extra["temporality"] = temporality
                        extra["is_monotonic"] = bool(data.get("isMonotonic", False))
                elif kind == "histogram":
                    extra = {
                        "count": _as_int(point.get("count")),
                        "sum": _as_float(point.get("sum")),
                        "min": _as_float(point.get("min")),
                        "max": _as_float(point.get("max")),
                        "bucket_counts": _int_list(point.get("bucketCounts")),
                        "explicit_bounds": _float_list(point.get("explicitBounds")),
                        "temporality": temporality,
                    }
                elif kind == "exponential_histogram":
                    positive = _as_dict(point.get("positive"))
                    negative = _as_dict(point.get("negative"))
                    extra = {
                        "count": _as_int(point.get("count")),
                        "sum": _as_float(point.get("sum")),
                        "min": _as_float(point.get("min")),
                        "max": _as_float(point.get("max")),
                        "scale": _as_int(point.get("scale")),
                        "zero_count": _as_int(point.get("zeroCount")),
                        "positive_offset": _as_int(positive.get("offset")),
                        "positive_bucket_counts": _int_list(positive.get("bucketCounts")),
                        "negative_offset": _as_int(negative.get("offset")),
                        "negative_bucket_counts": _int_list(negative.get("bucketCounts")),
                        "temporality": temporality,
                    }
                else:  # summary
                    extra = {
                        "count": _as_int(point.get("count")),
                        "sum": _as_float(point.get("sum")) or 0.0,
                        "quantiles": [
                            (_as_float(q.get("quantile")) or 0.0, _as_float(q.get("value")) or 0.0)
                            for q in _as_list(point.get("quantileValues"))
                            if isinstance(q, Mapping)
                        ],
                    }
                points.append(MetricPoint(**base, **extra))
    return points


# --------------------------------------------------------------------------- files


class JsonlReader(Iterator[dict[str, Any]]):
    """Stream the JSON objects of a JSON-lines file, skipping bad lines.

    Iterating yields one ``dict`` per line that parses as a JSON *object*.
    Blank lines are ignored silently.  A line that is not valid UTF-8/JSON, or
    is JSON but not an object (e.g. the truncated last line written by a
    process that crashed mid-export), is skipped and counted -- iteration never
    raises for bad content.  Opening a missing file does raise
    ``FileNotFoundError`` (on the first ``next()``).

    After (or during) iteration the counters tell what happened:

    Attributes:
        path: The file being read.
        lines: Non-blank lines seen so far.
        records: Lines yielded as objects so far.
        skipped: Lines skipped as unparseable so far.
        skipped_line_numbers: 1-based line numbers of the skipped lines.

    The file is closed when iteration finishes, on :meth:`close`, or when used
    as a context manager and the block exits.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lines = 0
        self.records = 0
        self.skipped = 0
        self.skipped_line_numbers: list[int] = []
        self._gen = self._generate()

    def _generate(self) -> Generator[dict[str, Any], None, None]:
        with open(self.path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                self.lines += 1
                try:
                    obj = json.loads(raw)
                except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError
                    obj = None
                if not isinstance(obj, dict):
                    self.skipped += 1
                    self.skipped_line_numbers.append(number)
                    continue
                self.records += 1
                yield obj

    def __iter__(self) -> JsonlReader:
        return self

    def __next__(self) -> dict[str, Any]:
        return next(self._gen)

    def close(self) -> None:
        """Stop reading and close the file."""
        self._gen.close()

    def __enter__(self) -> JsonlReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_jsonl(path: str | os.PathLike[str]) -> JsonlReader:
    """Stream the JSON objects of ``path`` line by line.

    Returns a :class:`JsonlReader`, an iterator of ``dict`` whose ``skipped``
    attribute counts the lines that were not JSON objects::

        reader = read_jsonl("traces-1.jsonl")
        for obj in reader:
            ...
        print(reader.skipped)
    """
    return JsonlReader(path)


@dataclass
class Telemetry:
    """Decoded spans, logs and metric points, e.g. of one run directory.

    Attributes:
        spans: Span records, in file/line order.
        logs: Log records, in file/line order.
        metrics: Metric points, in file/line order.
        skipped_lines: Lines that could not be parsed (see :class:`JsonlReader`).
        files: Files that were read, in reading order.
    """

    spans: list[SpanRecord] = field(default_factory=list)
    logs: list[LogRecordData] = field(default_factory=list)
    metrics: list[MetricPoint] = field(default_factory=list)
    skipped_lines: int = 0
    files: list[Path] = field(default_factory=list)

    def extend(self, other: Telemetry) -> Telemetry:
        """Append everything from ``other`` to this object; returns ``self``."""
        self.spans.extend(other.spans)
        self.logs.extend(other.logs)
        self.metrics.extend(other.metrics)
        self.skipped_lines += other.skipped_lines
        self.files.extend(other.files)
        return self

    def add_request(self, obj: Mapping[str, Any]) -> None:
        """Decode one OTLP/JSON export request of any signal and append it.

        The signal is recognised by the top-level key(s) present
        (``resourceSpans``, ``resourceLogs``, ``resourceMetrics``); an object
        with none of them contributes nothing.
        """
        if "resourceSpans" in obj:
            self.spans.extend(spans_from_request(obj))
        if "resourceLogs" in obj:
            self.logs.extend(logs_from_request(obj))
        if "resourceMetrics" in obj:
            self.metrics.extend(metrics_from_request(obj))

    @classmethod
    def from_requests(cls, objs: Iterable[Mapping[str, Any]]) -> Telemetry:
        """Build a :class:`Telemetry` from OTLP/JSON export request dicts."""
        result = cls()
        for obj in objs:
            result.add_request(obj)
        return result

    def spans_named(self, name: str) -> list[SpanRecord]:
        """All spans called ``name``."""
        return [span for span in self.spans if span.name == name]

    def metric_points(self, name: str) -> list[MetricPoint]:
        """All points of the metric called ``name``."""
        return [point for point in self.metrics if point.name == name]


def _load_file(path: Path) -> Telemetry:
    result = Telemetry(files=[path])
    with read_jsonl(path) as reader:
        for obj in reader:
            result.add_request(obj)
    result.skipped_lines = reader.skipped
    return result


def load_directory(path: str | os.PathLike[str]) -> Telemetry:
    """Load the OTLP/JSON telemetry of a run directory or of a single file.

    For a directory, every ``traces-*.jsonl``, ``logs-*.jsonl`` and
    ``metrics-*.jsonl`` file directly inside it (not recursively) is read, in
    sorted name order per pattern.  For a file, just that file is read.  In
    both cases each line is dispatched by its top-level key, not by the file
    name, so a file mixing signals is fine.  Unparseable lines are skipped and
    counted in :attr:`Telemetry.skipped_lines`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    root = Path(path)
    if root.is_dir():
        result = Telemetry()
        seen: set[Path] = set()
        for pattern in FILE_PATTERNS:
            for file in sorted(root.glob(pattern)):
                if file in seen or not file.is_file():
                    continue
                seen.add(file)
                result.extend(_load_file(file))
        return result
    if not root.exists():
        raise FileNotFoundError(f"no such file or directory: {root}")
    return _load_file(root)
