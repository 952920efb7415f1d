"""Tests for the in-process OTLP receiver and the OTLP/JSON decoder.

Telemetry is produced with the plain OpenTelemetry SDK (not otel_ai) and
exported over OTLP/gRPC, OTLP/HTTP and to OTLP/JSON files; all three must
decode to the same records.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.json.file import FileMetricExporter, FileSpanExporter
from opentelemetry.exporter.otlp.json.file._log_exporter import FileLogExporter
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from otlp_receiver import OTLPReceiver, Transport

from otel_ai.read import (
    LogRecordData,
    MetricPoint,
    SpanRecord,
    Telemetry,
    decode_any_value,
    load_directory,
    logs_from_request,
    metrics_from_request,
    normalize_id,
    read_jsonl,
    spans_from_request,
)

SERVICE = "otlp-receiver-test"
ROOT_ATTRIBUTES: dict[str, Any] = {
    "ai.run.id": "run-42",
    "ai.step": 7,
    "ai.score": 2.5,
    "ai.ok": True,
    "ai.tags": ["alpha", "beta"],
    "ai.sizes": [1, 2, 3],
    "ai.blob": b"\x00\xffxy",
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep ambient OTEL_* settings and proxies from changing the exporters."""
    for name in list(os.environ):
        if name.startswith("OTEL_") or name.lower() in (
            "http_proxy",
            "https_proxy",
            "all_proxy",
            "grpc_proxy",
        ):
            monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------- helpers


@dataclass
class Exporters:
    spans: list[SpanExporter]
    logs: list[LogRecordExporter]
    metrics: list[MetricExporter]


@dataclass
class Emitted:
    """What the SDK produced, for comparing against decoded records."""

    root: trace.SpanContext
    child: trace.SpanContext
    linked: trace.SpanContext


def exporters_for(
    transport: str, receiver: OTLPReceiver | None = None, directory: Path | None = None
) -> Exporters:
    if transport == "grpc":
        assert receiver is not None
        endpoint = receiver.grpc_endpoint
        return Exporters(
            [GrpcSpanExporter(endpoint=endpoint, insecure=True, timeout=5)],
            [GrpcLogExporter(endpoint=endpoint, insecure=True, timeout=5)],
            [GrpcMetricExporter(endpoint=endpoint, insecure=True, timeout=5)],
        )
    if transport == "http":
        assert receiver is not None
        return Exporters(
            [HttpSpanExporter(endpoint=receiver.http_url("traces"), timeout=5)],
            [HttpLogExporter(endpoint=receiver.http_url("logs"), timeout=5)],
            [HttpMetricExporter(endpoint=receiver.http_url("metrics"), timeout=5)],
        )
    assert transport == "file" and directory is not None
    return Exporters(
        [FileSpanExporter(directory / "traces-1.jsonl")],
        [FileLogExporter(directory / "logs-1.jsonl")],
        [FileMetricExporter(directory / "metrics-1.jsonl")],
    )


def emit_telemetry(exporters: Sequence[Exporters]) -> Emitted:
    """Produce one small run's worth of telemetry and export it to every exporter.

    Spans and logs go through the SDK's simple processors (one per exporter);
    metrics are collected once and the same ``MetricsData`` is exported to each
    metric exporter, so all destinations receive identical data.
    """
    resource = Resource.create({"service.name": SERVICE, "ai.experiment": "exp-1"})

    tracer_provider = TracerProvider(resource=resource)
    logger_provider = LoggerProvider(resource=resource)
    for group in exporters:
        for span_exporter in group.spans:
            tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        for log_exporter in group.logs:
            logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    tracer = tracer_provider.get_tracer("test.tracer", "1.2.3")
    logger = logger_provider.get_logger("test.logger")

    with tracer.start_as_current_span("unrelated") as other:
        linked = other.get_span_context()
    link = trace.Link(linked, {"link.reason": "follows"})
    with (
        tracer.start_as_current_span("agent.run", attributes=ROOT_ATTRIBUTES) as root,
        tracer.start_as_current_span("tool.call", kind=trace.SpanKind.CLIENT, links=[link]) as child,
    ):
        child.add_event("retry", {"attempt": 2, "delay_s": 0.5})
        logger.emit(
            body={"message": "tool finished", "lines": [1, 2]},
            event_name="ai.tool.result",
            attributes={"tool.name": "grep", "tool.exit_code": 0},
            severity_number=SeverityNumber.WARN,
            severity_text="WARN",
            context=trace.set_span_in_context(child),
        )
        child.set_status(trace.Status(trace.StatusCode.ERROR, "tool failed"))
    tracer_provider.shutdown()
    logger_provider.shutdown()

    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = meter_provider.get_meter("test.meter")
    tokens = meter.create_counter("ai.tokens", unit="{token}", description="Tokens used")
    tokens.add(5, {"model": "m1"})
    tokens.add(3, {"model": "m1"})
    latency = meter.create_histogram("ai.latency", unit="s")
    latency.record(0.2)
    latency.record(1.5)
    meter.create_gauge("ai.gpu.utilization").set(0.75)
    metrics_data = reader.get_metrics_data()
    meter_provider.shutdown()
    assert metrics_data is not None
    for group in exporters:
        for metric_exporter in group.metrics:
            assert metric_exporter.export(metrics_data).name == "SUCCESS"
            metric_exporter.shutdown()

    return Emitted(root=root.get_span_context(), child=child.get_span_context(), linked=linked)


def hex_trace(ctx: trace.SpanContext) -> str:
    return format(ctx.trace_id, "032x")


def hex_span(ctx: trace.SpanContext) -> str:
    return format(ctx.span_id, "016x")


def by_name(spans: Sequence[SpanRecord]) -> dict[str, SpanRecord]:
    return {span.name: span for span in spans}


def assert_expected_records(
    spans: Sequence[SpanRecord],
    logs: Sequence[LogRecordData],
    metrics: Sequence[MetricPoint],
    emitted: Emitted,
) -> None:
    named = by_name(spans)
    assert set(named) == {"unrelated", "agent.run", "tool.call"}
    root, child = named["agent.run"], named["tool.call"]

    assert root.trace_id == hex_trace(emitted.root) and len(root.trace_id) == 32
    assert root.span_id == hex_span(emitted.root) and len(root.span_id) == 16
    assert root.parent_span_id is None and root.is_root
    assert root.attributes == ROOT_ATTRIBUTES
    assert root.status_code == "UNSET" and root.status_message == ""
    assert root.kind == 1 and root.kind_name == "INTERNAL"
    assert root.scope == "test.tracer" and root.scope_version == "1.2.3"
    assert root.resource["service.name"] == SERVICE
    assert root.resource["ai.experiment"] == "exp-1"
    assert root.end_ns >= child.end_ns >= child.start_ns >= root.start_ns > 0
    assert root.duration_s == pytest.approx((root.end_ns - root.start_ns) / 1e9)

    assert child.trace_id == root.trace_id
    assert child.span_id == hex_span(emitted.child)
    assert child.parent_span_id == root.span_id
    assert child.kind == 3 and child.kind_name == "CLIENT"
    assert child.status_code == "ERROR" and child.status_message == "tool failed"
    assert [(e.name, e.attributes) for e in child.events] == [("retry", {"attempt": 2, "delay_s": 0.5})]
    assert child.start_ns <= child.events[0].time_ns <= child.end_ns
    assert len(child.links) == 1
    link = child.links[0]
    assert (link.trace_id, link.span_id) == (hex_trace(emitted.linked), hex_span(emitted.linked))
    assert link.trace_id != root.trace_id
    assert link.attributes == {"link.reason": "follows"}

    assert len(logs) == 1
    log = logs[0]
    assert log.event_name == "ai.tool.result"
    assert log.body == {"message": "tool finished", "lines": [1, 2]}
    assert log.attributes == {"tool.name": "grep", "tool.exit_code": 0}
    assert (log.severity_number, log.severity_text) == (13, "WARN")
    assert (log.trace_id, log.span_id) == (child.trace_id, child.span_id)
    assert log.scope == "test.logger"
    assert log.resource == root.resource
    assert log.effective_time_ns > 0

    points = {point.name: point for point in metrics}
    assert set(points) == {"ai.tokens", "ai.latency", "ai.gpu.utilization"}
    tokens = points["ai.tokens"]
    assert (tokens.kind, tokens.value, tokens.unit, tokens.description) == (
        "sum",
        8,
        "{token}",
        "Tokens used",
    )
    assert isinstance(tokens.value, int)
    assert tokens.attributes == {"model": "m1"}
    assert tokens.is_monotonic is True and tokens.temporality == "CUMULATIVE"
    assert tokens.time_ns >= tokens.start_time_ns > 0
    latency = points["ai.latency"]
    assert latency.kind == "histogram" and latency.unit == "s"
    assert (latency.count, latency.min, latency.max) == (2, 0.2, 1.5)
    assert latency.sum == pytest.approx(1.7)
    assert len(latency.bucket_counts) == len(latency.explicit_bounds) + 1
    assert sum(latency.bucket_counts) == 2
    gauge = points["ai.gpu.utilization"]
    assert (gauge.kind, gauge.value) == ("gauge", 0.75)
    assert all(point.resource == root.resource and point.scope == "test.meter" for point in metrics)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 5.0) -> tuple[int, bytes]:
    """Plain HTTP POST to 127.0.0.1 with the stdlib (no proxies involved)."""
    assert url.startswith("http://127.0.0.1:")
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", "/" + path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def sample_trace_request() -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = bytes(range(1, 17))
    span.span_id = bytes(range(1, 9))
    span.name = "raw"
    return request


# --------------------------------------------------------------------------- wire


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_telemetry_round_trips_over_the_wire(otlp_receiver: OTLPReceiver, transport: Transport) -> None:
    emitted = emit_telemetry([exporters_for(transport, otlp_receiver)])

    assert otlp_receiver.wait_for(lambda r: len(r.spans()) == 3 and r.logs() and r.metrics(), timeout=10)
    assert_expected_records(otlp_receiver.spans(), otlp_receiver.logs(), otlp_receiver.metrics(), emitted)

    # Everything arrived over the requested transport only.
    other: Transport = "http" if transport == "grpc" else "grpc"
    assert otlp_receiver.spans(transport=other) == []
    assert len(otlp_receiver.spans(transport=transport)) == 3
    assert {item.transport for item in otlp_receiver.received()} == {transport}
    assert otlp_receiver.requests("traces")[0].DESCRIPTOR.name == "ExportTraceServiceRequest"
    assert otlp_receiver.rejected() == 0


def test_wire_and_file_exports_decode_identically(otlp_receiver: OTLPReceiver, tmp_path: Path) -> None:
    groups = [
        exporters_for("grpc", otlp_receiver),
        exporters_for("http", otlp_receiver),
        exporters_for("file", directory=tmp_path),
    ]
    emitted = emit_telemetry(groups)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs-1.jsonl", "metrics-1.jsonl", "traces-1.jsonl"]

    from_files = load_directory(tmp_path)
    assert from_files.skipped_lines == 0
    assert_expected_records(from_files.spans, from_files.logs, from_files.metrics, emitted)

    def key(span: SpanRecord) -> str:
        return span.span_id

    transports: tuple[Transport, ...] = ("grpc", "http")
    for transport in transports:
        assert sorted(otlp_receiver.spans(transport), key=key) == sorted(from_files.spans, key=key)
        assert otlp_receiver.logs(transport) == from_files.logs
        assert otlp_receiver.metrics(transport) == from_files.metrics

    # A single file is dispatched by content, not by name.
    only_logs = load_directory(tmp_path / "logs-1.jsonl")
    assert (len(only_logs.spans), only_logs.logs, only_logs.metrics) == (0, from_files.logs, [])


def test_http_gzip_and_grpc_compression_are_accepted(otlp_receiver: OTLPReceiver) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(
        SimpleSpanProcessor(
            HttpSpanExporter(endpoint=otlp_receiver.http_url("traces"), compression=Compression.Gzip)
        )
    )
    provider.add_span_processor(
        SimpleSpanProcessor(
            GrpcSpanExporter(
                endpoint=otlp_receiver.grpc_endpoint, insecure=True, compression=grpc.Compression.Gzip
            )
        )
    )
    with provider.get_tracer("t").start_as_current_span("compressed", attributes={"k": "v" * 2000}):
        pass
    provider.shutdown()

    http_requests = otlp_receiver.received("traces", "http")
    assert len(http_requests) == 1 and http_requests[0].headers["content-encoding"] == "gzip"
    assert len(otlp_receiver.received("traces", "grpc")) == 1
    assert [(s.name, s.attributes["k"]) for s in otlp_receiver.spans()] == [("compressed", "v" * 2000)] * 2


def test_http_rejects_bad_requests(otlp_receiver: OTLPReceiver) -> None:
    body = sample_trace_request().SerializeToString()
    protobuf = {"Content-Type": "application/x-protobuf"}

    assert post(otlp_receiver.http_endpoint + "/v1/nope", body, protobuf)[0] == 404
    assert post(otlp_receiver.http_url("traces"), body, {"Content-Type": "application/json"})[0] == 415
    garbage = post(otlp_receiver.http_url("traces"), b"\xff\xff\xff", protobuf)
    assert garbage[0] == 400
    bad_gzip = post(otlp_receiver.http_url("traces"), body, {**protobuf, "Content-Encoding": "gzip"})
    assert bad_gzip[0] == 400
    assert otlp_receiver.received() == []

    status, reply = post(
        otlp_receiver.http_url("traces"), gzip.compress(body), {**protobuf, "Content-Encoding": "gzip"}
    )
    assert (status, reply) == (200, b"")  # an empty ExportTraceServiceResponse
    [span] = otlp_receiver.spans()
    assert (span.trace_id, span.span_id, span.name) == (
        bytes(range(1, 17)).hex(),
        bytes(range(1, 9)).hex(),
        "raw",
    )


def test_unavailable_mode_refuses_both_transports(otlp_receiver: OTLPReceiver) -> None:
    otlp_receiver.mode = "unavailable"
    body = sample_trace_request().SerializeToString()
    status, _ = post(otlp_receiver.http_url("traces"), body, {"Content-Type": "application/x-protobuf"})
    assert status == 503

    with grpc.insecure_channel(otlp_receiver.grpc_endpoint.removeprefix("http://")) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as excinfo:
            stub.Export(sample_trace_request(), timeout=5)
        assert excinfo.value.code() == grpc.StatusCode.UNAVAILABLE

        assert otlp_receiver.received() == []
        assert otlp_receiver.rejected() == 2
        assert otlp_receiver.rejected("traces", "grpc") == 1 and otlp_receiver.rejected("logs") == 0

        otlp_receiver.mode = "ok"
        stub.Export(sample_trace_request(), timeout=5)
    assert [s.name for s in otlp_receiver.spans("grpc")] == ["raw"]

    otlp_receiver.clear()
    assert (otlp_receiver.received(), otlp_receiver.rejected()) == ([], 0)


def test_hang_mode_blocks_until_stop() -> None:
    receiver = OTLPReceiver(mode="hang", hang_timeout=60).start()
    try:
        body = sample_trace_request().SerializeToString()
        with pytest.raises(TimeoutError):
            post(receiver.http_url("traces"), body, {"Content-Type": "application/x-protobuf"}, timeout=0.3)
        with grpc.insecure_channel(receiver.grpc_endpoint.removeprefix("http://")) as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as excinfo:
                stub.Export(sample_trace_request(), timeout=0.3)
            assert excinfo.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        started = time.monotonic()
        receiver.stop()
        stopped_in = time.monotonic() - started
    assert stopped_in < 5, "stop() must release hanging handlers"
    assert receiver.received() == []
    assert receiver.rejected() == 2
    receiver.stop()  # idempotent


def test_wait_for_times_out_and_context_manager_stops() -> None:
    with OTLPReceiver() as receiver:
        assert receiver.grpc_endpoint.startswith("http://127.0.0.1:")
        assert receiver.http_endpoint.startswith("http://127.0.0.1:")
        assert receiver.grpc_endpoint != receiver.http_endpoint
        started = time.monotonic()
        assert receiver.wait_for(lambda r: bool(r.spans()), timeout=0.2) is False
        assert time.monotonic() - started < 2
        url = receiver.http_url("traces")
    with pytest.raises(OSError):
        post(url, b"", {"Content-Type": "application/x-protobuf"}, timeout=1)


# --------------------------------------------------------------------------- files


def test_truncated_last_line_is_skipped_and_counted(tmp_path: Path) -> None:
    emitted = emit_telemetry([exporters_for("file", directory=tmp_path)])
    complete = load_directory(tmp_path)
    assert complete.skipped_lines == 0

    traces = tmp_path / "traces-1.jsonl"
    first_line = traces.read_text(encoding="utf-8").splitlines()[0]
    with traces.open("a", encoding="utf-8") as handle:  # a crash mid-write: no newline, cut JSON
        handle.write(first_line[: len(first_line) // 2])

    reader = read_jsonl(traces)
    objects = list(reader)
    assert len(objects) == 3 and all("resourceSpans" in obj for obj in objects)
    assert (reader.records, reader.skipped, reader.skipped_line_numbers) == (3, 1, [4])

    loaded = load_directory(tmp_path)
    assert loaded.skipped_lines == 1
    assert loaded.spans == complete.spans and loaded.logs == complete.logs
    assert_expected_records(loaded.spans, loaded.logs, loaded.metrics, emitted)


def test_read_jsonl_skips_every_kind_of_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        b'{"a": 1}\n'
        b"\n"
        b"not json\n"
        b"[1, 2]\n"
        b'"just a string"\n'
        b'{"b": "\xff\xfe"}\n'  # invalid UTF-8
        b'{"c": 3}'  # last line without newline is fine when complete
    )
    with read_jsonl(path) as reader:
        assert list(reader) == [{"a": 1}, {"c": 3}]
    assert (reader.lines, reader.records, reader.skipped) == (6, 2, 4)
    assert reader.skipped_line_numbers == [3, 4, 5, 6]

    with pytest.raises(FileNotFoundError):
        list(read_jsonl(tmp_path / "missing.jsonl"))
    with pytest.raises(FileNotFoundError):
        load_directory(tmp_path / "missing")


def test_load_directory_reads_only_signal_files(tmp_path: Path) -> None:
    request = {
        "resourceSpans": [
            {"scopeSpans": [{"spans": [{"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "s"}]}]}
        ],
        "resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "hello"}}]}]}],
    }
    (tmp_path / "traces-a.jsonl").write_text(json.dumps(request) + "\n", encoding="utf-8")
    (tmp_path / "notes.jsonl").write_text(json.dumps(request) + "\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "traces-b.jsonl").write_text(json.dumps(request) + "\n", encoding="utf-8")

    loaded = load_directory(tmp_path)
    assert [s.name for s in loaded.spans] == ["s"]
    assert [log.body for log in loaded.logs] == ["hello"]  # mixed line dispatched by key
    assert loaded.files == [tmp_path / "traces-a.jsonl"]

    total = Telemetry().extend(loaded).extend(load_directory(tmp_path / "notes.jsonl"))
    assert (len(total.spans), len(total.logs), len(total.files)) == (2, 2, 2)
    assert total.spans_named("s") == total.spans


# --------------------------------------------------------------------------- decoder


def test_decode_any_value_variants() -> None:
    assert decode_any_value({"stringValue": "x"}) == "x"
    assert decode_any_value({"intValue": "-9007199254740993"}) == -9007199254740993
    assert decode_any_value({"intValue": 3}) == 3
    assert decode_any_value({"doubleValue": 1.5}) == 1.5
    assert math.isnan(decode_any_value({"doubleValue": "NaN"}))
    assert decode_any_value({"doubleValue": "-Infinity"}) == -math.inf
    assert decode_any_value({"boolValue": False}) is False
    assert decode_any_value({"bytesValue": base64.b64encode(b"\x00\x01").decode()}) == b"\x00\x01"
    assert decode_any_value({"arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "a"}, {}]}}) == [
        1,
        "a",
        None,
    ]
    assert decode_any_value({"arrayValue": {}}) == []
    nested = {"kvlistValue": {"values": [{"key": "k", "value": {"kvlistValue": {"values": []}}}]}}
    assert decode_any_value(nested) == {"k": {}}
    assert decode_any_value({}) is None
    assert decode_any_value(None) is None


def test_ids_are_normalised_from_hex_and_base64() -> None:
    raw_trace, raw_span = bytes(range(16)), bytes(range(100, 108))
    assert normalize_id(raw_trace.hex().upper(), 16) == raw_trace.hex()
    assert normalize_id(base64.b64encode(raw_trace).decode(), 16) == raw_trace.hex()
    assert normalize_id(base64.b64encode(raw_span).decode(), 8) == raw_span.hex()
    assert normalize_id("", 8) is None and normalize_id(None, 8) is None
    assert normalize_id("0" * 16, 8) is None
    assert normalize_id("AAAAAAAAAAA=", 8) is None  # base64 of eight zero bytes


def test_decoder_tolerates_message_to_dict_dialect_and_missing_fields() -> None:
    trace_id, span_id = bytes(range(16)), bytes(range(8))
    request = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": base64.b64encode(trace_id).decode(),
                                "spanId": base64.b64encode(span_id).decode(),
                                "parentSpanId": "",
                                "name": "s",
                                "kind": "SPAN_KIND_SERVER",
                                "status": {"code": "STATUS_CODE_OK"},
                            },
                            {"traceId": trace_id.hex(), "spanId": "0102030405060708", "status": {"code": 2}},
                        ]
                    }
                ]
            },
            "garbage",
        ]
    }
    first, second = spans_from_request(request)
    assert (first.trace_id, first.span_id, first.parent_span_id) == (trace_id.hex(), span_id.hex(), None)
    assert (first.kind, first.status_code, first.start_ns, first.duration_s) == (2, "OK", 0, 0.0)
    assert (first.resource, first.scope, first.attributes, first.events, first.links) == ({}, "", {}, [], [])
    assert (second.kind, second.name, second.status_code) == (0, "", "ERROR")

    logs = logs_from_request(
        {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"severityNumber": "SEVERITY_NUMBER_ERROR"}, {}]}]}]}
    )
    assert [(log.severity_number, log.body, log.event_name, log.trace_id) for log in logs] == [
        (17, None, None, None),
        (0, None, None, None),
    ]

    delta_sum = {
        "aggregationTemporality": "AGGREGATION_TEMPORALITY_DELTA",
        "dataPoints": [{"asDouble": "Infinity", "timeUnixNano": "5"}, {}],
    }
    expo_point = {"count": "3", "scale": 2, "positive": {"bucketCounts": ["1", "2"]}}
    summary_point = {"count": "2", "quantileValues": [{"quantile": 0.5, "value": 1}]}
    metric_list: list[dict[str, Any]] = [
        {"name": "s", "sum": delta_sum},
        {"name": "h", "histogram": {"dataPoints": [{"count": "4", "bucketCounts": ["4"]}]}},
        {"name": "e", "exponentialHistogram": {"dataPoints": [expo_point]}},
        {"name": "q", "summary": {"dataPoints": [summary_point]}},
        {"name": "no-data"},
    ]
    metrics = metrics_from_request({"resourceMetrics": [{"scopeMetrics": [{"metrics": metric_list}]}]})
    assert [(m.name, m.kind) for m in metrics] == [
        ("s", "sum"),
        ("s", "sum"),
        ("h", "histogram"),
        ("e", "exponential_histogram"),
        ("q", "summary"),
    ]
    s1, s2, hist, expo, summary = metrics
    assert (s1.value, s1.time_ns, s1.temporality, s1.is_monotonic) == (math.inf, 5, "DELTA", False)
    assert s2.value is None
    assert (hist.count, hist.sum, hist.bucket_counts, hist.explicit_bounds) == (4, None, [4], [])
    assert hist.temporality is None
    assert (expo.count, expo.scale, expo.positive_offset, expo.positive_bucket_counts) == (3, 2, 0, [1, 2])
    assert (summary.count, summary.sum, summary.quantiles) == (2, 0.0, [(0.5, 1.0)])


def test_empty_http_request_is_accepted(otlp_receiver: OTLPReceiver) -> None:
    # An empty body is a valid (empty) protobuf message.
    status, _ = post(otlp_receiver.http_url("metrics"), b"", {"Content-Type": "application/x-protobuf"})
    assert status == 200
    assert otlp_receiver.metrics() == [] and len(otlp_receiver.requests("metrics")) == 1
