"""``otel-ai doctor``: the effective configuration, and whether what it names works.

Prints every setting with where its value came from, then checks the collector (a TCP
connection to each OTLP endpoint), the artifact store (S3 ``HeadBucket`` with boto3's own
credentials chain, when OTEL_AI_ARTIFACTS_URI is set), the data directory (writable) and
the GPU (NVML), and lists which AI-Scientist-v2 hooks the instrumentor finds. Exits 0 when every check passes or is not applicable, 1 otherwise; a bad
setting is a configuration error (exit 2) before any check runs.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from .. import config
from ..config import Settings
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
    for setting in config.SETTINGS:
        value = getattr(settings, setting.name)
        source = settings.sources.get(setting.name, "default")
        if setting.name == "headers" and value:
            shown = "{" + ", ".join(f"{k}=[REDACTED]" for k in value) + "}"
        else:
            shown = redact(str(value))
        print(f"  {setting.name:<18} {shown:<40} ({source})")
    if settings.uses_otlp:
        for signal in config.SIGNALS:
            target = redact(settings.signal_endpoint(signal) or "(embedded default)")
            print(f"  {signal:<8} -> OTLP {settings.signal_protocol(signal)} {target}")
    else:
        print(f"  telemetry -> OTLP/JSON files under {settings.data_dir.resolve()} (embedded default)")
    if args.no_checks:
        return 0
    print("checks:")
    results = [check(settings) for check in CHECKS]
    for name, ok, detail in results:
        mark = "ok  " if ok is True else ("n/a " if ok is None else "FAIL")
        print(f"  [{mark}] {name}: {detail}")
    print_hooks()
    return 0 if all(ok is not False for _, ok, _ in results) else 1


def print_hooks() -> None:
    """Which AI-Scientist-v2 hooks this installation finds (version skew is normal)."""
    from ..instrumentation import hook_report

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


def check_collector(settings: Settings) -> Result:
    if not settings.uses_otlp:
        return "collector", None, "no OTLP endpoint configured; the embedded default needs none"
    problems, reached = [], []
    endpoints = {settings.signal_endpoint(s) for s in config.SIGNALS} - {None}
    for endpoint in sorted(e for e in endpoints if e):
        parsed = urlparse(endpoint)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            with socket.create_connection((parsed.hostname, port), timeout=CHECK_TIMEOUT_S):
                reached.append(redact(f"{parsed.hostname}:{port}"))
        except OSError as exc:
            problems.append(f"{redact(endpoint)}: {exc.strerror or exc}")
    if problems:
        return "collector", False, "; ".join(problems) + " (data will be spooled until it is back)"
    return "collector", True, "reachable: " + ", ".join(reached)


def check_artifacts(settings: Settings) -> Result:
    if not settings.artifacts_uri:
        return "artifact store", None, "OTEL_AI_ARTIFACTS_URI not set; artifacts are reported, not uploaded"
    bucket = urlparse(settings.artifacts_uri).netloc
    import boto3
    from botocore.config import Config
    from opentelemetry import context

    token = context.attach(context.set_value(context._SUPPRESS_INSTRUMENTATION_KEY, True))  # our own traffic
    try:
        client = boto3.client(
            "s3",
            config=Config(connect_timeout=CHECK_TIMEOUT_S, read_timeout=CHECK_TIMEOUT_S, retries={"max_attempts": 1}),
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


CHECKS: tuple[Callable[[Settings], Result], ...] = (check_collector, check_artifacts, check_data_dir, check_gpu)
