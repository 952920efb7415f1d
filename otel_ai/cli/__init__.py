"""The ``otel-ai`` command line: ``main(argv) -> int``; logic lives in the subcommands.

A subcommand's module is loaded by name, and only the one asked for (all of them for
``--help``): ``otel-ai run`` must start its command without paying for the others."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..config import ConfigurationError
from ..version import __version__

# in the order of ``otel-ai --help``; each module has add_parser(commands)
COMMANDS = ("run", "show", "report", "recover", "replay", "doctor")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or of ``only`` that one."""
    parser = argparse.ArgumentParser(prog="otel-ai", description="OpenTelemetry for AI-scientist runs.")
    parser.add_argument("--version", action="version", version=f"otel-ai {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (only,) if only else COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(commands)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (its first word, after the options of ``otel-ai``)."""
    for word in argv:
        if word.startswith("-"):
            return None  # --help, --version: every subcommand
        return word if word in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: sys.argv[1:]); returns the exit code."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_in(args_in))
    args = parser.parse_args(args_in)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.handler(args))
    except ConfigurationError as exc:
        print(f"otel-ai: configuration error: {exc}", file=sys.stderr)
        return 2
