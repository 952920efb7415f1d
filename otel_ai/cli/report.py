"""``otel-ai report [RUN_ID | PATH] -o FILE.html``: a run as one self-contained HTML page.

Reads the run as ``otel-ai show`` does (the embedded default's files, a collector's file
exporter output, or Jaeger with ``--jaeger URL``) and writes the page made by
:mod:`otel_ai.report`: timeline, search trees, progress, tokens, resources, artifacts,
failure. The page needs no network when opened.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from ..config import resolve
from ..read.sources import RunNotFound, find_run
from ..report import render_html
from .sources import add_source_arguments, links_for, service_name

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "report",
        help="write a self-contained HTML picture of a run: timeline, search trees, progress, resources",
        description=(
            "Write one HTML file showing a run: its timeline, the search tree of each stage, "
            "progress, tokens, CPU/memory/GPU, artifacts and the failure. The file fetches "
            "nothing when opened. With no argument: the latest run in OTEL_AI_DATA_DIR."
        ),
    )
    parser.add_argument(
        "target", nargs="?", help="a run id or trace id, or a directory or file of OTLP/JSON lines"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE.html",
        help="where to write the page ('-' for stdout; default: otel-ai-report-RUN_ID.html here)",
    )
    parser.add_argument(
        "--data-dir", help="where to look for runs (default: OTEL_AI_DATA_DIR or ./otel-ai-runs)"
    )
    add_source_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    data_dir = Path(args.data_dir) if args.data_dir else resolve().data_dir
    try:
        view, _runs = find_run(args.target, data_dir, jaeger=args.jaeger, service=service_name(args))
    except RunNotFound as exc:
        print(f"otel-ai report: {exc}", file=sys.stderr)
        return 1
    page = render_html(view, links=links_for(view, args))
    if args.output == "-":
        sys.stdout.write(page)
        sys.stdout.flush()
        return 0
    output = (
        Path(args.output) if args.output else Path(f"otel-ai-report-{_UNSAFE.sub('_', view.run_id)}.html")
    )
    try:
        _write_atomically(output, page)
    except OSError as exc:
        print(f"otel-ai report: cannot write {output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    nodes = sum(len(stage.nodes) for stage in view.stages)
    print(
        f"otel-ai report: run {view.run_id} ({view.outcome}, {len(view.stages)} stages, {nodes} nodes) "
        f"written to {output} ({len(page.encode('utf-8')) / 1024:.0f} KiB, {time.monotonic() - started:.1f}s)",
        file=sys.stderr,
    )
    return 0


def _write_atomically(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory, so a reader never sees half a page."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
