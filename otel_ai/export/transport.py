"""OTLP requests as bytes on the wire: one sender per signal, gRPC or HTTP/protobuf.

The durable layer (:mod:`otel_ai.export.durable`), the spool recovery
(:mod:`otel_ai.export.spool`) and ``otel-ai replay`` all deliver an already encoded
``Export{Trace,Logs,Metrics}ServiceRequest`` with the same code: a sender POSTs the bytes
(OTLP/HTTP) or calls the service's ``Export`` method with them (OTLP/gRPC, no re-parsing),
with a hard time limit per attempt, and says what happened in a :class:`SendResult`.
Retrying and spooling are the delivery engine's (:mod:`otel_ai.export.engine`); a sender
never retries except once on a stale keep-alive connection.

Transport settings come from the settings table (:mod:`otel_ai.config`), read as the
OpenTelemetry exporters read them: OTEL_EXPORTER_OTLP_[SIGNAL_]TIMEOUT (seconds, as in
the Python SDK), ..._COMPRESSION (``gzip``; ``deflate`` on HTTP), ..._CERTIFICATE,
..._CLIENT_KEY, ..._CLIENT_CERTIFICATE, ..._INSECURE (gRPC) and ..._HEADERS
(percent-decoded by the SDK's parser). Encoded requests are handled by
:mod:`otel_ai.export.requests`.
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import math
import ssl
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlparse

from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from ..config import SIGNALS, ConfigurationError, Settings
from ..version import __version__

logger = logging.getLogger("otel_ai")

DEFAULT_TIMEOUT_S = 10.0
# HTTP answers that mean "this endpoint does not take this signal" (a traces-only backend)
REFUSED_HTTP_STATUSES = frozenset({404, 405})
# at most this many characters of a collector's answer are repeated to the user
MAX_ECHOED_BODY = 512
USER_AGENT = f"otel-ai/{__version__}"

RESPONSE_TYPES: dict[str, type[Message]] = {
    "traces": trace_service_pb2.ExportTraceServiceResponse,
    "logs": logs_service_pb2.ExportLogsServiceResponse,
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
}
GRPC_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}
_REJECTED_FIELD = {
    "traces": "rejected_spans",
    "logs": "rejected_log_records",
    "metrics": "rejected_data_points",
}


@dataclass(frozen=True)
class SendResult:
    """What one delivery attempt came to.

    ``ok``: the collector accepted the request (``rejected`` of its items it refused,
    from a partial-success answer). Otherwise ``retryable`` says whether the same bytes
    may succeed later (collector down, hanging, 429, 503...), ``too_large`` that the
    collector refused the request for its size (split it), ``retry_after`` how long the
    collector asked us to wait. ``refused``: the endpoint does not take this signal at all
    (HTTP 404 or 405, gRPC UNIMPLEMENTED: a traces-only backend asked for logs), a
    permanent refusal, not an outage. ``status`` is the answer in short (``HTTP 422
    Unprocessable Entity``, ``gRPC UNIMPLEMENTED``; empty when nothing answered).
    """

    ok: bool
    retryable: bool = True
    too_large: bool = False
    retry_after: float | None = None
    rejected: int = 0
    detail: str = ""
    refused: bool = False
    status: str = ""

    def __post_init__(self) -> None:
        # the detail quotes what the endpoint said: never raw bytes onto a terminal
        object.__setattr__(self, "detail", escape_controls(self.detail))


MAX_DETAIL = 300


def escape_controls(text: str, limit: int = MAX_DETAIL) -> str:
    """``text`` with control characters (terminal escapes, NUL, newlines) shown as
    ``\\xNN`` escapes, cut to ``limit`` characters."""
    text = text[: limit * 2]
    if not text.isprintable():
        text = "".join(
            c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}" for c in text
        )
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Sender(Protocol):
    signal: str
    endpoint: str
    timeout: float

    def send(self, data: bytes, timeout: float | None = None) -> SendResult: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Target:
    """Where and how one signal is delivered."""

    signal: str
    protocol: str  # "grpc" | "http/protobuf"
    endpoint: str  # full URL (HTTP: with /v1/{signal})
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT_S
    compression: str = "none"  # none | gzip | deflate
    certificate: str | None = None
    client_key: str | None = None
    client_certificate: str | None = None
    insecure: bool | None = None


def target_for(
    signal: str,
    settings: Settings,
    *,
    endpoint: str | None = None,
    protocol: str | None = None,
) -> Target | None:
    """The delivery target of ``signal`` from ``settings`` (its transport rows: timeout,
    compression, certificates, insecure, headers); None when the signal has no OTLP
    endpoint (embedded default) or its exporter is not ``otlp`` (OTEL_{SIGNAL}_EXPORTER).

    ``endpoint`` / ``protocol`` override the settings (``otel-ai replay --endpoint``): an
    explicit endpoint is a base URL to which HTTP appends ``/v1/{signal}`` unless it
    already ends with it.
    """
    if settings.signal_exporter(signal) != "otlp":
        return None  # OTEL_{SIGNAL}_EXPORTER=none (or console): not sent over OTLP
    protocol = protocol or settings.signal_protocol(signal)
    if endpoint is not None:
        base = endpoint.rstrip("/")
        url = base if protocol == "grpc" or base.endswith(f"/v1/{signal}") else f"{base}/v1/{signal}"
    else:
        shared = settings.signal_endpoint(signal)
        if shared is None:
            return None
        specific = getattr(settings, f"{signal}_endpoint")
        # a signal's own endpoint is used as given; the shared one gets /v1/{signal}
        url = shared if protocol == "grpc" or specific else shared.rstrip("/") + f"/v1/{signal}"
    compression, source = settings.signal_transport(signal, "compression")
    if protocol == "grpc" and compression not in ("none", "gzip"):
        given = (
            f"configure(compression={compression!r})" if source == "argument" else f"{source}={compression!r}"
        )
        raise ConfigurationError(f"{given} is not valid: expected one of none, gzip (over gRPC)")
    return Target(
        signal=signal,
        protocol=protocol,
        endpoint=url,
        headers=settings.signal_headers(signal),
        timeout=float(settings.signal_transport(signal, "timeout")[0]),
        compression=str(compression),
        certificate=settings.signal_transport(signal, "certificate")[0],
        client_key=settings.signal_transport(signal, "client_key")[0],
        client_certificate=settings.signal_transport(signal, "client_certificate")[0],
        insecure=settings.signal_transport(signal, "insecure")[0],
    )


def make_sender(target: Target) -> Sender:
    """A :class:`GrpcSender` or :class:`HttpSender` for ``target``."""
    if target.protocol == "grpc":
        return GrpcSender(target)
    return HttpSender(target)


def senders_for(settings: Settings) -> dict[str, Sender]:
    """One sender per signal that has an OTLP endpoint."""
    result: dict[str, Sender] = {}
    for signal in SIGNALS:
        target = target_for(signal, settings)
        if target is not None:
            result[signal] = make_sender(target)
    return result


def _is_otlp_answer(signal: str, payload: bytes, content_type: str = "") -> bool:
    """An empty body, an Export*ServiceResponse, or (from a JSON-speaking backend) JSON."""
    if not payload.strip():
        return True
    try:
        RESPONSE_TYPES[signal]().ParseFromString(payload)
        return True
    except (DecodeError, ValueError):
        pass
    try:
        json.loads(payload)
        return True
    except ValueError:
        return False


def _rejected(signal: str, payload: bytes) -> tuple[int, str]:
    """Items refused in a partial-success answer, and the collector's message."""
    if not payload:
        return 0, ""
    try:
        response = RESPONSE_TYPES[signal]()
        response.ParseFromString(payload)
    except (DecodeError, ValueError):
        return 0, ""
    if not response.HasField("partial_success"):
        return 0, ""
    partial = getattr(response, "partial_success")  # noqa: B009 - one field of three message types
    return int(getattr(partial, _REJECTED_FIELD[signal])), str(partial.error_message)


# --------------------------------------------------------------------------- gRPC


class GrpcSender:
    """Calls ``{Service}/Export`` with the request bytes as they are (no re-encoding)."""

    # gRPC status names that mean "the collector refused this request for its size"
    _TOO_LARGE_HINTS = ("larger than max", "message too large", "too large")

    def __init__(self, target: Target) -> None:
        import grpc  # imported here: ~100 ms at start-up, a price only its users pay

        self._grpc = grpc
        self.signal = target.signal
        self.endpoint = target.endpoint
        self.timeout = target.timeout
        parsed = urlparse(target.endpoint)
        address = parsed.netloc or target.endpoint
        insecure = target.insecure if target.insecure is not None else parsed.scheme == "http"
        if parsed.scheme == "https":
            insecure = False
        options = [
            ("grpc.primary_user_agent", USER_AGENT),
            # after a collector outage, reconnect within seconds rather than gRPC's 2 min
            ("grpc.initial_reconnect_backoff_ms", 250),
            ("grpc.min_reconnect_backoff_ms", 250),
            ("grpc.max_reconnect_backoff_ms", 2000),
            ("grpc.enable_retries", 0),  # retrying is ours to decide
        ]
        compression = (
            grpc.Compression.Gzip if target.compression == "gzip" else grpc.Compression.NoCompression
        )
        if insecure:
            channel = grpc.insecure_channel(address, options=options, compression=compression)
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(target.certificate),
                private_key=_read(target.client_key),
                certificate_chain=_read(target.client_certificate),
            )
            channel = grpc.secure_channel(address, credentials, options=options, compression=compression)
        self._channel = channel
        self._metadata = tuple((k.lower(), v) for k, v in target.headers.items())
        # no serializer: the request bytes go out as they are, the answer comes back raw
        self._export = channel.unary_unary(GRPC_METHODS[target.signal])
        self._lock = threading.Lock()
        self._inflight: Any = None
        self._closed = False

    def send(self, data: bytes, timeout: float | None = None) -> SendResult:
        grpc = self._grpc
        limit = self.timeout if timeout is None else max(timeout, 0.001)
        with self._lock:
            if self._closed:
                return SendResult(False, detail="sender closed")
            future = self._export.future(data, timeout=limit, metadata=self._metadata or None)
            self._inflight = future
        try:
            payload = future.result()
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else None
            details = (error.details() if hasattr(error, "details") else "") or ""
            name = code.name if code is not None else "UNKNOWN"
            detail = f"gRPC {name}: {printable(details)}"
            if code == grpc.StatusCode.UNIMPLEMENTED:
                # the server has no such service: it will never take this signal
                return SendResult(False, retryable=False, refused=True, detail=detail, status=f"gRPC {name}")
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED and any(
                h in details.lower() for h in self._TOO_LARGE_HINTS
            ):
                return SendResult(False, retryable=False, too_large=True, detail=detail)
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                return SendResult(False, retryable=False, detail=detail)
            return SendResult(
                False,
                retryable=True,
                retry_after=_grpc_retry_after(error),
                detail=detail,
                status=f"gRPC {name}",
            )
        except Exception as error:  # noqa: BLE001 - a transport failure of any kind
            return SendResult(False, retryable=True, detail=f"{type(error).__name__}: {error}")
        finally:
            with self._lock:
                self._inflight = None
        rejected, message = _rejected(self.signal, payload if isinstance(payload, bytes) else b"")
        return SendResult(True, rejected=rejected, detail=message, status="gRPC OK")

    def close(self) -> None:
        """Cancel the request in flight, if any, and close the channel."""
        with self._lock:
            self._closed = True
            inflight = self._inflight
        if inflight is not None:
            inflight.cancel()
        try:
            self._channel.close()
        except Exception as exc:  # noqa: BLE001 - closing is best effort
            logger.debug("otel_ai: closing the gRPC channel: %s", exc)


def _grpc_retry_after(error: Any) -> float | None:
    """The delay a gRPC server asked for: a ``google.rpc.RetryInfo`` in the status details
    of the trailing metadata (what the OTLP specification has servers send with
    UNAVAILABLE or RESOURCE_EXHAUSTED), None without one."""
    try:
        metadata = error.trailing_metadata() or ()
    except Exception:  # noqa: BLE001 - an error without metadata
        return None
    for key, value in metadata:
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            return None
        for detail in status.details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                delay = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
                return delay if math.isfinite(delay) and delay >= 0 else None
    return None


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as handle:
        return handle.read()


# --------------------------------------------------------------------------- HTTP


class HttpSender:
    """POSTs the request bytes (``application/x-protobuf``) on a keep-alive connection."""

    def __init__(self, target: Target) -> None:
        self.signal = target.signal
        self.endpoint = target.endpoint
        self.timeout = target.timeout
        parsed = urlparse(target.endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigurationError(f"OTLP endpoint {target.endpoint!r} is not an http(s) URL")
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname
        self._port = parsed.port or (443 if self._https else 80)
        self._path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        self._compression = target.compression
        self._headers = {
            "Content-Type": "application/x-protobuf",
            "User-Agent": USER_AGENT,
            **dict(target.headers),
        }
        if self._compression != "none":
            self._headers["Content-Encoding"] = self._compression
        self._ssl: ssl.SSLContext | None = None
        if self._https:
            context = ssl.create_default_context(cafile=target.certificate)
            if target.client_certificate:
                context.load_cert_chain(target.client_certificate, target.client_key)
            self._ssl = context
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None
        self._closed = False
        self._odd_answer_said = False

    def _compress(self, data: bytes) -> bytes:
        if self._compression == "gzip":
            return gzip.compress(data, compresslevel=5)
        if self._compression == "deflate":
            return zlib.compress(data)
        return data

    def _connect(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            connection = self._connection
            self._connection = None
        if connection is not None:
            return connection, True
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=self._ssl
            ), False
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout), False

    def send(self, data: bytes, timeout: float | None = None) -> SendResult:
        limit = self.timeout if timeout is None else max(timeout, 0.001)
        deadline = time.monotonic() + limit
        if self._closed:
            return SendResult(False, detail="sender closed")
        body = self._compress(data)
        for attempt in (0, 1):
            connection, reused = self._connect(limit)
            try:
                connection.timeout = max(deadline - time.monotonic(), 0.001)
                if connection.sock is not None:
                    connection.sock.settimeout(connection.timeout)
                connection.request("POST", self._path, body=body, headers=self._headers)
                if connection.sock is not None:
                    connection.sock.settimeout(max(deadline - time.monotonic(), 0.001))
                response = connection.getresponse()
                payload = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as error:
                connection.close()
                if attempt == 0 and reused and time.monotonic() < deadline:
                    continue  # a keep-alive connection the server had closed: once more, fresh
                return SendResult(False, detail=f"{type(error).__name__}: {error}")
            except Exception as error:  # noqa: BLE001 - refused, timed out, TLS, anything
                connection.close()
                return SendResult(False, detail=f"{type(error).__name__}: {error}")
            if response.will_close or self._closed:
                connection.close()
            else:
                with self._lock:
                    if self._connection is None:
                        self._connection = connection
                    else:
                        connection.close()
            content_type = (response.getheader("Content-Type") or "").lower()
            return self._result(
                response.status, response.reason, payload, response.getheader("Retry-After"), content_type
            )
        return SendResult(False, detail="unreachable")  # pragma: no cover - the loop returns

    def _result(
        self, status: int, reason: str, payload: bytes, retry_after: str | None, content_type: str = ""
    ) -> SendResult:
        detail = f"HTTP {status} {reason}".strip()
        if 200 <= status < 300:
            if not _is_otlp_answer(self.signal, payload, content_type):
                if "html" in content_type or payload.lstrip()[:1] == b"<":
                    # a web page (a UI, a login portal), not a collector: the data did not
                    # arrive; keep it and say so
                    return SendResult(
                        False,
                        retryable=True,
                        detail=f"{detail} with a web page, not an OTLP answer: "
                        f"is {self.endpoint} the collector's OTLP endpoint? {payload[:120]!r}",
                    )
                if not self._odd_answer_said:
                    self._odd_answer_said = True
                    logger.warning(
                        "otel_ai: %s answered %s with a body that is not an OTLP response (%s); counted as "
                        "delivered",
                        self.endpoint,
                        detail,
                        escape_controls(repr(payload[:120])),
                    )
            rejected, message = _rejected(self.signal, payload)
            return SendResult(True, rejected=rejected, detail=message, status=detail)
        if status in REFUSED_HTTP_STATUSES:
            # no such endpoint, or no POST on it: this backend does not take this signal
            return SendResult(
                False, retryable=False, refused=True, detail=_with_body(detail, payload), status=detail
            )
        if status == 413:
            return SendResult(False, retryable=False, too_large=True, detail=detail)
        if status == 400:
            text = payload[:200].decode("utf-8", "replace")
            return SendResult(False, retryable=False, detail=f"{detail}: {text}")
        if 400 <= status < 500:
            # the body says what is wrong (MLflow's 422 names the header it misses)
            detail = _with_body(detail, payload)
        # 429, 5xx, and misconfiguration (401, 403, 422...): keep the data, try again later
        return SendResult(
            False,
            retryable=True,
            retry_after=_retry_after(retry_after),
            detail=detail,
            status=f"HTTP {status} {reason}".strip(),
        )

    def close(self) -> None:
        self._closed = True
        with self._lock:
            connection = self._connection
            self._connection = None
        if connection is not None:
            connection.close()


def printable(text: str, limit: int = MAX_ECHOED_BODY) -> str:
    """``text`` fit for one line of a terminal or log: control characters (the ESC that
    starts an escape sequence, newlines) and runs of white space become one space, and
    the whole is cut at ``limit`` characters."""
    cleaned = " ".join("".join(ch if ch.isprintable() else " " for ch in text[: limit * 4]).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _with_body(detail: str, payload: bytes) -> str:
    """``HTTP 422 Unprocessable Entity: {the body}``, the body bounded and printable."""
    text = printable(payload[: MAX_ECHOED_BODY * 4].decode("utf-8", "replace"))
    return f"{detail}: {text}" if text else detail


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)
