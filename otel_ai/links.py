"""Where to look at a run: its trace in Jaeger, its logs in Grafana (Loki).

Links are built from base URLs (OTEL_AI_JAEGER_URL, OTEL_AI_GRAFANA_URL) and what a run
is known by: its trace id and its run id. Nothing here makes a request.

- Jaeger: ``{jaeger}/trace/{trace_id}``, the trace view of Jaeger's UI (v1 and v2).
- Grafana: ``{grafana}/explore?schemaVersion=1&panes=...&orgId=1``, Explore on the Loki
  data source with the LogQL query ``{ai_run_id="RUN"}``: ``ai.run.id`` is an index
  label in Loki under that name (collector-config/stack/loki.yaml, docs/operations.md),
  the cheapest way to read one run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import quote

from . import semconv

__all__ = [
    "LOKI_DATASOURCE_UID",
    "Link",
    "grafana_logs_url",
    "jaeger_trace_url",
    "logql_run_query",
    "loki_name",
    "run_links",
]

#: The uid of the Loki data source Explore opens (the one the stack provisions,
#: collector-config/stack/grafana/provisioning/datasources/datasources.yaml).
LOKI_DATASOURCE_UID = "loki"

# Explore's time range: a little before the run's start, a little after its end
_BEFORE_MS = 60_000
_AFTER_MS = 5 * 60_000

_NOT_ALNUM = re.compile(r"[^a-zA-Z0-9]+")


@dataclass(frozen=True)
class Link:
    """A labelled URL: ``label`` says where it goes (``Jaeger``, ``Grafana``)."""

    label: str
    url: str


def loki_name(attribute: str) -> str:
    """The name Loki gives an OTLP attribute: every run of characters outside
    ``[a-zA-Z0-9]`` becomes one ``_`` (``ai.run.id`` -> ``ai_run_id``)."""
    return _NOT_ALNUM.sub("_", attribute)


def jaeger_trace_url(base: str, trace_id: str) -> str:
    """The trace view of Jaeger's UI at ``base`` for ``trace_id`` (32 hex characters)."""
    return f"{base.rstrip('/')}/trace/{quote(trace_id.lower(), safe='')}"


def logql_run_query(run_id: str) -> str:
    """The LogQL stream selector of one run's records: ``{ai_run_id="RUN"}``."""
    escaped = run_id.replace("\\", "\\\\").replace('"', '\\"')
    return f'{{{loki_name(semconv.RUN_ID)}="{escaped}"}}'


def grafana_logs_url(
    base: str,
    run_id: str,
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    datasource_uid: str = LOKI_DATASOURCE_UID,
) -> str:
    """Grafana Explore at ``base`` on the Loki records of ``run_id``.

    The time range runs from a minute before ``start_ns`` to five minutes after
    ``end_ns`` (to "now" while the run is going: ``end_ns`` None); without a start,
    the last 7 days.
    """
    if start_ns is not None:
        start = str(start_ns // 1_000_000 - _BEFORE_MS)
        end = "now" if end_ns is None else str(end_ns // 1_000_000 + _AFTER_MS)
    else:
        start, end = "now-7d", "now"
    pane = {
        "datasource": datasource_uid,
        "queries": [
            {
                "refId": "A",
                "expr": logql_run_query(run_id),
                "queryType": "range",
                "datasource": {"type": "loki", "uid": datasource_uid},
            }
        ],
        "range": {"from": start, "to": end},
    }
    panes = json.dumps({"run": pane}, separators=(",", ":"))
    return f"{base.rstrip('/')}/explore?schemaVersion=1&panes={quote(panes, safe='')}&orgId=1"


def run_links(
    *,
    run_id: str,
    trace_id: str | None,
    jaeger_url: str | None = None,
    grafana_url: str | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> list[Link]:
    """The links to a run for the UIs that are configured (none: an empty list)."""
    links = []
    if jaeger_url and trace_id:
        links.append(Link("Jaeger", jaeger_trace_url(jaeger_url, trace_id)))
    if grafana_url and run_id:
        links.append(Link("Grafana", grafana_logs_url(grafana_url, run_id, start_ns=start_ns, end_ns=end_ns)))
    return links
