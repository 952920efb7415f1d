"""Where ``otel-ai show`` and ``otel-ai report`` read a run from.

- The embedded default's files: ``traces-*.jsonl``, ``logs-*.jsonl``, ``metrics-*.jsonl``
  in a directory (OTEL_AI_DATA_DIR), or one such file.
- What a collector's ``file`` exporter wrote: OTLP/JSON lines under whatever name its
  ``path`` says (``otel.json``, rotated ``otel-2026-...json``), a file or a directory
  of them; each line is recognised by its top-level key, so one file may mix signals.
- Jaeger's query API v3 (:mod:`otel_ai.cli.jaeger`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import semconv
from ..config import resolve
from ..export.otlp_json import Telemetry, load_directory
from ..links import Link, run_links
from .jaeger import JaegerError, load_from_jaeger
from .runview import RunView, build_runs

# a collector's file exporter names its files freely; these are what it is usually told
_COLLECTOR_PATTERNS = ("*.json", "*.jsonl")


def load_path(path: Path) -> Telemetry:
    """The telemetry in a file, or in a directory of the embedded default's files or
    of a collector's file exporter."""
    telemetry = load_directory(path)
    if path.is_dir() and not telemetry.files:
        files = sorted(
            {file for pattern in _COLLECTOR_PATTERNS for file in path.glob(pattern) if file.is_file()}
        )
        for file in files:
            telemetry.extend(load_directory(file))
    return telemetry


def runs_from_jaeger(jaeger_url: str, target: str | None, service: str) -> tuple[RunView, list[RunView]]:
    """The run named by ``target`` (run id or trace id; None: the latest) read from
    Jaeger, and the runs of the same trace. Raises ``ShowError``."""
    from .show import ShowError

    try:
        telemetry = load_from_jaeger(jaeger_url, target, service=service)
    except JaegerError as exc:
        raise ShowError(str(exc)) from None
    runs = build_runs(telemetry)
    if not runs:
        raise ShowError(f"the trace Jaeger at {jaeger_url} returned for {target!r} holds no otel_ai run")
    if target is not None:
        matches = [r for r in runs if r.run_id == target or r.trace_id == target.lower()]
        if matches:
            return matches[-1], runs
    return runs[-1], runs


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The options show and report share: Jaeger as the source, the links to print."""
    parser.add_argument(
        "--jaeger",
        metavar="URL",
        help="read the run from Jaeger's query API v3 at URL (e.g. http://localhost:16686); "
        "the argument is then a run id or a trace id",
    )
    parser.add_argument(
        "--service",
        metavar="NAME",
        help="with --jaeger: the service the run reported as (default: OTEL_SERVICE_NAME or ai-scientist)",
    )
    parser.add_argument(
        "--jaeger-url",
        metavar="URL",
        help="Jaeger UI to link the run to (default: OTEL_AI_JAEGER_URL, else --jaeger)",
    )
    parser.add_argument(
        "--grafana-url",
        metavar="URL",
        help="Grafana to link the run's logs to (default: OTEL_AI_GRAFANA_URL)",
    )


def links_for(view: RunView, args: argparse.Namespace) -> list[Link]:
    """The Jaeger and Grafana links of ``view`` from the options and the settings
    (a bad value is a ConfigurationError naming the option's setting)."""
    settings = resolve(jaeger_url=args.jaeger_url, grafana_url=args.grafana_url)
    jaeger_url = settings.jaeger_url or (args.jaeger.rstrip("/") if args.jaeger else None)
    end_ns = (
        view.start_ns + int(view.duration_s * 1e9)
        if view.span is not None and view.duration_s is not None
        else None
    )
    return run_links(
        run_id=view.run_id,
        trace_id=view.trace_id,
        jaeger_url=jaeger_url,
        grafana_url=settings.grafana_url,
        start_ns=view.start_ns or None,
        end_ns=end_ns,
    )


def service_name(args: argparse.Namespace) -> str:
    return args.service or resolve().service_name or semconv.DEFAULT_SERVICE_NAME
