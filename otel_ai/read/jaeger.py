"""Read a run back from Jaeger's query API v3 (``--jaeger URL`` of show and report).

Jaeger v2 serves, next to its UI (port 16686 by default), the HTTP gateway of its
api_v3 query service, which answers in OTLP/JSON:

- ``GET /api/v3/traces/{trace_id}``: one trace, ``{"result": {"resourceSpans": [...]}}``;
- ``GET /api/v3/traces?query.service_name=...&query.attributes={"ai.run.id":"..."}
  &query.start_time_min=...&query.start_time_max=...&query.num_traces=N``: the traces
  that match, in the same shape (Jaeger 2.19 and later honour ``query.attributes``;
  earlier versions ignore it, which is why every answer is checked here for the run id).

Both answer 404 with ``{"error": {"httpCode": 404, "message": ...}}`` when nothing
matches. The spans decode with :mod:`otel_ai.read.otlp_json`, as files do.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from .. import semconv
from .otlp_json import Telemetry
from .records import SpanRecord

__all__ = ["DEFAULT_LOOKBACK", "JaegerError", "JaegerReader", "load_from_jaeger"]

#: How far back a search by run id (or for the latest run) looks.
DEFAULT_LOOKBACK = timedelta(days=30)
#: How many traces one search asks for.
SEARCH_LIMIT = 20

_TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")


class JaegerError(Exception):
    """Jaeger could not be reached, answered an error, or has no such run."""


class JaegerReader:
    """A client of one Jaeger query service's ``/api/v3`` HTTP gateway."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0) -> None:
        parsed = urllib.parse.urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise JaegerError(
                f"--jaeger expects the URL of Jaeger's query service, such as http://localhost:16686, not {base_url!r}"
            )
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any] | None:
        """The decoded answer; None for a 404 (nothing found)."""
        url = f"{self.base_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - http(s) only, checked above
                body = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            detail = _error_message(exc.read())
            raise JaegerError(f"Jaeger at {self.base_url} answered {exc.code} to {path}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise JaegerError(f"cannot reach Jaeger at {self.base_url}: {reason}") from None
        try:
            decoded = json.loads(body)
        except ValueError:
            raise JaegerError(
                f"Jaeger at {self.base_url} answered {path} with something that is not JSON"
            ) from None
        if not isinstance(decoded, dict):
            raise JaegerError(f"Jaeger at {self.base_url} answered {path} with an unexpected JSON shape")
        return decoded

    def get_trace(self, trace_id: str) -> Telemetry | None:
        """One trace by id; None when Jaeger has no such trace."""
        answer = self._get(f"/api/v3/traces/{urllib.parse.quote(trace_id.lower(), safe='')}")
        return None if answer is None else _telemetry(answer)

    def find_traces(
        self,
        service: str,
        *,
        attributes: Mapping[str, str] | None = None,
        lookback: timedelta = DEFAULT_LOOKBACK,
        limit: int = SEARCH_LIMIT,
    ) -> Telemetry:
        """The traces of ``service`` started within ``lookback`` (with span
        ``attributes``, where Jaeger supports the filter); empty when none."""
        now = datetime.now(timezone.utc)
        params = {
            # the snake_case names: accepted by every Jaeger v2 (later ones also take camelCase)
            "query.service_name": service,
            "query.start_time_min": _rfc3339(now - lookback),
            "query.start_time_max": _rfc3339(now + timedelta(minutes=1)),
            "query.num_traces": str(limit),
        }
        if attributes:
            params["query.attributes"] = json.dumps(dict(attributes), separators=(",", ":"))
        answer = self._get("/api/v3/traces", params)
        return Telemetry() if answer is None else _telemetry(answer)


def load_from_jaeger(
    base_url: str,
    target: str | None,
    *,
    service: str = semconv.DEFAULT_SERVICE_NAME,
    lookback: timedelta = DEFAULT_LOOKBACK,
    timeout_s: float = 30.0,
) -> Telemetry:
    """The spans of one run read from Jaeger: ``target`` is a trace id or a run id
    (None: the latest run of ``service``).

    A run id is looked up with a search on ``ai.run.id``; the trace found is then
    fetched whole by its id. Raises :class:`JaegerError` when Jaeger fails or has no
    such run.
    """
    reader = JaegerReader(base_url, timeout_s=timeout_s)
    if target is not None and _TRACE_ID.match(target):
        found = reader.get_trace(target)
        if found is not None and found.spans:
            return found
    attributes = {semconv.RUN_ID: target} if target is not None else None
    candidates = reader.find_traces(service, attributes=attributes, lookback=lookback)
    trace_id = _latest_trace_of_run(candidates.spans, target)
    if trace_id is None:
        what = f"run or trace {target!r}" if target is not None else "run"
        hint = (
            " (Jaeger before 2.19 ignores the search on ai.run.id: pass the run's trace id)"
            if target is not None and candidates.spans
            else ""
        )
        days = lookback.days or 1
        raise JaegerError(
            f"no {what} of service {service!r} in Jaeger at {reader.base_url} in the last {days} days{hint}"
        )
    # the search may cut traces short: read the whole trace by id
    whole = reader.get_trace(trace_id)
    return whole if whole is not None and whole.spans else _only_trace(candidates, trace_id)


def _latest_trace_of_run(spans: list[SpanRecord], run_id: str | None) -> str | None:
    """The trace, among ``spans``, that holds a span of ``run_id`` (any run when None)
    and started last."""
    starts: dict[str, int] = {}
    for span in spans:
        value = span.attributes.get(semconv.RUN_ID)
        if value is None or (run_id is not None and str(value) != run_id):
            continue
        starts[span.trace_id] = min(starts.get(span.trace_id, span.start_ns), span.start_ns)
    if not starts:
        return None
    return max(starts, key=lambda trace_id: starts[trace_id])


def _only_trace(telemetry: Telemetry, trace_id: str) -> Telemetry:
    return Telemetry(spans=[s for s in telemetry.spans if s.trace_id == trace_id])


def _telemetry(answer: Mapping[str, Any]) -> Telemetry:
    result = answer.get("result", answer)  # the gateway wraps the TracesData in "result"
    if not isinstance(result, Mapping):
        raise JaegerError("Jaeger's answer has no OTLP trace data")
    return Telemetry.from_requests([result])


def _error_message(body: bytes) -> str:
    try:
        decoded = json.loads(body)
        return str(decoded["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace").strip()[:300] or "no details"


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
