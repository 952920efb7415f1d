"""The settings table (SPEC section 5) and the resource (SPEC section 3).

Precedence is checked on :func:`otel_ai.config.resolve` and end to end through
:func:`otel_ai.configure`; the resource, endpoints, protocol and headers are checked on
what actually crossed the wire to the in-test OTLP receiver.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from otlp_receiver import OTLPReceiver

import otel_ai
import otel_ai.testing
from otel_ai import ConfigurationError
from otel_ai.cli import main as cli_main
from otel_ai.config import SETTINGS, resolve
from otel_ai.read import SpanRecord

# --------------------------------------------------------------------------- helpers


def _scenario(run_id: str = "cfg-run") -> None:
    with otel_ai.run(run_id) as run, run.stage("1_initial_implementation", description="first") as stage:
        with stage.node("n1", kind="draft") as node:
            node.completed(False, 0.5, 0.01)
        stage.progress(1, 2, good_nodes=1, buggy_nodes=0, total_nodes=1)


def _run_span(spans: list[SpanRecord]) -> SpanRecord:
    runs = [s for s in spans if s.name == "ai.run"]
    assert len(runs) == 1, [s.name for s in spans]
    return runs[0]


@pytest.fixture
def connect(otlp_receiver: OTLPReceiver) -> Iterator[Callable[..., OTLPReceiver]]:
    """configure(**kw) towards the receiver (HTTP unless told otherwise); reset before
    the receiver stops so the final flush has somewhere to go."""

    def _connect(**settings: Any) -> OTLPReceiver:
        if not any(k.endswith("endpoint") for k in settings) and not os.environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        ):
            settings["endpoint"] = otlp_receiver.http_endpoint
        otel_ai.configure(**settings)
        return otlp_receiver

    yield _connect
    otel_ai.testing.reset()


def _flush() -> None:
    assert otel_ai.force_flush(10.0)


def _gpu_present() -> bool:
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return False
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001
        return False
    try:
        return int(pynvml.nvmlDeviceGetCount()) > 0
    finally:
        pynvml.nvmlShutdown()


# --------------------------------------------------------------------------- precedence

# (setting, variable, variable value, parsed variable value, explicit argument, parsed argument)
PRECEDENCE: list[tuple[str, str, str, Any, Any, Any]] = [
    ("service_name", "OTEL_SERVICE_NAME", "svc-env", "svc-env", "svc-arg", "svc-arg"),
    ("run_id", "OTEL_AI_RUN_ID", "run-env", "run-env", "run-arg", "run-arg"),
    (
        "data_dir",
        "OTEL_AI_DATA_DIR",
        "/tmp/env-dir",
        Path("/tmp/env-dir"),
        "/tmp/arg-dir",
        Path("/tmp/arg-dir"),
    ),
    (
        "artifacts_uri",
        "OTEL_AI_ARTIFACTS_URI",
        "s3://env-bucket/p/",
        "s3://env-bucket/p",
        "s3://arg-bucket",
        "s3://arg-bucket",
    ),
    (
        "endpoint",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "http://127.0.0.1:1",
        "http://127.0.0.1:1",
        "https://c.example:4318",
        "https://c.example:4318",
    ),
    (
        "traces_endpoint",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "http://127.0.0.1:1/v1/traces",
        "http://127.0.0.1:1/v1/traces",
        "http://127.0.0.1:2/v1/traces",
        "http://127.0.0.1:2/v1/traces",
    ),
    ("protocol", "OTEL_EXPORTER_OTLP_PROTOCOL", "GRPC", "grpc", "http/protobuf", "http/protobuf"),
    ("logs_protocol", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc", "grpc", "http/protobuf", "http/protobuf"),
    ("traces_exporter", "OTEL_TRACES_EXPORTER", " NONE ", "none", "console", "console"),
    # headers: per key, the argument wins over the variable
    (
        "headers",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "A=1, b = 2",
        {"a": "1", "b": "2"},
        {"c": "3", "b": "9"},
        {"a": "1", "b": "9", "c": "3"},
    ),
    ("disabled", "OTEL_SDK_DISABLED", "true", True, False, False),
    ("id_generator", "OTEL_PYTHON_ID_GENERATOR", " random ", "random", "otel_ai", "otel_ai"),
    ("pod_id", "RUNPOD_POD_ID", "pod-env", "pod-env", "pod-arg", "pod-arg"),
    ("region", "RUNPOD_DATACENTER", "EU-RO-1", "EU-RO-1", "US-TX-3", "US-TX-3"),
    ("queue_size", "OTEL_AI_QUEUE_SIZE", "10", 10, 20, 20),
    ("spool_max_bytes", "OTEL_AI_SPOOL_MAX_BYTES", "1048576", 1048576, 2048, 2048),
    ("max_request_bytes", "OTEL_AI_MAX_REQUEST_BYTES", "65536", 65536, 1 << 20, 1 << 20),
    ("metric_export_interval", "OTEL_METRIC_EXPORT_INTERVAL", "5000", 5000, 1000, 1000),
    ("system_metrics", "OTEL_AI_SYSTEM_METRICS", "false", False, True, True),
    (
        "jaeger_url",
        "OTEL_AI_JAEGER_URL",
        "http://jaeger:16686/",
        "http://jaeger:16686",
        "https://j.example/jaeger",
        "https://j.example/jaeger",
    ),
    (
        "grafana_url",
        "OTEL_AI_GRAFANA_URL",
        "http://grafana:3000",
        "http://grafana:3000",
        "https://g.example/",
        "https://g.example",
    ),
    # transport: shared rows here, the per-signal rows share their parsers
    ("timeout", "OTEL_EXPORTER_OTLP_TIMEOUT", "2.5", 2.5, 7, 7.0),
    ("compression", "OTEL_EXPORTER_OTLP_COMPRESSION", " GZIP ", "gzip", "deflate", "deflate"),
    ("certificate", "OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem", "/etc/ca.pem", "/ca.pem", "/ca.pem"),
    ("client_key", "OTEL_EXPORTER_OTLP_CLIENT_KEY", "/etc/key.pem", "/etc/key.pem", "/k.pem", "/k.pem"),
    (
        "client_certificate",
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        "/etc/cert.pem",
        "/etc/cert.pem",
        "/c.pem",
        "/c.pem",
    ),
    ("insecure", "OTEL_EXPORTER_OTLP_INSECURE", "TRUE", True, False, False),
    ("traces_headers", "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "A=1%202", {"a": "1 2"}, {"b": "2"}, {"b": "2"}),
]


def test_every_setting_of_the_table_is_covered() -> None:
    covered = {row[0] for row in PRECEDENCE}
    # the per-signal variants share their parser with the generic row covered here
    variants = {
        "logs_endpoint",
        "metrics_endpoint",
        "traces_protocol",
        "metrics_protocol",
        "logs_exporter",
        "metrics_exporter",
        "logs_headers",
        "metrics_headers",
        *(
            f"{signal}_{name}"
            for signal in ("traces", "logs", "metrics")
            for name in (
                "timeout",
                "compression",
                "certificate",
                "client_key",
                "client_certificate",
                "insecure",
            )
        ),
    }
    assert {s.name for s in SETTINGS} - variants == covered


def test_defaults() -> None:
    settings = resolve(environ={})
    assert settings.service_name is None
    assert settings.run_id is None
    assert settings.data_dir == Path("otel-ai-runs")
    assert settings.artifacts_uri is None
    assert settings.endpoint is None
    assert settings.protocol == "http/protobuf"
    assert settings.headers is None
    assert settings.disabled is False
    assert settings.queue_size == 131072
    assert not settings.uses_otlp
    assert set(settings.sources.values()) == {"default"}
    assert set(settings.sources) == {s.name for s in SETTINGS}


@pytest.mark.parametrize(
    ("name", "variable", "raw", "from_env", "arg", "from_arg"), PRECEDENCE, ids=[r[0] for r in PRECEDENCE]
)
def test_argument_beats_variable_beats_default(
    name: str, variable: str, raw: str, from_env: Any, arg: Any, from_arg: Any
) -> None:
    default = resolve(environ={})
    assert default.sources[name] == "default"

    env = resolve(environ={variable: raw})
    assert getattr(env, name) == from_env
    assert getattr(env, name) != getattr(default, name)
    assert env.sources[name] == variable

    explicit = resolve(environ={variable: raw}, **{name: arg})
    assert getattr(explicit, name) == from_arg
    assert explicit.sources[name] == "argument"

    # None as an argument means "not given": the variable applies
    unset = resolve(environ={variable: raw}, **{name: None})
    assert getattr(unset, name) == from_env
    assert unset.sources[name] == variable


def test_blank_variable_is_ignored() -> None:
    settings = resolve(environ={"OTEL_SERVICE_NAME": "  ", "OTEL_EXPORTER_OTLP_ENDPOINT": ""})
    assert settings.service_name is None and settings.sources["service_name"] == "default"
    assert settings.endpoint is None


def test_per_signal_values_fall_back_to_generic_ones() -> None:
    settings = resolve(
        environ={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:2/v1/traces",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
        }
    )
    assert settings.signal_endpoint("traces") == "http://127.0.0.1:2/v1/traces"
    assert settings.signal_endpoint("logs") == "http://127.0.0.1:1"
    assert settings.signal_protocol("metrics") == "http/protobuf"
    assert settings.signal_protocol("logs") == "grpc"
    assert settings.uses_otlp


def test_resolve_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # set after import: nothing is read at import time
    monkeypatch.setenv("OTEL_AI_RUN_ID", "late-env")
    assert resolve().run_id == "late-env"


def test_configure_returns_effective_settings_with_sources(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "svc-env")
    monkeypatch.setenv("OTEL_AI_RUN_ID", "run-env")
    settings = otel_ai.configure(run_id="run-arg", data_dir=tmp_path / "arg-dir")
    assert settings.run_id == "run-arg" and settings.sources["run_id"] == "argument"
    assert settings.service_name == "svc-env" and settings.sources["service_name"] == "OTEL_SERVICE_NAME"
    assert settings.data_dir == tmp_path / "arg-dir"
    assert settings.protocol == "http/protobuf" and settings.sources["protocol"] == "default"


def test_configure_run_id_end_to_end(
    monkeypatch: pytest.MonkeyPatch, connect: Callable[..., OTLPReceiver]
) -> None:
    monkeypatch.setenv("OTEL_AI_RUN_ID", "run-from-env")
    receiver = connect(run_id="run-from-arg")
    with otel_ai.run():
        pass
    _flush()
    assert _run_span(receiver.spans()).attributes["ai.run.id"] == "run-from-arg"


def test_run_id_from_variable_end_to_end(
    monkeypatch: pytest.MonkeyPatch, connect: Callable[..., OTLPReceiver]
) -> None:
    monkeypatch.setenv("OTEL_AI_RUN_ID", "run-from-env")
    receiver = connect()
    with otel_ai.run():
        pass
    _flush()
    assert _run_span(receiver.spans()).attributes["ai.run.id"] == "run-from-env"


def test_data_dir_argument_beats_variable_end_to_end(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_dir, arg_dir = tmp_path / "env-dir", tmp_path / "arg-dir"
    monkeypatch.setenv("OTEL_AI_DATA_DIR", str(env_dir))
    otel_ai.configure(data_dir=arg_dir)
    _scenario()
    assert otel_ai.shutdown(10.0)
    assert sorted(p.name.split("-")[0] for p in arg_dir.glob("*.jsonl")) == ["logs", "metrics", "traces"]
    assert not env_dir.exists()


# --------------------------------------------------------------------------- bad values

BAD_VARIABLES = [
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "foo"),
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "not-a-url"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:notaport"),
    ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "ftp://127.0.0.1/v1/logs"),
    ("OTEL_AI_ARTIFACTS_URI", "http://x"),
    ("OTEL_SDK_DISABLED", "maybe"),
    ("OTEL_AI_QUEUE_SIZE", "-1"),
    ("OTEL_AI_QUEUE_SIZE", "lots"),
    ("OTEL_EXPORTER_OTLP_HEADERS", "just-a-token"),
    ("OTEL_AI_JAEGER_URL", "localhost:16686"),
    ("OTEL_AI_GRAFANA_URL", "grafana"),
    ("OTEL_LOGS_EXPORTER", "zipkin"),
    ("OTEL_METRICS_EXPORTER", "otlp,console"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
    ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "soon"),
    ("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli"),
    ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "token"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_VARIABLES)
def test_bad_variable_is_a_configuration_error_naming_it(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=variable) as info:
        resolve(environ={variable: value})
    assert repr(value) in str(info.value)


@pytest.mark.parametrize(("variable", "value"), BAD_VARIABLES[:1] + BAD_VARIABLES[5:8])
def test_bad_variable_fails_configure(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        otel_ai.configure()


def test_unknown_configure_argument_is_named() -> None:
    with pytest.raises(ConfigurationError, match="'servce_name'") as info:
        otel_ai.configure(servce_name="x")
    assert "service_name" in str(info.value)  # the known ones are listed: the fix is visible


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("protocol", "foo"),
        ("endpoint", "not-a-url"),
        ("artifacts_uri", "http://x"),
        ("disabled", "maybe"),
        ("queue_size", "-1"),
        ("headers", "no-equals-sign"),
        ("service_name", " "),
    ],
)
def test_bad_explicit_string_argument_is_named(argument: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"configure\({argument}="):
        otel_ai.configure(**{argument: value})


def test_explicit_argument_is_validated_even_when_the_variable_is_fine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ConfigurationError, match="protocol"):
        resolve(protocol="udp")


@pytest.mark.parametrize(
    ("argument", "value"),
    [("queue_size", -1), ("queue_size", 0), ("endpoint", 123), ("protocol", 1), ("disabled", 2)],
)
def test_bad_explicit_non_string_argument_is_named(argument: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=argument):
        otel_ai.configure(**{argument: value})


# --------------------------------------------------------------------------- doctor


def _doctor(env_extra: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "otel_ai", "doctor", *options],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_doctor_checks_the_collector(otlp_receiver: OTLPReceiver) -> None:
    up = _doctor({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.http_endpoint})
    assert up.returncode == 0, up.stdout + up.stderr
    assert (
        f"[ok  ] collector traces: {otlp_receiver.http_endpoint}/v1/traces (http/protobuf): HTTP 200 OK in "
        in up.stdout
    )
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = _doctor({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"})
    assert down.returncode == 1
    assert (
        f"[FAIL] collector logs: http://127.0.0.1:{port}/v1/logs (http/protobuf): ConnectionRefusedError"
        in down.stdout
    )


def test_doctor_without_endpoint_checks_the_data_directory(tmp_path: Path) -> None:
    result = _doctor({"OTEL_AI_DATA_DIR": str(tmp_path / "new" / "dir")})
    assert result.returncode == 0, result.stdout
    assert "[n/a ] collector" in result.stdout
    assert f"[ok  ] data directory: {tmp_path / 'new' / 'dir'} is writable" in result.stdout
    assert "[n/a ] artifact store" in result.stdout


@pytest.mark.parametrize(("variable", "value"), BAD_VARIABLES[:1] + BAD_VARIABLES[2:3] + BAD_VARIABLES[5:9])
def test_doctor_with_bad_variable_exits_2_naming_it(variable: str, value: str) -> None:
    result = _doctor({variable: value})
    assert result.returncode == 2, result.stdout + result.stderr
    assert variable in result.stderr
    assert "Traceback" not in result.stderr


def test_doctor_in_process_with_bad_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "maybe")
    assert cli_main(["doctor"]) == 2
    assert "OTEL_SDK_DISABLED" in capsys.readouterr().err


def test_doctor_prints_effective_configuration_and_hides_headers(tmp_path: Path) -> None:
    token = "abcS3cretT0kenValue42"
    result = _doctor(
        {
            "OTEL_SERVICE_NAME": "doctor-svc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer {token},x-tenant=tenant-secret-99",
            "OTEL_AI_ARTIFACTS_URI": "s3://my-bucket/runs",
        },
        "--no-checks",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert "doctor-svc" in lines["service_name"] and "(OTEL_SERVICE_NAME)" in lines["service_name"]
    assert (
        "http://127.0.0.1:4318" in lines["endpoint"] and "(OTEL_EXPORTER_OTLP_ENDPOINT)" in lines["endpoint"]
    )
    assert (
        "s3://my-bucket/runs" in lines["artifacts_uri"]
        and "(OTEL_AI_ARTIFACTS_URI)" in lines["artifacts_uri"]
    )
    assert "(OTEL_AI_DATA_DIR)" in lines["data_dir"]
    assert "131072" in lines["queue_size"] and "(default)" in lines["queue_size"]
    assert "(OTEL_EXPORTER_OTLP_HEADERS)" in lines["headers"]
    assert "authorization" in lines["headers"]
    # where each signal goes
    assert "grpc" in lines["traces"] and "http/protobuf" in lines["logs"]
    # header values never shown, anywhere
    for secret in (token, "Bearer", "tenant-secret-99"):
        assert secret not in out and secret not in result.stderr


def test_doctor_hides_credentials_in_the_endpoint_setting() -> None:
    result = _doctor(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://alice:hunter2pass@collector.example:4318"}, "--no-checks"
    )
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.split()[:1] == ["endpoint"]]
    assert "collector.example:4318" in line
    assert "hunter2pass" not in line


def test_doctor_never_prints_endpoint_credentials() -> None:
    result = _doctor({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://alice:hunter2pass@collector.example:4318"})
    assert result.returncode == 1, "collector.example cannot be reached from here"
    assert "hunter2pass" not in result.stdout + result.stderr


def test_doctor_embedded_default_names_the_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "doctor-data"
    result = _doctor({"OTEL_AI_DATA_DIR": str(data_dir)})
    assert result.returncode == 0, result.stderr
    assert str(data_dir) in result.stdout
    assert "embedded default" in result.stdout
    assert not data_dir.exists()  # doctor only looks


# --------------------------------------------------------------------------- resource


def test_resource_defaults(connect: Callable[..., OTLPReceiver]) -> None:
    receiver = connect()
    _scenario()
    _flush()
    host = socket.gethostname()
    resources = (
        [s.resource for s in receiver.spans()]
        + [r.resource for r in receiver.logs()]
        + [m.resource for m in receiver.metrics()]
    )
    assert resources
    for resource in resources:
        assert resource["service.name"] == "ai-scientist"
        assert resource["telemetry.distro.name"] == "otel-ai"
        assert resource["telemetry.distro.version"] == otel_ai.__version__
        assert resource["host.name"] == host
        assert resource["process.pid"] == os.getpid()
        assert resource["ai.pod.id"] == host
        assert "cloud.region" not in resource
    resource = resources[0]
    if _gpu_present():
        pytest.skip("a GPU is present: the no-GPU values do not apply")
    assert resource["ai.gpu.name"] == "unknown"
    assert resource["ai.gpu.count"] == 0


def test_resource_from_runpod_variables(
    monkeypatch: pytest.MonkeyPatch, connect: Callable[..., OTLPReceiver]
) -> None:
    monkeypatch.setenv("RUNPOD_POD_ID", "pod-abc123")
    monkeypatch.setenv("RUNPOD_DATACENTER", "EU-RO-1")
    receiver = connect()
    _scenario()
    _flush()
    resource = _run_span(receiver.spans()).resource
    assert resource["ai.pod.id"] == "pod-abc123"
    assert resource["cloud.region"] == "EU-RO-1"
    assert resource["host.name"] == socket.gethostname()


def test_resource_pod_and_region_arguments_beat_variables(
    monkeypatch: pytest.MonkeyPatch, connect: Callable[..., OTLPReceiver]
) -> None:
    monkeypatch.setenv("RUNPOD_POD_ID", "pod-env")
    monkeypatch.setenv("RUNPOD_DATACENTER", "EU-RO-1")
    receiver = connect(pod_id="pod-arg", region="US-TX-3")
    _scenario()
    _flush()
    resource = _run_span(receiver.spans()).resource
    assert resource["ai.pod.id"] == "pod-arg"
    assert resource["cloud.region"] == "US-TX-3"


@pytest.mark.parametrize(
    ("env", "argument", "expected"),
    [
        ({}, None, "ai-scientist"),
        ({"OTEL_SERVICE_NAME": "svc-name-var"}, None, "svc-name-var"),
        (
            {"OTEL_RESOURCE_ATTRIBUTES": "service.name=svc-attrs,deployment.environment=test"},
            None,
            "svc-attrs",
        ),
        (
            {"OTEL_RESOURCE_ATTRIBUTES": "service.name=svc-attrs", "OTEL_SERVICE_NAME": "svc-name-var"},
            None,
            "svc-name-var",
        ),
        (
            {"OTEL_RESOURCE_ATTRIBUTES": "service.name=svc-attrs", "OTEL_SERVICE_NAME": "svc-name-var"},
            "svc-arg",
            "svc-arg",
        ),
        ({}, "svc-arg", "svc-arg"),
    ],
    ids=[
        "default",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "both-variables",
        "argument-beats-both",
        "argument",
    ],
)
def test_service_name_precedence_on_the_wire(
    monkeypatch: pytest.MonkeyPatch,
    connect: Callable[..., OTLPReceiver],
    env: dict[str, str],
    argument: str | None,
    expected: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    receiver = connect(service_name=argument) if argument else connect()
    _scenario()
    _flush()
    names = {s.resource["service.name"] for s in receiver.spans()} | {
        r.resource["service.name"] for r in receiver.logs()
    }
    assert names == {expected}


def test_resource_attributes_variable_wins_over_our_defaults(
    monkeypatch: pytest.MonkeyPatch, connect: Callable[..., OTLPReceiver]
) -> None:
    monkeypatch.setenv("RUNPOD_POD_ID", "pod-env")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "ai.pod.id=pod-attrs,deployment.environment=staging")
    receiver = connect()
    _scenario()
    _flush()
    resource = _run_span(receiver.spans()).resource
    assert resource["ai.pod.id"] == "pod-attrs"
    assert resource["deployment.environment"] == "staging"
    assert resource["telemetry.distro.name"] == "otel-ai"


# --------------------------------------------------------------------------- endpoints, protocol, headers


def test_per_signal_traces_endpoint(monkeypatch: pytest.MonkeyPatch, otlp_receiver: OTLPReceiver) -> None:
    with OTLPReceiver() as traces_only:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.http_endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces_only.http_url("traces"))
        otel_ai.configure()
        _scenario()
        _flush()
        otel_ai.testing.reset()
        assert {r.signal for r in traces_only.received()} == {"traces"}
        assert {s.name for s in traces_only.spans()} >= {
            "ai.run",
            "ai.stage 1_initial_implementation",
            "ai.node draft",
        }
    assert otlp_receiver.received("traces") == []
    assert otlp_receiver.logs()
    assert otlp_receiver.metrics()


def test_traces_endpoint_alone_leaves_logs_and_metrics_in_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, otlp_receiver: OTLPReceiver
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp_receiver.http_url("traces"))
    otel_ai.configure()
    _scenario()
    otel_ai.testing.reset()
    assert otlp_receiver.spans()
    assert {r.signal for r in otlp_receiver.received()} == {"traces"}
    data_dir = Path(os.environ["OTEL_AI_DATA_DIR"])
    assert len(list(data_dir.glob("logs-*.jsonl"))) == 1
    assert len(list(data_dir.glob("metrics-*.jsonl"))) == 1
    assert list(data_dir.glob("traces-*.jsonl")) == []


def test_grpc_protocol_from_environment(
    monkeypatch: pytest.MonkeyPatch, connect: Callable[..., OTLPReceiver], otlp_receiver: OTLPReceiver
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.grpc_endpoint)
    receiver = connect()
    _scenario()
    _flush()
    assert receiver.received(transport="http") == []
    assert {r.signal for r in receiver.received(transport="grpc")} == {"traces", "logs", "metrics"}
    assert _run_span(receiver.spans("grpc")).attributes["ai.run.id"] == "cfg-run"


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_headers_from_environment_arrive(
    monkeypatch: pytest.MonkeyPatch,
    connect: Callable[..., OTLPReceiver],
    otlp_receiver: OTLPReceiver,
    protocol: str,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer tok-123,x-otel-ai-tenant=t1")
    endpoint = otlp_receiver.grpc_endpoint if protocol == "grpc" else otlp_receiver.http_endpoint
    receiver = connect(endpoint=endpoint, protocol=protocol)
    _scenario()
    _flush()
    requests = receiver.received()
    assert {r.signal for r in requests} == {"traces", "logs", "metrics"}
    for request in requests:
        assert request.headers.get("authorization") == "Bearer tok-123", request.headers
        assert request.headers.get("x-otel-ai-tenant") == "t1"


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
@pytest.mark.parametrize(
    "variable",
    ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"],
)
def test_header_values_are_percent_decoded_in_the_shared_and_the_per_signal_variable(
    monkeypatch: pytest.MonkeyPatch,
    connect: Callable[..., OTLPReceiver],
    otlp_receiver: OTLPReceiver,
    protocol: str,
    variable: str,
) -> None:
    # The OTLP exporter specification: header values in these variables are URL-encoded.
    monkeypatch.setenv(variable, "Authorization=Basic%20abc%3D%3D,x-otel-ai-tenant=lab%2C1")
    endpoint = otlp_receiver.grpc_endpoint if protocol == "grpc" else otlp_receiver.http_endpoint
    receiver = connect(endpoint=endpoint, protocol=protocol)
    _scenario()
    _flush()
    traces = [r for r in receiver.received() if r.signal == "traces"]
    assert traces
    for request in traces:
        assert request.headers.get("authorization") == "Basic abc==", request.headers
        assert request.headers.get("x-otel-ai-tenant") == "lab,1"


def test_a_malformed_headers_variable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization")
    with pytest.raises(ConfigurationError, match="OTEL_EXPORTER_OTLP_HEADERS"):
        resolve()


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_headers_argument_value_beats_variable_value(
    monkeypatch: pytest.MonkeyPatch,
    connect: Callable[..., OTLPReceiver],
    otlp_receiver: OTLPReceiver,
    protocol: str,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=from-env")
    endpoint = otlp_receiver.grpc_endpoint if protocol == "grpc" else otlp_receiver.http_endpoint
    receiver = connect(endpoint=endpoint, protocol=protocol, headers={"x-tenant": "from-arg"})
    _scenario()
    _flush()
    requests = receiver.received()
    assert requests
    assert {r.headers.get("x-tenant") for r in requests} == {"from-arg"}


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_headers_argument_and_variable_merge_per_key_the_same_on_both_protocols(
    monkeypatch: pytest.MonkeyPatch,
    connect: Callable[..., OTLPReceiver],
    otlp_receiver: OTLPReceiver,
    protocol: str,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-from-env=1,x-both=env")
    endpoint = otlp_receiver.grpc_endpoint if protocol == "grpc" else otlp_receiver.http_endpoint
    receiver = connect(endpoint=endpoint, protocol=protocol, headers={"x-from-arg": "2", "x-both": "arg"})
    _scenario()
    _flush()
    requests = receiver.received()
    assert requests
    for request in requests:
        assert request.headers.get("x-from-arg") == "2"
        assert request.headers.get("x-from-env") == "1"
        assert request.headers.get("x-both") == "arg"


# --------------------------------------------------------------------------- configure twice


@pytest.mark.usefixtures("connect")  # resets before the receiver stops
def test_configure_twice_with_same_settings_is_harmless(
    caplog: pytest.LogCaptureFixture, otlp_receiver: OTLPReceiver
) -> None:
    with caplog.at_level(logging.WARNING, logger="otel_ai"):
        first = otel_ai.configure(endpoint=otlp_receiver.http_endpoint)
        second = otel_ai.configure(endpoint=otlp_receiver.http_endpoint)
        third = otel_ai.configure()
    assert first is second is third
    assert not [r for r in caplog.records if r.name.startswith("otel_ai")]
    _scenario()
    _flush()
    # one pipeline: every span exported exactly once
    names = [s.name for s in otlp_receiver.spans()]
    assert sorted(names) == sorted(set(names))


@pytest.mark.usefixtures("connect")
def test_configure_twice_with_other_settings_keeps_first_and_warns(
    caplog: pytest.LogCaptureFixture, otlp_receiver: OTLPReceiver
) -> None:
    with OTLPReceiver() as other:
        first = otel_ai.configure(endpoint=otlp_receiver.http_endpoint, service_name="first")
        with caplog.at_level(logging.WARNING, logger="otel_ai"):
            second = otel_ai.configure(endpoint=other.http_endpoint, service_name="second")
        assert second is first
        assert second.endpoint == otlp_receiver.http_endpoint
        warnings = [r for r in caplog.records if r.name == "otel_ai" and r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "configure" in warnings[0].getMessage()
        _scenario()
        _flush()
        assert other.received() == []
    assert {s.resource["service.name"] for s in otlp_receiver.spans()} == {"first"}
    assert len([s for s in otlp_receiver.spans() if s.name == "ai.run"]) == 1


def test_transport_settings_per_signal_win_over_the_shared_ones_on_the_wire(
    monkeypatch: pytest.MonkeyPatch, connect: Callable[..., OTLPReceiver]
) -> None:
    """The transport rows of the settings table reach the senders: traces gzip-compressed
    with their own headers, the other signals as the shared variables say."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "none")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=shared")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=traces%20only")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "3")
    receiver = connect(protocol="http/protobuf")
    settings = resolve()
    assert settings.signal_transport("traces", "timeout") == (3.0, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
    assert settings.signal_transport("logs", "timeout") == (10.0, "default")
    _scenario()
    _flush()
    requests = receiver.received(transport="http")
    assert {r.signal for r in requests} == {"traces", "logs", "metrics"}
    for request in requests:
        if request.signal == "traces":
            assert request.headers.get("content-encoding") == "gzip", request.headers
            assert request.headers.get("x-tenant") == "traces only"
        else:
            assert "content-encoding" not in request.headers, request.headers
            assert request.headers.get("x-tenant") == "shared"


def test_deflate_over_grpc_is_a_configuration_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, otlp_receiver: OTLPReceiver
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "deflate")
    with pytest.raises(ConfigurationError, match="OTEL_EXPORTER_OTLP_LOGS_COMPRESSION='deflate'"):
        otel_ai.configure(endpoint=otlp_receiver.grpc_endpoint, protocol="grpc")
