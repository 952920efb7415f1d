"""A real, in-process OTLP receiver for tests (gRPC and HTTP/protobuf).

:class:`OTLPReceiver` listens on ``127.0.0.1`` with OS-chosen free ports:

* a gRPC server implementing the OTLP ``TraceService``, ``LogsService`` and
  ``MetricsService`` (``grpc_endpoint``), and
* an HTTP server accepting ``POST /v1/traces``, ``/v1/logs`` and
  ``/v1/metrics`` with ``Content-Type: application/x-protobuf`` and optional
  ``Content-Encoding: gzip`` / ``deflate`` (``http_endpoint``; exporters given
  an explicit endpoint need the full ``/v1/<signal>`` URL).

Every accepted request is stored as its decoded protobuf message.  The
accessors :meth:`OTLPReceiver.spans`, :meth:`OTLPReceiver.logs` and
:meth:`OTLPReceiver.metrics` make records of them with the same functions that
read OTLP/JSON files (:mod:`otel_ai.read`, which parses each line into these
messages first), so wire data and file data are compared with one decoder.

Set :attr:`OTLPReceiver.mode` to make the receiver misbehave:

* ``"ok"`` -- accept and store (default);
* ``"unavailable"`` -- refuse with gRPC ``UNAVAILABLE`` / HTTP 503 (not stored);
* ``"hang"`` -- block until :meth:`OTLPReceiver.stop`, another mode is set, or
  ``hang_timeout`` seconds, then refuse like ``"unavailable"`` (not stored).

A backend that takes only some signals (a traces-only backend such as MLflow):
``OTLPReceiver(signals=("traces",))`` serves only those, the others answer as a real
server without them does (HTTP 404, gRPC ``UNIMPLEMENTED``: their services are not
registered). :attr:`OTLPReceiver.answers` makes HTTP answer a signal with a given status
and body instead (``{"logs": (405, b"")}``, ``{"traces": (422, b'{"error": ...}')}``).

Refused requests are counted, see :meth:`OTLPReceiver.rejected`.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, get_args

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from otel_ai.read import (
    LogRecordData,
    MetricPoint,
    SpanRecord,
    logs_from_message,
    metrics_from_message,
    spans_from_message,
)

__all__ = ["Mode", "OTLPReceiver", "ReceivedRequest", "Signal", "Transport"]

Signal = Literal["traces", "logs", "metrics"]
Transport = Literal["grpc", "http"]
Mode = Literal["ok", "unavailable", "hang"]

SIGNALS: tuple[Signal, ...] = get_args(Signal)

_REQUEST_TYPES: dict[Signal, type[Message]] = {
    "traces": trace_service_pb2.ExportTraceServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
}
_RESPONSE_TYPES: dict[Signal, type[Message]] = {
    "traces": trace_service_pb2.ExportTraceServiceResponse,
    "logs": logs_service_pb2.ExportLogsServiceResponse,
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
}
_HTTP_PATHS: dict[str, Signal] = {f"/v1/{signal}": signal for signal in SIGNALS}


@dataclass(frozen=True)
class ReceivedRequest:
    """One export request accepted by the receiver.

    Attributes:
        signal: ``"traces"``, ``"logs"`` or ``"metrics"``.
        transport: ``"grpc"`` or ``"http"``.
        message: The decoded ``Export*ServiceRequest`` protobuf.
        headers: gRPC metadata or HTTP headers, keys lowercased.
        received_at: ``time.monotonic()`` at arrival.
    """

    signal: Signal
    transport: Transport
    message: Message
    headers: dict[str, str] = field(default_factory=dict)
    received_at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The request in the protobuf-JSON mapping (``MessageToDict``)."""
        result: dict[str, Any] = MessageToDict(self.message)
        return result


class OTLPReceiver:
    """In-process OTLP/gRPC + OTLP/HTTP receiver storing what it gets.

    Use as a context manager (starts on enter, stops on exit) or call
    :meth:`start` / :meth:`stop`.  All accessors are thread-safe.

    Args:
        mode: Initial behaviour, see the module docstring.
        hang_timeout: Longest time a request blocks in ``"hang"`` mode.
    """

    def __init__(
        self, *, mode: Mode = "ok", hang_timeout: float = 30.0, signals: tuple[Signal, ...] = SIGNALS
    ) -> None:
        self._mode: Mode = mode
        self._unhang = threading.Event()  # set: requests blocked by "hang" are answered
        self.hang_timeout = hang_timeout
        self.signals = tuple(signals)
        self.answers: dict[Signal, tuple[int, bytes]] = {}
        self._lock = threading.Lock()
        self._received: list[ReceivedRequest] = []
        self._rejected: dict[tuple[Signal, Transport], int] = {}
        self._stopping = threading.Event()
        self._grpc_server: grpc.Server | None = None
        self._grpc_executor: futures.ThreadPoolExecutor | None = None
        self._http_server: _HTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._grpc_port = 0
        self._http_port = 0

    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        self._mode = mode
        if mode == "hang":
            self._unhang.clear()
        else:
            self._unhang.set()  # what hangs now is refused; the next try gets the new mode

    # ------------------------------------------------------------ lifecycle

    def start(self) -> OTLPReceiver:
        """Start both servers (idempotent); returns ``self``."""
        if self._grpc_server is not None:
            return self
        self._stopping.clear()
        if self._mode == "hang":
            self._unhang.clear()
        self._grpc_executor = futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="otlp-grpc")
        server = grpc.server(self._grpc_executor, interceptors=[_UnservedCounter(self)])
        if "traces" in self.signals:
            trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceServicer(self), server)
        if "logs" in self.signals:
            logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsServicer(self), server)
        if "metrics" in self.signals:
            metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsServicer(self), server)
        self._grpc_port = server.add_insecure_port("127.0.0.1:0")
        if not self._grpc_port:
            raise RuntimeError("could not bind a gRPC port on 127.0.0.1")
        server.start()
        self._grpc_server = server

        http_server = _HTTPServer(("127.0.0.1", 0), _OTLPHTTPHandler, self)
        self._http_port = http_server.server_address[1]
        self._http_thread = threading.Thread(
            target=http_server.serve_forever, kwargs={"poll_interval": 0.05}, name="otlp-http", daemon=True
        )
        self._http_thread.start()
        self._http_server = http_server
        return self

    def stop(self) -> None:
        """Stop both servers, releasing any hanging request (idempotent)."""
        self._stopping.set()
        self._unhang.set()
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=0.5).wait(5.0)
            self._grpc_server = None
        if self._grpc_executor is not None:
            self._grpc_executor.shutdown(wait=True, cancel_futures=True)
            self._grpc_executor = None
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_server = None
        if self._http_thread is not None:
            self._http_thread.join(5.0)
            self._http_thread = None

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def grpc_endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` of the gRPC server."""
        return f"http://127.0.0.1:{self._grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` of the HTTP server (append ``/v1/<signal>``)."""
        return f"http://127.0.0.1:{self._http_port}"

    def http_url(self, signal: Signal) -> str:
        """Full OTLP/HTTP URL for ``signal``, e.g. ``http://127.0.0.1:PORT/v1/traces``."""
        return f"{self.http_endpoint}/v1/{signal}"

    # ------------------------------------------------------------ accessors

    def received(
        self, signal: Signal | None = None, transport: Transport | None = None
    ) -> list[ReceivedRequest]:
        """Accepted requests (with transport and headers), oldest first."""
        with self._lock:
            items = list(self._received)
        return [
            item
            for item in items
            if (signal is None or item.signal == signal)
            and (transport is None or item.transport == transport)
        ]

    def requests(self, signal: Signal, transport: Transport | None = None) -> list[Message]:
        """Accepted ``Export*ServiceRequest`` protobufs of ``signal``, oldest first."""
        return [item.message for item in self.received(signal, transport)]

    def spans(self, transport: Transport | None = None) -> list[SpanRecord]:
        """All received spans, decoded by :func:`otel_ai.read.spans_from_message`."""
        return [
            rec for item in self.received("traces", transport) for rec in spans_from_message(item.message)
        ]

    def logs(self, transport: Transport | None = None) -> list[LogRecordData]:
        """All received log records, decoded by ``logs_from_message``."""
        return [rec for item in self.received("logs", transport) for rec in logs_from_message(item.message)]

    def metrics(self, transport: Transport | None = None) -> list[MetricPoint]:
        """All received metric points, decoded by ``metrics_from_message``."""
        return [
            rec for item in self.received("metrics", transport) for rec in metrics_from_message(item.message)
        ]

    def rejected(self, signal: Signal | None = None, transport: Transport | None = None) -> int:
        """Number of requests refused: in ``"unavailable"`` or ``"hang"`` mode, for a
        signal not served, or answered from :attr:`answers`."""
        with self._lock:
            return sum(
                count
                for (sig, trans), count in self._rejected.items()
                if (signal is None or sig == signal) and (transport is None or trans == transport)
            )

    def clear(self) -> None:
        """Forget all received requests and rejection counts."""
        with self._lock:
            self._received.clear()
            self._rejected.clear()

    def wait_for(
        self, predicate: Callable[[OTLPReceiver], bool], timeout: float = 10.0, interval: float = 0.02
    ) -> bool:
        """Poll ``predicate(self)`` until it is true or ``timeout`` seconds pass.

        Returns the last result, so ``assert receiver.wait_for(...)`` reads well.
        """
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)

    # ------------------------------------------------------------ internals

    def _admit(self, signal: Signal, transport: Transport) -> bool:
        """Apply :attr:`mode`; ``True`` if the request should be accepted."""
        mode = self.mode
        if mode == "ok":
            return True
        if mode == "hang":
            self._unhang.wait(self.hang_timeout)
        with self._lock:
            key = (signal, transport)
            self._rejected[key] = self._rejected.get(key, 0) + 1
        return False

    def _store(self, signal: Signal, transport: Transport, message: Message, headers: dict[str, str]) -> None:
        item = ReceivedRequest(signal, transport, message, headers, time.monotonic())
        with self._lock:
            self._received.append(item)

    def _handle_grpc(self, signal: Signal, request: Message, context: grpc.ServicerContext) -> Message:
        if not self._admit(signal, "grpc"):
            context.abort(grpc.StatusCode.UNAVAILABLE, f"test receiver in mode {self.mode!r}")
        headers = {
            str(k).lower(): v if isinstance(v, str) else repr(v) for k, v in context.invocation_metadata()
        }
        self._store(signal, "grpc", request, headers)
        return _RESPONSE_TYPES[signal]()


_GRPC_SIGNALS: dict[str, Signal] = {
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export": "traces",
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export": "logs",
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export": "metrics",
}


class _UnservedCounter(grpc.ServerInterceptor):
    """Counts the calls of a signal whose service is not registered (gRPC answers them
    UNIMPLEMENTED itself)."""

    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        signal = _GRPC_SIGNALS.get(handler_call_details.method)
        if signal is not None and signal not in self._receiver.signals:
            with self._receiver._lock:
                key = (signal, "grpc")
                self._receiver._rejected[key] = self._receiver._rejected.get(key, 0) + 1
        return continuation(handler_call_details)


class _TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Message, context: grpc.ServicerContext) -> Message:  # noqa: N802
        return self._receiver._handle_grpc("traces", request, context)


class _LogsServicer(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Message, context: grpc.ServicerContext) -> Message:  # noqa: N802
        return self._receiver._handle_grpc("logs", request, context)


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Message, context: grpc.ServicerContext) -> Message:  # noqa: N802
        return self._receiver._handle_grpc("metrics", request, context)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], receiver: OTLPReceiver
    ):
        self.receiver = receiver
        super().__init__(address, handler)


class _OTLPHTTPHandler(BaseHTTPRequestHandler):
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Keep test output quiet."""

    def _reply(self, status: HTTPStatus, body: bytes = b"", content_type: str = "text/plain") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # client went away (e.g. after a "hang")
            pass

    def _count_refused(self, signal: Signal | None) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)  # the body, so that the connection stays usable
        if signal is not None:
            receiver = self.server.receiver
            with receiver._lock:
                key = (signal, "http")
                receiver._rejected[key] = receiver._rejected.get(key, 0) + 1

    def do_POST(self) -> None:
        signal = _HTTP_PATHS.get(self.path.split("?", 1)[0].rstrip("/"))
        receiver = self.server.receiver
        if signal is None or signal not in receiver.signals:
            self._count_refused(signal)
            self._reply(HTTPStatus.NOT_FOUND, b"404 page not found")
            return
        answer = receiver.answers.get(signal)
        if answer is not None:
            self._count_refused(signal)
            self._reply(HTTPStatus(answer[0]), answer[1], "application/json")
            return
        length = self.headers.get("Content-Length")
        if length is None:
            self._reply(HTTPStatus.LENGTH_REQUIRED, b"Content-Length required")
            return
        body = self.rfile.read(int(length))
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/x-protobuf":
            self._reply(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, b"only application/x-protobuf is supported")
            return
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            elif encoding != "identity":
                self._reply(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, b"unsupported Content-Encoding")
                return
            message = _REQUEST_TYPES[signal]()
            message.ParseFromString(body)
        except (OSError, EOFError, zlib.error, DecodeError) as error:
            self._reply(HTTPStatus.BAD_REQUEST, f"cannot decode request: {error}".encode())
            return
        if not receiver._admit(signal, "http"):
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, b"test receiver unavailable")
            return
        headers = {key.lower(): value for key, value in self.headers.items()}
        receiver._store(signal, "http", message, headers)
        self._reply(HTTPStatus.OK, _RESPONSE_TYPES[signal]().SerializeToString(), "application/x-protobuf")
