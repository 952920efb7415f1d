"""Find a run where ``otel-ai show`` and ``otel-ai report`` read it from.

The embedded default's files or a collector's file exporter output (a directory or a
file, :mod:`otel_ai.read.files`), or Jaeger's query API v3 (:mod:`otel_ai.read.jaeger`).
"""

from __future__ import annotations

from pathlib import Path

from .. import semconv
from .files import load_path
from .jaeger import JaegerError, load_from_jaeger
from .runview import RunView, build_runs

__all__ = ["RunNotFound", "find_run", "runs_from_jaeger"]


class RunNotFound(Exception):
    """No such run at the source, or the source could not be read; the message says why."""


def find_run(
    target: str | None,
    data_dir: Path,
    *,
    jaeger: str | None = None,
    service: str = semconv.DEFAULT_SERVICE_NAME,
) -> tuple[RunView, list[RunView]]:
    """The run named by ``target`` (a run id, trace id, directory or file); the latest
    one when ``target`` is None. Returns it and every run of the same source.
    With ``jaeger`` (a URL), the run is read from Jaeger's query API instead.
    Raises :class:`RunNotFound`."""
    if jaeger is not None:
        return runs_from_jaeger(jaeger, target, service)
    source = data_dir
    run_id = None
    if target is not None:
        path = Path(target)
        if path.exists():
            source = path
        else:
            run_id = target
    if not source.exists():
        raise RunNotFound(f"no telemetry at {source} (set OTEL_AI_DATA_DIR or pass a path)")
    runs = build_runs(load_path(source))
    if not runs:
        raise RunNotFound(f"no run found in {source}")
    if run_id is None:
        return runs[-1], runs
    matches = [r for r in runs if r.run_id == run_id or r.trace_id == run_id.lower()]
    if not matches:
        known = ", ".join(r.run_id for r in runs[-10:])
        raise RunNotFound(f"no run {run_id!r} in {source}; runs there: {known}")
    return matches[-1], runs


def runs_from_jaeger(jaeger_url: str, target: str | None, service: str) -> tuple[RunView, list[RunView]]:
    """The run named by ``target`` (run id or trace id; None: the latest) read from
    Jaeger, and the runs of the same trace. Raises :class:`RunNotFound`."""
    try:
        telemetry = load_from_jaeger(jaeger_url, target, service=service)
    except JaegerError as exc:
        raise RunNotFound(str(exc)) from None
    runs = build_runs(telemetry)
    if not runs:
        raise RunNotFound(f"the trace Jaeger at {jaeger_url} returned for {target!r} holds no otel_ai run")
    if target is not None:
        matches = [r for r in runs if r.run_id == target or r.trace_id == target.lower()]
        if matches:
            return matches[-1], runs
    return runs[-1], runs
