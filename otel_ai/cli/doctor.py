"""``otel-ai doctor``: the effective configuration, and whether what it names works.

Prints every setting with where its value came from (the effective value where the
table's default is "derived": the service name, the per-signal endpoints and protocols,
the pod id), then checks the collector: a real, empty OTLP export request per signal
(traces, logs, metrics) over the configured protocol with the configured headers, and
what it answered (status, body or gRPC message, latency); a signal the endpoint refuses
or cannot be reached fails the check. Then the artifact store (S3 ``HeadBucket`` with boto3's own
credentials chain, when OTEL_AI_ARTIFACTS_URI is set), the data directory (writable) and
the GPU (NVML), and lists which AI-Scientist-v2 hooks the instrumentor finds. Exits 0 when every check passes or is not applicable, 1 otherwise; a bad
setting is a configuration error (exit 2) before any check runs.
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from opentelemetry import context

from .. import config, semconv
from ..config import Settings
from ..export.transport import make_sender, printable, target_for
from ..instrumentation import hook_report
from ..metrics.gpu import detect_gpus
from ..redaction import redact

CHECK_TIMEOUT_S = 3.0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "doctor", help="print the effective configuration and check the collector, S3 and GPU"
    )
    parser.add_argument("--no-checks", action="store_true", help="only print the configuration")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = config.resolve()
    print("otel-ai configuration (argument > variable > default):")
    width = max(len(setting.name) for setting in config.SETTINGS)
    for setting in config.SETTINGS:
        value = getattr(settings, setting.name)
        source = settings.sources.get(setting.name, "default")
        value = effective(settings, setting.name, value)
        if setting.name.endswith("headers") and isinstance(value, Mapping):
            # header values are credentials: a per-signal row inheriting the shared
            # headers hides them just the same
            shown = "{" + ", ".join(f"{k}=[REDACTED]" for k in value) + "}"
        else:
            shown = redact(str(value))
        print(f"  {setting.name:<{width}} {shown:<40} ({source})")
    if settings.uses_otlp or any(settings.signal_exporter(s) != "otlp" for s in config.SIGNALS):
        for signal in config.SIGNALS:
            exporter = settings.signal_exporter(signal)
            if exporter == "none":
                print(f"  {signal:<8} -> off (OTEL_{signal.upper()}_EXPORTER=none)")
            elif exporter == "console":
                print(f"  {signal:<8} -> stdout (OTEL_{signal.upper()}_EXPORTER=console)")
            elif settings.signal_endpoint(signal):
                target = _endpoint_of(settings, signal)
                print(f"  {signal:<8} -> OTLP {settings.signal_protocol(signal)} {redact(target or '')}")
            else:
                print(
                    f"  {signal:<8} -> OTLP/JSON files under {settings.data_dir.resolve()} (embedded default)"
                )
    else:
        print(f"  telemetry -> OTLP/JSON files under {settings.data_dir.resolve()} (embedded default)")
    if args.no_checks:
        return 0
    print("checks:")
    results: list[Result] = []
    for check in CHECKS:
        found = check(settings)
        results.extend(found if isinstance(found, list) else [found])
    for name, ok, detail in results:
        mark = "ok  " if ok is True else ("n/a " if ok is None else "FAIL")
        print(f"  [{mark}] {name}: {detail}")
    print_hooks()
    return 0 if all(ok is not False for _, ok, _ in results) else 1


def _endpoint_of(settings: Settings, signal: str) -> str | None:
    try:
        target = target_for(signal, settings)
    except config.ConfigurationError:
        return settings.signal_endpoint(signal)
    return target.endpoint if target is not None else None


# what leaving these unset means
_UNSET = {
    "run_id": "(not set: a new id per run)",
    "artifacts_uri": "(not set: none uploaded)",
    "endpoint": "(none: the embedded default's files)",
    "headers": "(none)",
}


def effective(settings: Settings, name: str, value: Any) -> Any:
    """What an unset setting amounts to, rather than ``None``: a signal's own setting
    falls back to the shared one, a derived default is computed."""
    if value is not None:
        return value
    if name == "service_name":
        return semconv.DEFAULT_SERVICE_NAME
    if name == "pod_id":
        return f"{socket.gethostname()} (the host name)"
    if name.endswith("_endpoint"):
        signal = name.removesuffix("_endpoint")
        if settings.signal_exporter(signal) != "otlp":
            return f"(not used: OTEL_{signal.upper()}_EXPORTER={settings.signal_exporter(signal)})"
        if settings.signal_endpoint(signal):
            return _endpoint_of(settings, signal) or settings.signal_endpoint(signal)
        return _UNSET["endpoint"]
    signal, _, shared = name.partition("_")
    if signal in config.SIGNALS and shared in _SETTING_NAMES:  # e.g. traces_protocol: protocol's
        return effective(settings, shared, getattr(settings, shared))
    return _UNSET.get(name, "(not set)")


_SETTING_NAMES = frozenset(setting.name for setting in config.SETTINGS)


def print_hooks() -> None:
    """Which AI-Scientist-v2 hooks this installation finds (version skew is normal)."""
    hooks = hook_report(probe=True)
    print("  AI-Scientist and LLM client hooks:")
    unavailable: dict[str, int] = {}
    for hook in hooks:
        if hook.status == "unavailable":  # one line per missing module, not per hook
            unavailable[hook.detail or ""] = unavailable.get(hook.detail or "", 0) + 1
            continue
        print(f"    {hook.status:<12} {hook.target}" + (f" ({hook.detail})" if hook.detail else ""))
    for detail, count in unavailable.items():
        print(f"    {'unavailable':<12} {count} hook(s): {detail}")


Result = tuple[str, bool | None, str]


def check_collector(settings: Settings) -> list[Result]:
    """A real, empty export request per signal with an OTLP endpoint, and its answer."""
    if not settings.uses_otlp:
        return [("collector", None, "no OTLP endpoint configured; the embedded default needs none")]
    return [
        probe(settings, signal) for signal in config.SIGNALS if settings.signal_exporter(signal) == "otlp"
    ]


def probe(settings: Settings, signal: str) -> Result:
    name = f"collector {signal}"
    target = target_for(signal, settings)
    if target is None:
        return name, None, "no OTLP endpoint for this signal: the embedded default's files"
    where = f"{redact(target.endpoint)} ({target.protocol})"
    try:
        sender = make_sender(target)
    except (OSError, ValueError) as exc:  # a certificate file that cannot be read...
        return name, False, f"{where}: {type(exc).__name__}: {redact(str(exc))}"
    started = time.monotonic()
    try:
        result = sender.send(b"", min(target.timeout, CHECK_TIMEOUT_S))  # an empty Export*ServiceRequest
    finally:
        sender.close()
    latency = f"{(time.monotonic() - started) * 1000:.0f} ms"
    if result.ok:
        answer = result.status or "OK"
        if result.detail:
            answer += f": {printable(result.detail)}"
        return name, True, f"{where}: {answer} in {latency}"
    detail = redact(printable(result.detail))
    if result.refused:
        verdict = f"REFUSED for good: this endpoint does not take {signal}; set OTEL_{signal.upper()}_EXPORTER=none or point OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT elsewhere"
    elif not result.status:
        verdict = "UNREACHABLE: data will be spooled until it is back"
    else:
        verdict = "REFUSED: every request is refused (spooled, retried)"
    return name, False, f"{where}: {detail} in {latency} -> {verdict}"


def check_artifacts(settings: Settings) -> Result:
    if not settings.artifacts_uri:
        return "artifact store", None, "OTEL_AI_ARTIFACTS_URI not set; artifacts are reported, not uploaded"
    bucket = urlparse(settings.artifacts_uri).netloc
    import boto3  # heavy: only when an artifacts URI is set
    from botocore.config import Config

    token = context.attach(context.set_value(context._SUPPRESS_INSTRUMENTATION_KEY, True))  # our own traffic
    try:
        client = boto3.client(
            "s3",
            config=Config(
                connect_timeout=CHECK_TIMEOUT_S, read_timeout=CHECK_TIMEOUT_S, retries={"max_attempts": 1}
            ),
        )
        client.head_bucket(Bucket=bucket)
    except Exception as exc:  # noqa: BLE001 - every failure is a finding to print
        return "artifact store", False, f"s3://{bucket}: {type(exc).__name__}: {redact(str(exc))}"
    finally:
        context.detach(token)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS"
    return "artifact store", True, f"s3://{bucket} reachable at {redact(endpoint)}"


def check_data_dir(settings: Settings) -> Result:
    directory = Path(settings.data_dir).resolve()
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if os.access(existing, os.W_OK):
        return "data directory", True, f"{directory} is writable"
    return "data directory", False, f"{directory} is not writable"


def check_gpu(settings: Settings) -> Result:
    gpu = detect_gpus()
    if gpu.count:
        return "GPU", True, f"{gpu.count} x {gpu.name}"
    return "GPU", None, "none detected (no GPU, driver or nvidia-ml-py): no GPU metrics"


CHECKS: tuple[Callable[[Settings], Result | list[Result]], ...] = (
    check_collector,
    check_artifacts,
    check_data_dir,
    check_gpu,
)
