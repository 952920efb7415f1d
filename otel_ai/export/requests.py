"""Encoded OTLP requests: their items counted, split in halves, cut to fit a size.

The durable delivery, the spool and replay hold requests as the bytes of an
``Export{Trace,Logs,Metrics}ServiceRequest``; these helpers read them without
re-encoding what they do not change.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

REQUEST_TYPES: dict[str, type[Message]] = {
    "traces": trace_service_pb2.ExportTraceServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
}
# the (resource list, scope list, item list) field names of each request
_LAYOUT = {
    "traces": ("resource_spans", "scope_spans", "spans"),
    "logs": ("resource_logs", "scope_logs", "log_records"),
    "metrics": ("resource_metrics", "scope_metrics", "metrics"),
}


def count_items(signal: str, request: Message) -> int:
    """Spans, log records or metric data points in a request."""
    resources, scopes, items = _LAYOUT[signal]
    total = 0
    for resource in getattr(request, resources):
        for scope in getattr(resource, scopes):
            if signal != "metrics":
                total += len(getattr(scope, items))
                continue
            for metric in scope.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    total += len(getattr(metric, kind).data_points)
    return total


def parse_request(signal: str, data: bytes) -> Message:
    request = REQUEST_TYPES[signal]()
    request.ParseFromString(data)
    return request


def split_request(signal: str, data: bytes) -> list[bytes] | None:
    """The request in two halves (by items; metrics by data points), each a complete
    request with its resource and scope; None when it holds a single item."""
    request = parse_request(signal, data)
    resources_field, scopes_field, items_field = _LAYOUT[signal]
    units: list[tuple[Any, Any, Any, Any]] = []  # (resource, scope, item or metric, point)
    for resource in getattr(request, resources_field):
        for scope in getattr(resource, scopes_field):
            if signal != "metrics":
                units.extend((resource, scope, item, None) for item in getattr(scope, items_field))
                continue
            for metric in scope.metrics:
                kind = metric.WhichOneof("data")
                points = getattr(metric, kind).data_points if kind is not None else []
                if not points:
                    units.append((resource, scope, metric, None))
                units.extend((resource, scope, metric, point) for point in points)
    if len(units) < 2:
        return None
    half = len(units) // 2
    return [
        _rebuild(signal, units[:half]).SerializeToString(),
        _rebuild(signal, units[half:]).SerializeToString(),
    ]


def _rebuild(signal: str, units: list[tuple[Any, Any, Any, Any]]) -> Message:
    resources_field, scopes_field, items_field = _LAYOUT[signal]
    request = REQUEST_TYPES[signal]()
    last: tuple[int, int, int] | None = None
    resource_out: Any = None
    scope_out: Any = None
    metric_out: Any = None
    for resource, scope, item, point in units:
        if last is None or last[0] != id(resource):
            resource_out = getattr(request, resources_field).add()
            resource_out.resource.CopyFrom(resource.resource)
            resource_out.schema_url = resource.schema_url
            last = (id(resource), 0, 0)
        if last[1] != id(scope):
            scope_out = getattr(resource_out, scopes_field).add()
            scope_out.scope.CopyFrom(scope.scope)
            scope_out.schema_url = scope.schema_url
            last = (last[0], id(scope), 0)
            metric_out = None
        if signal != "metrics":
            getattr(scope_out, items_field).add().CopyFrom(item)
            continue
        if metric_out is None or last[2] != id(item):
            metric_out = scope_out.metrics.add()
            metric_out.CopyFrom(item)
            kind = item.WhichOneof("data")
            if kind is not None:
                getattr(metric_out, kind).ClearField("data_points")
            last = (last[0], last[1], id(item))
        if point is not None:
            getattr(metric_out, item.WhichOneof("data")).data_points.add().CopyFrom(point)
    return request


def split_to_fit(signal: str, data: bytes, max_bytes: int) -> tuple[list[bytes], list[bytes]]:
    """Split ``data`` until every part is at most ``max_bytes``: (parts in order, the
    single-item parts that are still too large)."""
    if len(data) <= max_bytes:
        return [data], []
    halves = split_request(signal, data)
    if halves is None:
        return [], [data]
    fitting: list[bytes] = []
    oversized: list[bytes] = []
    for half in halves:
        parts, big = split_to_fit(signal, half, max_bytes)
        fitting.extend(parts)
        oversized.extend(big)
    return fitting, oversized


def items_in(signal: str, data: bytes) -> int:
    try:
        return count_items(signal, parse_request(signal, data))
    except (DecodeError, ValueError):
        return 0
