"""The settings table: every setting once, with its variable, type and default.

Explicit arguments beat environment variables, variables beat defaults. A bad value is a
:class:`ConfigurationError` that names the argument or the variable and what it expects.
Nothing here reads the environment at import time.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


class ConfigurationError(ValueError):
    """A setting has a value otel_ai cannot use; the message names it and the fix."""


PROTOCOLS = ("grpc", "http/protobuf")
SIGNALS = ("traces", "logs", "metrics")
# under OTEL_AI_DATA_DIR: what could not be delivered over OTLP yet (otel_ai.export.spool)
SPOOL_DIR = "spool"
# OTEL_{TRACES,LOGS,METRICS}_EXPORTER: otlp (OTLP when an endpoint is set, else the
# embedded default's files), console (the SDK's console exporter, on stdout), none (off)
EXPORTERS = ("otlp", "console", "none")


def _parse_str(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("expected a non-empty string")
    return value


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _parse_protocol(value: str) -> str:
    lowered = value.strip().lower()
    if lowered not in PROTOCOLS:
        raise ValueError(f"expected one of {', '.join(PROTOCOLS)}")
    return lowered


def _parse_exporter(value: str) -> str:
    lowered = value.strip().lower()
    if lowered not in EXPORTERS:
        raise ValueError(
            f"expected one of {', '.join(EXPORTERS)} (otel_ai loads no other exporter, "
            "and takes one per signal)"
        )
    return lowered


def _parse_endpoint(value: str) -> str:
    value = value.strip()
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("expected a URL such as http://127.0.0.1:4318 (scheme http or https)")
    try:
        parsed.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise ValueError(f"bad port: {exc}") from None
    return value


def _parse_ui_url(value: str) -> str:
    """The base URL of a web UI (Jaeger, Grafana): http(s), a host, maybe a path prefix."""
    try:
        return _parse_endpoint(value).rstrip("/")
    except ValueError as exc:
        if "bad port" in str(exc):
            raise
        raise ValueError(
            "expected the UI's base URL, such as http://localhost:16686 (scheme http or https)"
        ) from None


_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?$")


def check_s3_uri(value: str) -> str:
    """An artifact store URI (s3://bucket[/prefix]) without its trailing slash; ValueError
    saying why when it is not one."""
    value = value.strip()
    if not _S3_URI.match(value):
        raise ValueError("expected s3://bucket or s3://bucket/prefix with a valid bucket name")
    return value.rstrip("/")


def parse_otlp_headers(value: str) -> dict[str, str]:
    """``key=value`` pairs separated by commas, percent-decoded by the SDK's own parser.

    The shape is checked here so that a malformed entry is a clear error (the SDK's
    parser would only log and skip it); decoding is the SDK's, so every
    ``OTEL_EXPORTER_OTLP*_HEADERS`` variable reads the same as in the OTLP exporters.
    """
    for item in value.split(","):
        if not item.strip():
            continue
        name, sep, _ = item.partition("=")
        if not sep or not name.strip():
            raise ValueError("expected key=value pairs separated by commas")
    from opentelemetry.util.re import parse_env_headers  # only where headers are set (5 ms)

    return dict(parse_env_headers(value, liberal=True))


def _parse_path(value: str) -> Path:
    if not value.strip():
        raise ValueError("expected a directory path")
    return Path(value.strip())


ID_GENERATOR_GROUP = "opentelemetry_id_generator"
OUR_ID_GENERATOR = "otel_ai"


def _entry_points(**selection: str) -> Any:
    """``importlib.metadata.entry_points``, imported when asked for: 20 ms that ``otel-ai
    run`` would add before its command starts, where only ours is named."""
    from importlib.metadata import entry_points as found

    return found(**selection)


def id_generator_names() -> list[str]:
    """The installed ``opentelemetry_id_generator`` entry points (ours included)."""
    return sorted({OUR_ID_GENERATOR, *(ep.name for ep in _entry_points(group=ID_GENERATOR_GROUP))})


def _parse_id_generator(value: str) -> str:
    name = value.strip()
    if name != OUR_ID_GENERATOR and not _entry_points(group=ID_GENERATOR_GROUP, name=name):
        raise ValueError(f"expected the name of an installed id generator: {', '.join(id_generator_names())}")
    return name


def _parse_positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError("expected a positive integer")
    return number


COMPRESSIONS = ("none", "gzip", "deflate")  # deflate: OTLP/HTTP only


def _parse_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise ValueError("expected a positive number of seconds")
    return seconds


def _parse_compression(value: str) -> str:
    lowered = value.strip().lower()
    if lowered not in COMPRESSIONS:
        raise ValueError(f"expected one of {', '.join(COMPRESSIONS)} (deflate on OTLP/HTTP only)")
    return lowered


def _parse_insecure(value: str) -> bool:
    # as the OpenTelemetry exporters read it: true (any case) means insecure, else not
    return value.strip().lower() in ("true", "1", "yes", "on")


def _explicit(setting: Setting, value: Any) -> Any:
    """An explicit argument checked as strictly as the variable would be."""
    if isinstance(value, str):
        return setting.parse(value)
    parse = setting.parse
    if parse in (_parse_bool, _parse_insecure) and isinstance(value, bool):
        return value
    if parse is _parse_seconds and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _parse_seconds(str(value))
    if parse is _parse_positive_int and isinstance(value, int) and not isinstance(value, bool):
        return _parse_positive_int(str(value))
    if parse is _parse_path and isinstance(value, os.PathLike):
        return Path(value)
    if parse is parse_otlp_headers and isinstance(value, Mapping):
        if not all(isinstance(k, str) and k.strip() and isinstance(v, str) for k, v in value.items()):
            raise ValueError("expected a mapping of header names to string values")
        return {k.strip().lower(): v for k, v in value.items()}
    names: dict[Callable[[str], Any], str] = {
        _parse_insecure: "a bool",
        _parse_seconds: "a number of seconds",
        _parse_bool: "a bool",
        _parse_positive_int: "a positive int",
        _parse_path: "a path",
        parse_otlp_headers: "a mapping of header names to values",
    }
    expected = names.get(parse, "a str")
    raise TypeError(f"expected {expected}, got {type(value).__name__}")


@dataclass(frozen=True)
class Setting:
    """One row of the table: the argument name, its variable and parser (the default is
    the field's in :class:`Settings`)."""

    name: str
    env: str | None
    parse: Callable[[str], Any]


SETTINGS: tuple[Setting, ...] = (
    # service.name of the resource (default ai-scientist)
    Setting("service_name", "OTEL_SERVICE_NAME", _parse_str),
    # the run this process reports for, when the code does not name one
    Setting("run_id", "OTEL_AI_RUN_ID", _parse_str),
    # where the embedded default writes its OTLP/JSON files
    Setting("data_dir", "OTEL_AI_DATA_DIR", _parse_path),
    # s3://bucket/prefix artifacts are uploaded to
    Setting("artifacts_uri", "OTEL_AI_ARTIFACTS_URI", check_s3_uri),
    # OTLP endpoint for every signal; unset means the embedded default
    Setting("endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT", _parse_endpoint),
    # OTLP endpoint for traces (full URL, with /v1/traces for HTTP)
    Setting("traces_endpoint", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", _parse_endpoint),
    # OTLP endpoint for logs (full URL, with /v1/logs for HTTP)
    Setting("logs_endpoint", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", _parse_endpoint),
    # OTLP endpoint for metrics (full URL, with /v1/metrics for HTTP)
    Setting("metrics_endpoint", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", _parse_endpoint),
    # grpc or http/protobuf
    Setting("protocol", "OTEL_EXPORTER_OTLP_PROTOCOL", _parse_protocol),
    # protocol for traces (default: protocol)
    Setting("traces_protocol", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", _parse_protocol),
    # protocol for logs (default: protocol)
    Setting("logs_protocol", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", _parse_protocol),
    # protocol for metrics (default: protocol)
    Setting("metrics_protocol", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", _parse_protocol),
    # otlp (OTLP, or the embedded default without an endpoint), console (stdout) or none (no spans exported)
    Setting("traces_exporter", "OTEL_TRACES_EXPORTER", _parse_exporter),
    # otlp, console or none (no log records exported)
    Setting("logs_exporter", "OTEL_LOGS_EXPORTER", _parse_exporter),
    # otlp, console or none (no metrics exported)
    Setting("metrics_exporter", "OTEL_METRICS_EXPORTER", _parse_exporter),
    # key=value,... sent with every OTLP request
    Setting("headers", "OTEL_EXPORTER_OTLP_HEADERS", parse_otlp_headers),
    # trace and span ids: otel_ai draws them from os.urandom; another installed generator
    # (random, xray...) by name
    Setting("id_generator", "OTEL_PYTHON_ID_GENERATOR", _parse_id_generator),
    # true: the experiment runs and nothing is exported
    Setting("disabled", "OTEL_SDK_DISABLED", _parse_bool),
    # ai.pod.id of the resource (default: the host name)
    Setting("pod_id", "RUNPOD_POD_ID", _parse_str),
    # cloud.region of the resource
    Setting("region", "RUNPOD_DATACENTER", _parse_str),
    # in-memory queue of spans and of log records awaiting export
    Setting("queue_size", "OTEL_AI_QUEUE_SIZE", _parse_positive_int),
    # milliseconds between metric collections; system, process and GPU metrics are sampled at each
    Setting("metric_export_interval", "OTEL_METRIC_EXPORT_INTERVAL", _parse_positive_int),
    # sample system, process-tree and GPU metrics in this process (otel-ai run turns it off in its command)
    Setting("system_metrics", "OTEL_AI_SYSTEM_METRICS", _parse_bool),
    # bytes of undeliverable OTLP requests kept under OTEL_AI_DATA_DIR/spool; beyond, the oldest go
    Setting("spool_max_bytes", "OTEL_AI_SPOOL_MAX_BYTES", _parse_positive_int),
    # OTLP requests larger than this are split before sending (the collector's gRPC default is 4 MiB)
    Setting("max_request_bytes", "OTEL_AI_MAX_REQUEST_BYTES", _parse_positive_int),
    # Jaeger UI base URL, e.g. http://localhost:16686: otel-ai run, show and report print the run's trace link
    Setting("jaeger_url", "OTEL_AI_JAEGER_URL", _parse_ui_url),
    # Grafana base URL, e.g. http://localhost:3000: otel-ai run, show and report print an
    # Explore link to the run's logs in Loki
    Setting("grafana_url", "OTEL_AI_GRAFANA_URL", _parse_ui_url),
)


def _per_signal(name: str, variable: str, parse: Callable[[str], Any]) -> tuple[Setting, ...]:
    """A transport setting: the shared row (OTEL_EXPORTER_OTLP_{variable}), then one per
    signal (OTEL_EXPORTER_OTLP_{SIGNAL}_{variable}) that wins over it for that signal."""
    return (
        Setting(name, f"OTEL_EXPORTER_OTLP_{variable}", parse),
        *(
            Setting(f"{signal}_{name}", f"OTEL_EXPORTER_OTLP_{signal.upper()}_{variable}", parse)
            for signal in SIGNALS
        ),
    )


# the transport of OTLP delivery, read as the OpenTelemetry exporters read these variables
TRANSPORT_SETTINGS: tuple[Setting, ...] = (
    # seconds one delivery attempt may take before the request is spooled (default 10)
    *_per_signal("timeout", "TIMEOUT", _parse_seconds),
    # none, gzip or deflate (HTTP only); default none
    *_per_signal("compression", "COMPRESSION", _parse_compression),
    # CA certificate file (PEM) for TLS to the collector
    *_per_signal("certificate", "CERTIFICATE", _parse_str),
    # client private key and client certificate files (PEM) for mutual TLS
    *_per_signal("client_key", "CLIENT_KEY", _parse_str),
    *_per_signal("client_certificate", "CLIENT_CERTIFICATE", _parse_str),
    # gRPC without TLS (default: by the endpoint's scheme)
    *_per_signal("insecure", "INSECURE", _parse_insecure),
    # key=value,... for one signal instead of headers (unless headers is an argument)
    *(
        Setting(f"{signal}_headers", f"OTEL_EXPORTER_OTLP_{signal.upper()}_HEADERS", parse_otlp_headers)
        for signal in SIGNALS
    ),
)
SETTINGS = SETTINGS + TRANSPORT_SETTINGS

_BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The effective configuration of this process (see :data:`SETTINGS`)."""

    service_name: str | None = None
    run_id: str | None = None
    data_dir: Path = Path("otel-ai-runs")
    artifacts_uri: str | None = None
    endpoint: str | None = None
    traces_endpoint: str | None = None
    logs_endpoint: str | None = None
    metrics_endpoint: str | None = None
    protocol: str = "http/protobuf"
    traces_protocol: str | None = None
    logs_protocol: str | None = None
    metrics_protocol: str | None = None
    traces_exporter: str = "otlp"
    logs_exporter: str = "otlp"
    metrics_exporter: str = "otlp"
    headers: Mapping[str, str] | None = None
    id_generator: str = OUR_ID_GENERATOR
    disabled: bool = False
    pod_id: str | None = None
    region: str | None = None
    queue_size: int = 131072
    metric_export_interval: int = 15000
    system_metrics: bool = True
    spool_max_bytes: int = 1 << 30
    max_request_bytes: int = 4 << 20
    jaeger_url: str | None = None
    grafana_url: str | None = None
    timeout: float = 10.0
    traces_timeout: float | None = None
    logs_timeout: float | None = None
    metrics_timeout: float | None = None
    compression: str = "none"
    traces_compression: str | None = None
    logs_compression: str | None = None
    metrics_compression: str | None = None
    certificate: str | None = None
    traces_certificate: str | None = None
    logs_certificate: str | None = None
    metrics_certificate: str | None = None
    client_key: str | None = None
    traces_client_key: str | None = None
    logs_client_key: str | None = None
    metrics_client_key: str | None = None
    client_certificate: str | None = None
    traces_client_certificate: str | None = None
    logs_client_certificate: str | None = None
    metrics_client_certificate: str | None = None
    insecure: bool | None = None
    traces_insecure: bool | None = None
    logs_insecure: bool | None = None
    metrics_insecure: bool | None = None
    traces_headers: Mapping[str, str] | None = None
    logs_headers: Mapping[str, str] | None = None
    metrics_headers: Mapping[str, str] | None = None
    # where each value came from: "argument", the variable's name, or "default"
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def signal_endpoint(self, signal: str) -> str | None:
        """The OTLP endpoint of one signal, or None for the embedded default."""
        specific = getattr(self, f"{signal}_endpoint")
        return specific if specific is not None else self.endpoint

    def signal_exporter(self, signal: str) -> str:
        """otlp, console or none (OTEL_{SIGNAL}_EXPORTER)."""
        return str(getattr(self, f"{signal}_exporter"))

    def over_otlp(self, signal: str) -> bool:
        """Whether ``signal`` goes to a collector (an endpoint, exporter ``otlp``)."""
        return self.signal_exporter(signal) == "otlp" and self.signal_endpoint(signal) is not None

    def signal_protocol(self, signal: str) -> str:
        specific = getattr(self, f"{signal}_protocol")
        return specific if specific is not None else self.protocol

    def signal_transport(self, signal: str, name: str) -> tuple[Any, str]:
        """A transport setting (``timeout``, ``compression``...) for one signal: its own
        value if set, else the shared one; and where that came from (a variable's name,
        "argument" or "default")."""
        for key in (f"{signal}_{name}", name):
            value = getattr(self, key)
            if value is not None:
                return value, self.sources.get(key, "default")
        return None, self.sources.get(name, "default")

    def signal_headers(self, signal: str) -> Mapping[str, str]:
        """The headers of one signal's requests: OTEL_EXPORTER_OTLP_{SIGNAL}_HEADERS
        instead of the shared ones, unless ``headers`` was given as an argument."""
        specific = getattr(self, f"{signal}_headers")
        if specific is not None and (
            self.sources.get(f"{signal}_headers") == "argument" or self.sources.get("headers") != "argument"
        ):
            return dict(specific)
        return dict(self.headers or {})

    @property
    def uses_otlp(self) -> bool:
        return any(
            self.signal_endpoint(signal) and self.signal_exporter(signal) == "otlp" for signal in SIGNALS
        )


def resolve(environ: Mapping[str, str] | None = None, **explicit: Any) -> Settings:
    """Build :class:`Settings` from explicit arguments, then variables, then defaults.

    Raises :class:`ConfigurationError` for an unknown argument or a bad value.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, value in explicit.items():
        setting = _BY_NAME.get(name)
        if setting is None:
            known = ", ".join(sorted(_BY_NAME))
            raise ConfigurationError(f"configure() got an unknown setting {name!r}; known: {known}")
        if value is None:
            continue
        try:
            values[name] = _explicit(setting, value)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"configure({name}={value!r}) is not valid: {exc}") from None
        sources[name] = "argument"
    for setting in SETTINGS:
        if setting.name in values or setting.env is None:
            continue
        raw = env.get(setting.env)
        if raw is None or (raw.strip() == "" and setting.parse is not _parse_bool):
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{setting.env}={raw!r} is not valid: {exc}") from None
        sources[setting.name] = setting.env
    for setting in SETTINGS:
        sources.setdefault(setting.name, "default")
    if sources["headers"] == "argument" and env.get("OTEL_EXPORTER_OTLP_HEADERS", "").strip():
        # per key, the argument wins over the variable (the same on both protocols)
        try:
            from_env = parse_otlp_headers(env["OTEL_EXPORTER_OTLP_HEADERS"])
        except ValueError as exc:
            raise ConfigurationError(
                f"OTEL_EXPORTER_OTLP_HEADERS={env['OTEL_EXPORTER_OTLP_HEADERS']!r} is not valid: {exc}"
            ) from None
        values["headers"] = {**from_env, **values["headers"]}
    known_fields = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in values.items() if k in known_fields}, sources=sources)


def new_run_id() -> str:
    """A fresh, time-sortable run id (the default of OTEL_AI_RUN_ID): ``run-20261129T231500-1a2b3c4d``."""
    return f"run-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
