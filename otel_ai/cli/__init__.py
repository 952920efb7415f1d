"""The ``otel-ai`` command line: ``main(argv) -> int``; logic lives in the subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..config import ConfigurationError
from ..version import __version__
from . import doctor, recover, replay, report, run, show


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-ai", description="OpenTelemetry for AI-scientist runs.")
    parser.add_argument("--version", action="version", version=f"otel-ai {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run.add_parser(commands)
    show.add_parser(commands)
    report.add_parser(commands)
    recover.add_parser(commands)
    replay.add_parser(commands)
    doctor.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: sys.argv[1:]); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.handler(args))
    except ConfigurationError as exc:
        print(f"otel-ai: configuration error: {exc}", file=sys.stderr)
        return 2
