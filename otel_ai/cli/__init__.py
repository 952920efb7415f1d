"""The ``otel-ai`` command line: ``main(argv) -> int``; logic lives in the subcommands.

A subcommand's module is loaded by name, and only the one asked for (all of them for
``--help``): ``otel-ai run`` must start its command without paying for the others."""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

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


_nothing_left = False


def nothing_left_to_do() -> None:
    """Said by a subcommand once everything it made is written and delivered or spooled
    (``otel-ai run`` after its final flush): the program may leave at once."""
    global _nothing_left
    _nothing_left = True


def program() -> NoReturn:
    """The ``otel-ai`` program (its console script, ``python -m otel_ai``): :func:`main`,
    then the exit.

    After ``otel-ai run`` the interpreter's own teardown (freeing every module and object
    the pipeline loaded) took 40-80 ms, added to the wall time of every wrapped command
    although nothing was left to write. Once the subcommand says nothing is left, the
    exit handlers run as at any exit, the standard streams are flushed, and the process
    ends without that teardown, unless a thread that is not a daemon still runs (the
    interpreter would wait for it)."""
    code = main()
    if _nothing_left and not any(
        thread is not threading.main_thread() and not thread.daemon and thread.is_alive()
        for thread in threading.enumerate()
    ):
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):  # closed, or its reader gone
                pass
        os._exit(code & 0xFF)
    sys.exit(code)
