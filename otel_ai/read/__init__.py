"""The read side: a run's telemetry read back from where it went.

- :mod:`~otel_ai.read.records`: the flat records (spans, log records, metric points);
- :mod:`~otel_ai.read.otlp_json`: the one OTLP/JSON decoder (a line into the structs of
  :mod:`~otel_ai.read.otlp_structs`, or where it is not as OTLP/JSON writes it, protobuf's
  JSON mapping into opentelemetry-proto's messages; then records), and :class:`Telemetry`;
- :mod:`~otel_ai.read.files`: the embedded default's and a collector's OTLP/JSON files;
- :mod:`~otel_ai.read.jaeger`: Jaeger's query API v3;
- :mod:`~otel_ai.read.runview`: a run rebuilt from its telemetry (stages, node tree,
  outcome), with :mod:`~otel_ai.read.usage` (its resource usage);
- :mod:`~otel_ai.read.sources`: finding a run in a directory, a file or Jaeger
  (``otel-ai show`` and ``otel-ai report``).

It imports nothing of otel_ai but the foundation (``semconv``, ``config``).
"""

from __future__ import annotations

from .files import FILE_PATTERNS, JsonlReader, load_directory, load_path, read_jsonl
from .otlp_json import (
    Telemetry,
    decode_any_value,
    decode_attributes,
    logs_from_message,
    logs_from_request,
    metrics_from_message,
    metrics_from_request,
    normalize_id,
    parse_request,
    spans_from_message,
    spans_from_request,
)
from .records import EventRecord, LinkRecord, LogRecordData, MetricKind, MetricPoint, SpanRecord, StatusCode

__all__ = [
    "FILE_PATTERNS",
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
    "load_path",
    "logs_from_message",
    "logs_from_request",
    "metrics_from_message",
    "metrics_from_request",
    "normalize_id",
    "parse_request",
    "read_jsonl",
    "spans_from_message",
    "spans_from_request",
]
