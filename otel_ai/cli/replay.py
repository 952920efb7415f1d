"""``otel-ai replay [PATH] [--endpoint URL]``: send stored telemetry files to a collector, once."""

from __future__ import annotations

import argparse
import sys

from ..config import PROTOCOLS, resolve
from ..export.replay import ReplayError, replay
from ..redaction import redact


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "replay",
        help="send the OTLP/JSON files of the embedded default to a collector, once",
        description=(
            "Send traces-*.jsonl, logs-*.jsonl and metrics-*.jsonl to an OTLP collector, in order. "
            "What the collector accepted is marked beside each file ({file}.delivered), so running "
            "it again sends only what is new."
        ),
    )
    parser.add_argument(
        "path", nargs="?", help="a directory or file of OTLP/JSON lines (default: OTEL_AI_DATA_DIR)"
    )
    parser.add_argument("--endpoint", help="collector URL (default: OTEL_EXPORTER_OTLP_ENDPOINT)")
    parser.add_argument(
        "--protocol", choices=PROTOCOLS, help="default: OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf"
    )
    parser.add_argument("--force", action="store_true", help="send everything again, ignoring the marks")
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to keep trying an unreachable collector (default 60)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = resolve()
    try:
        report = replay(
            args.path,
            settings,
            endpoint=args.endpoint,
            protocol=args.protocol,
            force=args.force,
            timeout=args.timeout,
        )
    except ReplayError as exc:
        print(f"otel-ai replay: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    for where, error in report.errors.items():
        print(f"  {where}: {redact(error)}", file=sys.stderr)
    return 0 if report.complete else 1
