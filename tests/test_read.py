"""The read side decodes with protobuf's JSON mapping: what the SDK's OTLP/JSON file
exporters wrote parses into opentelemetry-proto's messages (hex ids included) and reads
back into records; a corrupt piece of a line costs only that piece."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.json.file import FileMetricExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from test_otlp_receiver import emit_telemetry, exporters_for, hex_span, hex_trace

from otel_ai.read import (
    Telemetry,
    load_directory,
    otlp_structs,
    parse_request,
    spans_from_message,
    spans_from_request,
)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_line_parses_into_the_otlp_message_with_its_hex_ids(tmp_path: Path) -> None:
    emitted = emit_telemetry([exporters_for("file", directory=tmp_path)])
    lines = _lines(tmp_path / "traces-1.jsonl")
    messages = [parse_request(line, ExportTraceServiceRequest()) for line in lines]
    spans = [span for m in messages for span in m.resource_spans[0].scope_spans[0].spans]
    child = next(span for span in spans if span.name == "tool.call")
    assert (child.trace_id.hex(), child.span_id.hex()) == (hex_trace(emitted.child), hex_span(emitted.child))
    assert child.parent_span_id.hex() == hex_span(emitted.root)
    assert child.links[0].span_id.hex() == hex_span(emitted.linked)
    assert (child.kind, child.status.code) == (3, 2)  # CLIENT, ERROR
    # the message, the line and the message in the generic mapping (base64 ids, enum
    # names) read back alike
    for line, message in zip(lines, messages, strict=True):
        records = spans_from_request(line)
        assert records and records == spans_from_message(message) == spans_from_request(
            MessageToDict(message)
        )


def test_exemplar_ids_parse_from_hex(tmp_path: Path) -> None:
    tracer_provider = TracerProvider()
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    counter = meter_provider.get_meter("m").create_counter("ai.things")
    with tracer_provider.get_tracer("t").start_as_current_span("inside") as span:
        counter.add(1)
    data = reader.get_metrics_data()
    assert data is not None
    exporter = FileMetricExporter(tmp_path / "metrics-1.jsonl")
    assert exporter.export(data).name == "SUCCESS"
    exporter.shutdown()
    (line,) = _lines(tmp_path / "metrics-1.jsonl")
    assert '"exemplars"' in json.dumps(line)

    message = parse_request(line, ExportMetricsServiceRequest())
    point = message.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0]
    (exemplar,) = point.exemplars
    assert exemplar.trace_id.hex() == hex_trace(span.get_span_context())
    assert exemplar.span_id.hex() == hex_span(span.get_span_context())
    assert load_directory(tmp_path).metric_points("ai.things")[0].value == 1


def test_what_exporters_write_takes_the_quick_way_and_the_rest_reads_alike(tmp_path: Path) -> None:
    emit_telemetry([exporters_for("file", directory=tmp_path)])
    requests = {
        "traces": otlp_structs.TraceRequest,
        "logs": otlp_structs.LogsRequest,
        "metrics": otlp_structs.MetricsRequest,
    }
    for name, request in requests.items():
        for line in _lines(tmp_path / f"{name}-1.jsonl"):
            assert otlp_structs.convert(line, request) is not None, line  # msgspec took it whole
    line = next(line for line in _lines(tmp_path / "traces-1.jsonl") if "tool.call" in json.dumps(line))
    (quick,) = spans_from_request(line)
    span = line["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    # not as OTLP/JSON writes it: the quick way refuses, the protobuf mapping reads it alike
    generic = json.loads(json.dumps(line))
    generic_span = generic["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    generic_span.update(
        traceId=base64.b64encode(bytes.fromhex(span["traceId"])).decode(),
        kind="SPAN_KIND_CLIENT",
        status={**span["status"], "code": "STATUS_CODE_ERROR"},
    )
    assert otlp_structs.convert(generic, otlp_structs.TraceRequest) is None
    assert spans_from_request(generic) == [quick]
    # 64-bit unsigned times beyond int64, and below 0: read as the protobuf mapping does
    generic_span.update(startTimeUnixNano=str(2**64 - 1), endTimeUnixNano="-1")
    assert otlp_structs.convert(generic, otlp_structs.TraceRequest) is None
    (odd,) = spans_from_request(generic)
    assert (odd.start_ns, odd.end_ns) == (2**64 - 1, 0)  # -1 is no uint64: left out
    assert replace(odd, start_ns=quick.start_ns, end_ns=quick.end_ns) == quick


def test_a_corrupt_piece_of_a_line_costs_only_itself(tmp_path: Path) -> None:
    emit_telemetry([exporters_for("file", directory=tmp_path)])
    good = load_directory(tmp_path).spans
    traces = tmp_path / "traces-1.jsonl"
    lines = _lines(traces)
    assert [len(line["resourceSpans"][0]["scopeSpans"][0]["spans"]) for line in lines] == [1, 1, 1]
    spans = [line["resourceSpans"][0]["scopeSpans"][0]["spans"][0] for line in lines]
    assert [span["name"] for span in spans] == ["unrelated", "tool.call", "agent.run"]
    spans[0]["startTimeUnixNano"] = "soon"  # not a number
    spans[1]["attributes"] = [{"key": "broken", "value": {"intValue": "many"}}]  # not an int
    spans[1]["kind"], spans[1]["status"]["code"] = "CLIENT", "ERROR"  # short enum names
    request = lines[0]
    request["resourceSpans"][0]["scopeSpans"][0]["spans"] = [spans[0], "not a span", spans[1], spans[2]]
    request["resourceSpans"].append(["not", "a", "resource"])
    traces.write_text(json.dumps(request) + "\n", encoding="utf-8")

    read = load_directory(tmp_path)
    assert read.skipped_lines == 0
    assert read.spans[0] == replace(good[0], start_ns=0)
    # the value that cannot be read reads as None, its key kept
    assert read.spans[1] == replace(good[1], attributes={"broken": None})
    assert read.spans[2] == good[2]
    assert len(read.spans) == 3


def _places(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``obj``."""
    inside: list[Any] = list(obj.items()) if isinstance(obj, dict) else list(enumerate(obj))
    found = [path] if path else []
    for key, value in inside:
        found += _places(value, (*path, key)) if isinstance(value, (dict, list)) else [(*path, key)]
    return found


@pytest.fixture(scope="module")
def real_lines(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("lines")
    emit_telemetry([exporters_for("file", directory=directory)])
    return [line for name in ("traces", "logs", "metrics") for line in _lines(directory / f"{name}-1.jsonl")]


JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=40),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=12), st.integers() | st.text(max_size=5), max_size=3),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_damage_to_a_real_line_reads_without_raising(
    real_lines: list[dict[str, Any]], data: st.DataObject
) -> None:
    line = json.loads(json.dumps(real_lines[data.draw(st.integers(0, len(real_lines) - 1))]))
    places = _places(line)
    for _ in range(data.draw(st.integers(1, 4))):
        *parents, last = data.draw(st.sampled_from(places))
        target: Any = line
        try:
            for key in parents:
                target = target[key]
            target[last] = data.draw(JUNK)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier damage removed the place
    telemetry = Telemetry()
    telemetry.add_request(line)
    assert len(telemetry.spans) + len(telemetry.logs) <= 3


@pytest.mark.parametrize("number", [float("inf"), float("-inf"), 1e300])
def test_a_number_no_integer_can_hold_leaves_only_its_field_out(
    real_lines: list[dict[str, Any]], number: float
) -> None:
    """JSON ``Infinity`` (which Python's json reads) or 1e300 where OTLP has an integer:
    the parser's int() raised OverflowError, which no reader caught (`otel-ai show` died)."""
    (line,) = [json.loads(json.dumps(line)) for line in real_lines if "resourceLogs" in line]
    intact = Telemetry()
    intact.add_request(line)
    records = line["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    records[0]["severityNumber"] = number
    records[0]["observedTimeUnixNano"] = number
    telemetry = Telemetry()
    telemetry.add_request(line)
    assert [r.body for r in telemetry.logs] == [r.body for r in intact.logs]
    assert telemetry.logs[0].severity_number != intact.logs[0].severity_number
