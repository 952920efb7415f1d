"""The options ``otel-ai show`` and ``otel-ai report`` share: where to read a run from
(:mod:`otel_ai.read.sources` finds it) and where to link it to."""

from __future__ import annotations

import argparse

from .. import semconv
from ..config import resolve
from ..links import Link, run_links
from ..read.runview import RunView


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
