"""Decode OTLP/JSON export requests into :mod:`otel_ai.read.records`.

The embedded default of ``otel_ai`` writes telemetry as *OTLP/JSON lines*: one JSON
object per line, each an ``ExportTraceServiceRequest``, ``ExportLogsServiceRequest`` or
``ExportMetricsServiceRequest`` in the protobuf JSON mapping, as the OpenTelemetry
collector's ``otlpjsonfile`` receiver and ``file`` exporter read and write it. The
top-level key of a line says what it carries: ``resourceSpans``, ``resourceLogs`` or
``resourceMetrics``. Jaeger's query API answers in the same encoding.

A line is read in one of two ways, both made from opentelemetry-proto's message
descriptors, and the records are made alike from either:

* as written by an OTLP/JSON exporter (the embedded default's, a collector's): converted
  whole by ``msgspec`` into the structs of :mod:`otel_ai.read.otlp_structs`, in C;
* anything else (an id in base64, an enum by name, a piece of the wrong type): parsed by
  protobuf's own JSON mapping (``google.protobuf.json_format``) into opentelemetry-proto's
  message classes, piece by piece. Two things differ between OTLP/JSON and that generic
  mapping, and are bridged before parsing, led by the message descriptors:

  - ids (``traceId``, ``spanId``, ``parentSpanId``): OTLP/JSON writes them as hex, the
    generic mapping as base64 (``MessageToDict`` output). Both are accepted.
  - enums: integers, full names (``"STATUS_CODE_ERROR"``) or short ones (``"ERROR"``).

The decoder never raises on bad content: a request that does not parse whole is parsed
piece by piece, and what still does not parse (a span that is not an object, a time that
is not a number) is left out, the rest kept. Ids become lowercase hex (an empty or
all-zero id ``None``), 64-bit integers given as strings ``int``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.json_format import ParseDict, ParseError
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValueList

from . import otlp_structs
from .records import EventRecord, LinkRecord, LogRecordData, MetricKind, MetricPoint, SpanRecord, StatusCode

__all__ = [
    "Telemetry",
    "decode_any_value",
    "decode_attributes",
    "logs_from_message",
    "logs_from_request",
    "metrics_from_message",
    "metrics_from_request",
    "normalize_id",
    "parse_request",
    "spans_from_message",
    "spans_from_request",
]

_M = TypeVar("_M", bound=Message)

_STATUS_CODES: dict[int, StatusCode] = {0: "UNSET", 1: "OK", 2: "ERROR"}
_TEMPORALITIES: dict[int, str] = {1: "DELTA", 2: "CUMULATIVE"}
_METRIC_KINDS: dict[str, MetricKind] = {
    "gauge": "gauge",
    "sum": "sum",
    "histogram": "histogram",
    "exponential_histogram": "exponential_histogram",
    "summary": "summary",
}
_HEXDIGITS = frozenset(string.hexdigits)
# what json_format raises for content it cannot map (RecursionError: absurd nesting)
_PARSE_ERRORS = (ParseError, ValueError, TypeError, AttributeError, RecursionError, OverflowError)


# --------------------------------------------------------------------------- ids


def normalize_id(value: Any, size: int | None = None) -> str | None:
    """Normalise a trace/span id to lowercase hex.

    Accepts lowercase/uppercase hex (the OTLP/JSON form) and standard or URL-safe base64
    (the generic protobuf-JSON ``bytes`` form produced by ``MessageToDict``). ``size`` is
    the expected length in bytes (16 for trace ids, 8 for span ids); it tells the two
    encodings apart.

    Returns ``None`` for a missing, empty or all-zero (invalid) id. A value that is
    neither valid hex nor base64 is returned unchanged rather than raising.
    """
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return _hex(bytes(value))
    text = str(value).strip()
    if not text:
        return None
    is_hex = all(c in _HEXDIGITS for c in text) and len(text) % 2 == 0
    result: str | None = None
    if is_hex and (size is None or len(text) == 2 * size):
        result = text.lower()
    else:
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


def _hex(raw: bytes) -> str | None:
    text = raw.hex()
    return text if text.strip("0") else None


def _id_for_protobuf(value: Any, size: int) -> Any:
    """An OTLP/JSON id (hex, or base64 already) as the base64 the JSON mapping reads;
    ``""`` (no id) for one that is neither."""
    if not isinstance(value, str):
        return value  # not an id at all: the parse leaves the field out
    text = normalize_id(value, size)
    try:
        return base64.b64encode(bytes.fromhex(text)).decode("ascii") if text else ""
    except ValueError:
        return ""


# --------------------------------------------------------------------------- parsing


@functools.cache
def _enum_prefix(enum: EnumDescriptor) -> str:
    """What every name of ``enum`` starts with (``"SPAN_KIND_"``)."""
    return str(os.path.commonprefix([value.name for value in enum.values]))


def _enum_for_protobuf(value: Any, enum: EnumDescriptor) -> Any:
    """A short enum name (``"ERROR"``) as its full one; an unknown name as 0."""
    if not isinstance(value, str):
        return value
    text = value.strip().upper()
    if text in enum.values_by_name or text.lstrip("-").isdigit():
        return text
    full = _enum_prefix(enum) + text
    return full if full in enum.values_by_name else 0


@functools.cache
def _bridges(message: Descriptor) -> dict[str, tuple[str, Any]]:
    """The JSON keys of ``message`` that need bridging before the JSON mapping reads
    them, directly or inside: ``("id", size)``, ``("enum", descriptor)`` or
    ``("message", descriptor)``. Messages holding no id and no enum are not entered."""
    return _plan(message, frozenset())


def _plan(message: Descriptor, outer: frozenset[str]) -> dict[str, tuple[str, Any]]:
    plan: dict[str, tuple[str, Any]] = {}
    inside = outer | {message.full_name}  # a message within itself (AnyValue) ends the walk
    for fd in message.fields:
        step: tuple[str, Any] | None = None
        if fd.type == FieldDescriptor.TYPE_BYTES and fd.name.endswith("_id"):
            step = ("id", 16 if fd.name == "trace_id" else 8)
        elif fd.enum_type is not None:
            step = ("enum", fd.enum_type)
        elif fd.message_type is not None and fd.message_type.full_name not in inside:
            if _plan(fd.message_type, inside):
                step = ("message", fd.message_type)
        if step is not None:
            plan[fd.json_name] = plan[fd.name] = step
    return plan


def _bridge(obj: Any, message: Any) -> Any:
    """A copy of ``obj`` with its ids and enums as the JSON mapping reads them."""
    plan = _bridges(message)
    if not isinstance(obj, Mapping) or not plan:
        return obj
    out = dict(obj)
    for key, value in obj.items():
        step = plan.get(key)
        if step is None:
            continue
        kind, arg = step
        if kind == "id":
            out[key] = _id_for_protobuf(value, arg)
        elif kind == "enum":
            out[key] = _enum_for_protobuf(value, arg)
        elif isinstance(value, list):
            out[key] = [_bridge(item, arg) for item in value]
        else:
            out[key] = _bridge(value, arg)
    return out


def _merge(obj: Any, message: Message) -> bool:
    """Parse ``obj`` into ``message`` with the JSON mapping; when the whole does not
    parse, field by field, and repeated messages item by item, leaving out what does
    not. False when ``obj`` is not a JSON object at all."""
    if not isinstance(obj, Mapping):
        return False
    obj = dict(obj)
    try:
        ParseDict(obj, message, ignore_unknown_fields=True)
        return True
    except _PARSE_ERRORS:
        message.Clear()
    descriptor = message.DESCRIPTOR
    for key, value in obj.items():
        fd = descriptor.fields_by_camelcase_name.get(key) or descriptor.fields_by_name.get(key)
        if fd is None:
            continue
        part = type(message)()
        try:
            ParseDict({key: value}, part, ignore_unknown_fields=True)
        except _PARSE_ERRORS:
            if fd.message_type is None:
                continue  # a scalar that is not one: left out
            part.Clear()  # what the failed parse left half made
            target = getattr(part, fd.name)
            if not hasattr(target, "add"):  # one message
                if not _merge(value, target):
                    continue
            elif isinstance(value, list):  # repeated messages
                for item in value:
                    if not _merge(item, target.add()):
                        del target[-1]
        message.MergeFrom(part)
    return True


def parse_request(obj: Any, message: _M) -> _M:
    """``obj`` (an OTLP/JSON or ``MessageToDict`` request) parsed into ``message``
    (e.g. ``ExportTraceServiceRequest()``), leaving out what does not parse."""
    _merge(_bridge(obj, message.DESCRIPTOR), message)
    return message


# --------------------------------------------------------------------------- values


# The records are made alike from both classes of one OTLP message: the protobuf ones
# (opentelemetry-proto) and the dataclasses of the JSON codec (opentelemetry-proto-json),
# which share the field names. They differ in two things: a oneof is asked with
# ``WhichOneof`` of the one and found as the field that is not None in the other, and a
# message field the JSON did not give is an empty message in the one, None in the other.

_ANY_VALUE_FIELDS = (
    "string_value",
    "int_value",
    "double_value",
    "bool_value",
    "array_value",
    "kvlist_value",
    "bytes_value",
    "string_value_strindex",
)
_NUMBER_FIELDS = ("as_int", "as_double")
_DATA_FIELDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")


def _which(message: Any, oneof: str, fields: tuple[str, ...]) -> str | None:
    """The field of ``oneof`` that ``message`` has, if any."""
    if isinstance(message, Message):
        which: str | None = message.WhichOneof(oneof)
        return which
    for name in fields:
        if getattr(message, name) is not None:
            return name
    return None


def _value(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, Message) and value.string_value is not None:
        return value.string_value  # the most common, first
    which = _which(value, "value", _ANY_VALUE_FIELDS)
    if which is None:
        return None
    if which == "array_value":
        return [_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, which)


def _attributes(items: Iterable[Any]) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items if item.key}


def decode_any_value(v: Any) -> Any:
    """Decode an OTLP/JSON ``AnyValue`` object into a plain Python value.

    ``stringValue`` -> ``str``, ``boolValue`` -> ``bool``, ``intValue`` (number or
    decimal string) -> ``int``, ``doubleValue`` -> ``float`` (``"NaN"``, ``"Infinity"``
    understood), ``bytesValue`` (base64) -> ``bytes``, ``arrayValue`` -> ``list``,
    ``kvlistValue`` -> ``dict`` (last key wins), an empty ``AnyValue`` or ``None`` ->
    ``None``. Anything that is not a mapping is returned unchanged.
    """
    if v is None or not isinstance(v, Mapping):
        return v
    return _value(parse_request(v, AnyValue()))


def decode_attributes(items: Any) -> dict[str, Any]:
    """Decode a list of OTLP/JSON ``KeyValue`` objects into a dict.

    Entries without a key are ignored; for duplicate keys the last one wins.
    """
    values = parse_request({"values": items if isinstance(items, list) else []}, KeyValueList())
    return _attributes(values.values)


def _resource(resource: Any) -> dict[str, Any]:
    return {} if resource is None else _attributes(resource.attributes)


def _scope(scope: Any) -> tuple[str, str]:
    """The name and version of an ``InstrumentationScope`` (``""`` when absent)."""
    return ("", "") if scope is None else (scope.name or "", scope.version or "")


# --------------------------------------------------------------------------- signals


def spans_from_message(request: ExportTraceServiceRequest | Any) -> list[SpanRecord]:
    """The spans of an ``ExportTraceServiceRequest`` (or ``TracesData``): a protobuf
    message, or its :mod:`~otel_ai.read.otlp_structs` struct."""
    records: list[SpanRecord] = []
    for resource_spans in request.resource_spans:
        resource = _resource(resource_spans.resource)
        for scope_spans in resource_spans.scope_spans:
            scope, scope_version = _scope(scope_spans.scope)
            for span in scope_spans.spans:
                status = span.status
                records.append(
                    SpanRecord(
                        trace_id=_hex(span.trace_id or b"") or "",
                        span_id=_hex(span.span_id or b"") or "",
                        parent_span_id=_hex(span.parent_span_id or b""),
                        name=span.name or "",
                        kind=int(span.kind or 0),
                        start_ns=span.start_time_unix_nano or 0,
                        end_ns=span.end_time_unix_nano or 0,
                        attributes=_attributes(span.attributes),
                        events=[
                            EventRecord(
                                event.name or "", event.time_unix_nano or 0, _attributes(event.attributes)
                            )
                            for event in span.events
                        ],
                        links=[
                            LinkRecord(
                                _hex(link.trace_id or b""),
                                _hex(link.span_id or b""),
                                _attributes(link.attributes),
                                link.trace_state or "",
                            )
                            for link in span.links
                        ],
                        status_code=_STATUS_CODES.get(status.code or 0, "UNSET") if status else "UNSET",
                        status_message=(status.message or "") if status else "",
                        resource=resource,
                        scope=scope,
                        scope_version=scope_version,
                        trace_state=span.trace_state or "",
                        flags=span.flags or 0,
                    )
                )
    return records


def logs_from_message(request: ExportLogsServiceRequest | Any) -> list[LogRecordData]:
    """The log records of an ``ExportLogsServiceRequest`` (or ``LogsData``): a protobuf
    message, or its :mod:`~otel_ai.read.otlp_structs` struct."""
    records: list[LogRecordData] = []
    for resource_logs in request.resource_logs:
        resource = _resource(resource_logs.resource)
        for scope_logs in resource_logs.scope_logs:
            scope, scope_version = _scope(scope_logs.scope)
            for log in scope_logs.log_records:
                records.append(
                    LogRecordData(
                        time_ns=log.time_unix_nano or 0,
                        observed_ns=log.observed_time_unix_nano or 0,
                        severity_number=int(log.severity_number or 0),
                        severity_text=log.severity_text or "",
                        body=_value(log.body),
                        attributes=_attributes(log.attributes),
                        event_name=log.event_name or None,
                        trace_id=_hex(log.trace_id or b""),
                        span_id=_hex(log.span_id or b""),
                        resource=resource,
                        scope=scope,
                        scope_version=scope_version,
                        flags=log.flags or 0,
                    )
                )
    return records


def _optional(point: Any, name: str) -> float | None:
    if isinstance(point, Message):
        return float(getattr(point, name)) if point.HasField(name) else None
    value = getattr(point, name)
    return None if value is None else float(value)


def _buckets(buckets: Any) -> tuple[int, list[int]]:
    """The offset and counts of an exponential histogram's ``Buckets``."""
    return (0, []) if buckets is None else (buckets.offset or 0, list(buckets.bucket_counts))


def _points(metric: Any, common: dict[str, Any]) -> list[MetricPoint]:
    """One record per data point of ``metric``; none for a metric without data."""
    which = _which(metric, "data", _DATA_FIELDS)
    if which is None:
        return []
    data = getattr(metric, which)
    kind = _METRIC_KINDS[which]
    temporality = _TEMPORALITIES.get(getattr(data, "aggregation_temporality", 0) or 0)
    points: list[MetricPoint] = []
    for point in data.data_points:
        extra: dict[str, Any]
        if kind in ("gauge", "sum"):
            number = _which(point, "value", _NUMBER_FIELDS)
            extra = {"value": None if number is None else getattr(point, number)}
            if kind == "sum":
                extra.update(temporality=temporality, is_monotonic=bool(data.is_monotonic))
        elif kind == "summary":
            extra = {
                "count": point.count or 0,
                "sum": point.sum or 0.0,
                "quantiles": [(q.quantile or 0.0, q.value or 0.0) for q in point.quantile_values],
            }
        else:
            extra = {
                "count": point.count or 0,
                "sum": _optional(point, "sum"),
                "min": _optional(point, "min"),
                "max": _optional(point, "max"),
                "temporality": temporality,
            }
            if kind == "histogram":
                extra.update(
                    bucket_counts=list(point.bucket_counts), explicit_bounds=list(point.explicit_bounds)
                )
            else:
                positive_offset, positive_counts = _buckets(point.positive)
                negative_offset, negative_counts = _buckets(point.negative)
                extra.update(
                    scale=point.scale or 0,
                    zero_count=point.zero_count or 0,
                    positive_offset=positive_offset,
                    positive_bucket_counts=positive_counts,
                    negative_offset=negative_offset,
                    negative_bucket_counts=negative_counts,
                )
        points.append(
            MetricPoint(
                **common,
                kind=kind,
                time_ns=point.time_unix_nano or 0,
                start_time_ns=point.start_time_unix_nano or 0,
                attributes=_attributes(point.attributes),
                flags=point.flags or 0,
                **extra,
            )
        )
    return points


def metrics_from_message(request: ExportMetricsServiceRequest | Any) -> list[MetricPoint]:
    """The data points of an ``ExportMetricsServiceRequest`` (or ``MetricsData``): a
    protobuf message, or its :mod:`~otel_ai.read.otlp_structs` struct; one :class:`MetricPoint` each."""
    points: list[MetricPoint] = []
    for resource_metrics in request.resource_metrics:
        resource = _resource(resource_metrics.resource)
        for scope_metrics in resource_metrics.scope_metrics:
            scope, scope_version = _scope(scope_metrics.scope)
            for metric in scope_metrics.metrics:
                common = {
                    "name": metric.name or "",
                    "unit": metric.unit or "",
                    "description": metric.description or "",
                    "resource": resource,
                    "scope": scope,
                    "scope_version": scope_version,
                }
                points.extend(_points(metric, common))
    return points


def spans_from_request(obj: Mapping[str, Any]) -> list[SpanRecord]:
    """Decode an ``ExportTraceServiceRequest`` (OTLP/JSON dict) into span records."""
    request = otlp_structs.convert(obj, otlp_structs.TraceRequest)
    return spans_from_message(parse_request(obj, ExportTraceServiceRequest()) if request is None else request)


def logs_from_request(obj: Mapping[str, Any]) -> list[LogRecordData]:
    """Decode an ``ExportLogsServiceRequest`` (OTLP/JSON dict) into log records."""
    request = otlp_structs.convert(obj, otlp_structs.LogsRequest)
    return logs_from_message(parse_request(obj, ExportLogsServiceRequest()) if request is None else request)


def metrics_from_request(obj: Mapping[str, Any]) -> list[MetricPoint]:
    """Decode an ``ExportMetricsServiceRequest`` (OTLP/JSON dict) into metric points."""
    request = otlp_structs.convert(obj, otlp_structs.MetricsRequest)
    return metrics_from_message(
        parse_request(obj, ExportMetricsServiceRequest()) if request is None else request
    )


# --------------------------------------------------------------------------- telemetry


@dataclass
class Telemetry:
    """Decoded spans, logs and metric points, e.g. of one run directory.

    Attributes:
        spans: Span records, in file/line order.
        logs: Log records, in file/line order.
        metrics: Metric points, in file/line order.
        skipped_lines: Lines that could not be parsed (see :class:`otel_ai.read.files.JsonlReader`).
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

        The signal is recognised by the top-level key(s) present (``resourceSpans``,
        ``resourceLogs``, ``resourceMetrics``); an object with none of them contributes
        nothing.
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
