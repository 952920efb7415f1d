"""The OTLP export requests as ``msgspec`` structs, made from opentelemetry-proto's
message descriptors: the quick way from an OTLP/JSON line to the records.

Every message of the three export requests becomes a :class:`msgspec.Struct` with the
message's fields under their protobuf names, read from their JSON names (``traceId``,
``startTimeUnixNano``) as the OTLP/JSON mapping writes them: 64-bit integers as numbers
or decimal strings, enums as numbers, ids (``trace_id``, ``span_id``, ``parent_span_id``)
in hex, other bytes in base64, doubles as numbers or ``"NaN"``/``"Infinity"``. Each
integer is held to its protobuf type's range. A field the line does not give is
``None`` (a repeated one an empty list); keys the messages do not have are ignored.

``msgspec.convert`` fills them in C, several times faster than the pure-Python JSON
mappings (``google.protobuf.json_format``, opentelemetry-proto-json). It takes a line
whole or not at all: anything else the protobuf JSON mapping would still read (an id in
base64, an enum by name) or not read at all (a value of the wrong type) raises
:class:`msgspec.ValidationError`, and :mod:`otel_ai.read.otlp_json` reads such a line with
the protobuf mapping, piece by piece. The one difference between the two ways: msgspec
reads a bool given as ``"true"``/``"false"`` or ``1``/``0`` (never written by an
exporter) as the bool, where the protobuf mapping leaves the value out.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, List, Optional, TypeVar  # noqa: UP035 - List: see _struct

import msgspec
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

__all__ = ["STRUCT_ERRORS", "LogsRequest", "MetricsRequest", "TraceRequest", "convert"]

_F = FieldDescriptor
_INT_RANGES = {
    _F.TYPE_ENUM: (-(2**31), 2**31 - 1),  # by number; an unknown one is kept, as protobuf keeps it
    _F.TYPE_INT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _F.TYPE_UINT32: (0, 2**32 - 1),
    _F.TYPE_FIXED32: (0, 2**32 - 1),
    _F.TYPE_INT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    # msgspec bounds an int within int64: a uint64 beyond is left to the protobuf mapping
    _F.TYPE_UINT64: (0, 2**63 - 1),
    _F.TYPE_FIXED64: (0, 2**63 - 1),
}
_SCALARS: dict[int, Any] = {
    _F.TYPE_DOUBLE: float,
    _F.TYPE_FLOAT: float,
    _F.TYPE_BOOL: bool,
    _F.TYPE_STRING: str,
    _F.TYPE_BYTES: bytes,
}
_PREFIX = "_Otlp_"

#: What :func:`convert` raises for a line it does not take whole.
STRUCT_ERRORS = (msgspec.ValidationError, ValueError, TypeError, RecursionError)


class HexId(bytes):
    """An OTLP/JSON id: hex in JSON, bytes once read."""


def _dec_hook(kind: type, value: Any) -> Any:
    if kind is HexId and isinstance(value, str):
        return HexId(bytes.fromhex(value))  # ValueError: not hex, so not OTLP/JSON
    raise msgspec.ValidationError(f"expected a hex id, got {type(value).__name__}")


def _field_type(fd: FieldDescriptor) -> Any:
    if fd.message_type is not None:
        kind: Any = _struct(fd.message_type)
    elif fd.type == _F.TYPE_BYTES and fd.name.endswith("_id"):
        kind = HexId
    elif fd.type in _INT_RANGES:
        low, high = _INT_RANGES[fd.type]
        kind = Annotated[int, msgspec.Meta(ge=low, le=high)]
    else:
        kind = _SCALARS[fd.type]
    return kind


def _struct(message: Descriptor) -> str:
    """The name of the struct of ``message`` (made on first use), as a forward reference:
    ``AnyValue`` holds itself through ``ArrayValue`` and ``KeyValueList``."""
    name = _PREFIX + message.full_name.replace(".", "_")
    module = sys.modules[__name__]
    if not hasattr(module, name):
        setattr(module, name, None)  # being made: a reference to it stays a name
        fields: list[tuple[str, Any, Any]] = [
            # typing.List: a name inside it becomes a ForwardRef on 3.10 too (list[...] keeps a str)
            (fd.name, List[kind], msgspec.field(default_factory=list, name=fd.json_name))  # type: ignore[valid-type]  # noqa: UP006
            if fd.is_repeated
            else (fd.name, Optional[kind], msgspec.field(default=None, name=fd.json_name))  # noqa: UP045
            for fd, kind in ((fd, _field_type(fd)) for fd in message.fields)
        ]
        setattr(module, name, msgspec.defstruct(name, fields, module=__name__, gc=False))
    return name


def _request(message: Descriptor) -> type[msgspec.Struct]:
    struct: type[msgspec.Struct] = getattr(sys.modules[__name__], _struct(message))
    return struct


TraceRequest = _request(ExportTraceServiceRequest.DESCRIPTOR)
LogsRequest = _request(ExportLogsServiceRequest.DESCRIPTOR)
MetricsRequest = _request(ExportMetricsServiceRequest.DESCRIPTOR)

_S = TypeVar("_S", bound=msgspec.Struct)


def convert(obj: Any, request: type[_S]) -> _S | None:
    """``obj`` (one parsed OTLP/JSON line) as ``request`` (:data:`TraceRequest`...), or
    None when not all of it is as the OTLP/JSON mapping writes it."""
    try:
        return msgspec.convert(obj, request, strict=False, dec_hook=_dec_hook)
    except STRUCT_ERRORS:
        return None
