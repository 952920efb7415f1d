"""The one delivery engine (otel_ai.export.engine): backoff with jitter, the collector's
Retry-After (HTTP) and RetryInfo (gRPC) honoured, the same loop for spool and replay."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2

from otel_ai.config import resolve
from otel_ai.export.engine import JITTER, MAX_RETRY_AFTER_S, Backoff
from otel_ai.export.requests import REQUEST_TYPES
from otel_ai.export.spool import OwnSpool, deliver_pending
from otel_ai.export.transport import GRPC_METHODS, Target, make_sender


def _request() -> bytes:
    request = REQUEST_TYPES["traces"]()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, "spooled span"
    return bytes(request.SerializeToString())


def test_backoff_doubles_to_its_cap_with_jitter_below_the_step() -> None:
    backoff = Backoff(first_s=0.25, cap_s=2.0)
    steps = [0.25, 0.5, 1.0, 2.0, 2.0]
    for step in steps:
        delay = backoff.next_delay()
        assert step * (1 - JITTER) <= delay <= step
    backoff.reset()
    assert backoff.next_delay() <= 0.25


def test_retry_after_wins_over_the_backoff_and_is_bounded() -> None:
    backoff = Backoff()
    assert backoff.next_delay(7.0) == 7.0
    assert backoff.next_delay(3600.0) == MAX_RETRY_AFTER_S


def test_jitter_leaves_the_experiments_random_sequence_alone() -> None:
    random.seed(1234)
    expected = [random.random() for _ in range(3)]
    random.seed(1234)
    backoff = Backoff()
    for _ in range(5):
        backoff.next_delay()
    assert [random.random() for _ in range(3)] == expected


# --------------------------------------------------------------------------- HTTP Retry-After


class _Collector(ThreadingHTTPServer):
    def __init__(self, retry_after: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.retry_after = retry_after
        self.attempts: list[float] = []


class _Handler(BaseHTTPRequestHandler):
    server: _Collector

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.attempts.append(time.monotonic())
        if len(self.server.attempts) == 1:
            self.send_response(503)
            self.send_header("Retry-After", self.server.retry_after)
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[_Collector]:
    server = _Collector("2")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_spool_recovery_waits_as_long_as_the_collectors_retry_after(
    tmp_path: Path, collector: _Collector
) -> None:
    """A 503 with Retry-After: 2 (above the first backoff steps): the engine waits that
    long before the next try, then delivers and empties the dead process's spool."""
    spool = OwnSpool(tmp_path)
    spool.write("traces", (1,), 1, _request())
    spool.close(remove_if_empty=False)
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
    settings = resolve(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_AI_DATA_DIR": str(tmp_path)})
    report = deliver_pending(tmp_path, settings, time.monotonic() + 20.0)
    assert report.delivered_items["traces"] == 1 and report.complete, report.summary()
    assert len(collector.attempts) == 2
    assert collector.attempts[1] - collector.attempts[0] >= 1.9


# --------------------------------------------------------------------------- gRPC RetryInfo


def _unavailable_with_retry_info(request: bytes, context: grpc.ServicerContext) -> bytes:
    info = error_details_pb2.RetryInfo(retry_delay=Duration(seconds=3, nanos=500_000_000))
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message="busy")
    status.details.add().Pack(info)
    context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
    context.abort(grpc.StatusCode.UNAVAILABLE, "busy")
    raise AssertionError("abort raises")  # pragma: no cover


def test_grpc_retry_info_is_the_delay_asked_for() -> None:
    handler = grpc.method_handlers_generic_handler(
        GRPC_METHODS["traces"].split("/")[1],
        {"Export": grpc.unary_unary_rpc_method_handler(_unavailable_with_retry_info)},
    )
    executor = futures.ThreadPoolExecutor(max_workers=2)
    server = grpc.server(executor, handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sender = make_sender(
        Target(signal="traces", protocol="grpc", endpoint=f"http://127.0.0.1:{port}", timeout=5.0)
    )
    try:
        result = sender.send(_request())
    finally:
        sender.close()
        server.stop(grace=0).wait(5.0)
        executor.shutdown(wait=True)
    assert not result.ok and result.retryable, result
    assert result.retry_after == pytest.approx(3.5)
    assert "UNAVAILABLE" in result.detail
