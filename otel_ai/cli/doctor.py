"""``otel-ai doctor``: the effective configuration, and where telemetry goes."""

from __future__ import annotations

import argparse

from .. import config
from ..metrics.gpu import detect_gpus
from ..redaction import redact


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("doctor", help="print the effective configuration and check the GPU")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = config.resolve()
    print("otel-ai configuration (argument > variable > default):")
    for setting in config.SETTINGS:
        value = getattr(settings, setting.name)
        source = settings.sources.get(setting.name, "default")
        shown = redact(str(value)) if setting.name != "headers" or not value else "{" + ", ".join(f"{k}=[REDACTED]" for k in value) + "}"
        print(f"  {setting.name:<18} {shown:<40} ({source})")
    if settings.uses_otlp:
        for signal in config.SIGNALS:
            print(f"  {signal:<8} -> OTLP {settings.signal_protocol(signal)} {redact(settings.signal_endpoint(signal) or '(embedded default)')}")
    else:
        print(f"  telemetry -> OTLP/JSON files under {settings.data_dir.resolve()} (embedded default)")
    gpu = detect_gpus()
    print(f"  GPU: {gpu.name} x{gpu.count}" if gpu.count else "  GPU: none detected")
    return 0
