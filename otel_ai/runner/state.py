"""Run state files: what ``otel-ai recover`` needs to end a run whose wrapper died.

``otel-ai run`` writes ``{OTEL_AI_DATA_DIR}/state/{run}.json`` atomically at start (trace
and span id of the ``ai.run`` span, its start time, the wrapper's pid and process start
time), refreshes it with each heartbeat, and removes it at a clean end. A state file whose
wrapper is gone is a run nobody will end: :func:`recover` ends it as
``ai.run.outcome=abandoned`` with the original ids and start time, so the trace is whole,
then removes the file (running it again changes nothing).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from .. import semconv
from .._internal import report_internal_error
from ..export.providers import export_ended_span
from ..model.coerce import coerce_attributes
from ..model.events import WARN, emit_log
from ..version import __version__

STATE_DIR = "state"
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class RunState:
    run_id: str
    trace_id: str
    span_id: str
    start_ns: int
    wrapper_pid: int
    wrapper_started: float
    attempt: int = 1
    parent_span_id: str | None = None
    last_seen_ns: int = 0
    resource: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)

    def wrapper_alive(self) -> bool:
        """True while the process that wrote this state still runs (pid reuse aware)."""
        try:
            process = psutil.Process(self.wrapper_pid)
            return bool(
                abs(process.create_time() - self.wrapper_started) < 1.0
                and process.status() != psutil.STATUS_ZOMBIE
            )
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False


def state_path(data_dir: Path, run_id: str) -> Path:
    return data_dir / STATE_DIR / f"{_SAFE.sub('_', run_id)[:200]}.json"


def write_state(data_dir: Path, state: RunState) -> Path:
    """Write (or refresh) the state file atomically: a reader never sees half of it."""
    path = state_path(data_dir, state.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(asdict(state), handle, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


class DamagedState(ValueError):
    """A state file that cannot be read as a run's state (truncated, not JSON, a field
    of the wrong type): named, skipped, never fatal to the other runs."""


_TYPES: dict[str, tuple[type, ...]] = {
    "run_id": (str,),
    "trace_id": (str,),
    "span_id": (str,),
    "start_ns": (int,),
    "wrapper_pid": (int,),
    "wrapper_started": (int, float),
    "attempt": (int,),
    "parent_span_id": (str, type(None)),
    "last_seen_ns": (int,),
    "resource": (dict,),
    "attributes": (dict,),
}
_HEX_IDS = {"trace_id": 32, "span_id": 16, "parent_span_id": 16}


def load_state(path: Path) -> RunState:
    """The state in ``path``; :class:`DamagedState` saying why when it cannot be used."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedState(f"cannot read it ({exc})") from exc
    except ValueError as exc:
        raise DamagedState(f"not JSON, truncated or damaged ({exc})") from exc
    if not isinstance(data, dict):
        raise DamagedState(f"a JSON {type(data).__name__}, not an object")
    known = {k: v for k, v in data.items() if k in _TYPES}
    for name, types in _TYPES.items():
        if name not in known:
            continue
        value = known[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise DamagedState(f"field {name!r} is a {type(value).__name__}")
        width = _HEX_IDS.get(name)
        if width is not None and isinstance(value, str):
            try:
                valid = len(value) == width and int(value, 16) != 0
            except ValueError:
                valid = False
            if not valid:
                raise DamagedState(f"field {name!r} is not a {width}-digit hex id")
    try:
        return RunState(**known)
    except TypeError as exc:  # a required field is missing
        raise DamagedState(str(exc)) from exc


def read_state(path: Path) -> RunState | None:
    try:
        return load_state(path)
    except DamagedState:
        return None


def damaged_states(data_dir: Path) -> list[tuple[Path, str]]:
    """State files that cannot be used, with the reason for each."""
    directory = data_dir / STATE_DIR
    if not directory.is_dir():
        return []
    damaged = []
    for path in sorted(directory.glob("*.json")):
        try:
            load_state(path)
        except DamagedState as exc:
            damaged.append((path, str(exc)))
    return damaged


def remove_state(data_dir: Path, run_id: str) -> None:
    try:
        state_path(data_dir, run_id).unlink()
    except FileNotFoundError:
        pass


def list_states(data_dir: Path) -> list[tuple[Path, RunState | None]]:
    directory = data_dir / STATE_DIR
    if not directory.is_dir():
        return []
    return [(path, read_state(path)) for path in sorted(directory.glob("*.json"))]


@dataclass
class Recovered:
    run_id: str
    trace_id: str
    span_id: str
    attempt: int


def recover(data_dir: Path, *, only_run: str | None = None, reason: str = "wrapper died") -> list[Recovered]:
    """End every run whose wrapper died, as abandoned, with its original ids."""
    recovered = []
    for path, state in list_states(data_dir):
        if state is None:
            continue  # unreadable (being written right now, or damaged): leave it
        if only_run is not None and state.run_id != only_run:
            continue
        if state.wrapper_alive():
            continue
        try:
            span = _abandoned_span(state, reason)
        except Exception as exc:  # noqa: BLE001 - one odd run must not stop the others
            report_internal_error(f"otel_ai.runner.state.recover[{path.name}]", exc)
            continue

        export_ended_span(span)
        attributes = dict(span.attributes or {})
        emit_log(
            _context_of(span),
            state.run_id,
            attributes,
            event_name=semconv.RUN_ABANDONED,
            body=f"{semconv.RUN_ABANDONED} outcome=abandoned reason={reason}",
            level=WARN,
        )
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        recovered.append(Recovered(state.run_id, state.trace_id, state.span_id, state.attempt))
    return recovered


def _context_of(span: ReadableSpan) -> Context:
    assert span.context is not None
    return trace_api.set_span_in_context(trace_api.NonRecordingSpan(span.context))


def _abandoned_span(state: RunState, reason: str) -> ReadableSpan:
    end_ns = max(state.last_seen_ns, state.start_ns) or time.time_ns()
    context = SpanContext(
        int(state.trace_id, 16), int(state.span_id, 16), is_remote=False, trace_flags=TraceFlags(1)
    )
    parent = None
    if state.parent_span_id:
        parent = SpanContext(
            int(state.trace_id, 16), int(state.parent_span_id, 16), is_remote=True, trace_flags=TraceFlags(1)
        )
    attributes: Mapping[str, Any] = coerce_attributes(
        {
            **state.attributes,
            semconv.RUN_ID: state.run_id,
            semconv.RUN_OUTCOME: semconv.OUTCOME_ABANDONED,
            semconv.RUN_END_REASON: reason,
            semconv.RUN_ATTEMPT: state.attempt,
            semconv.RUN_DURATION_S: round((end_ns - state.start_ns) / 1e9, 6),
        }
    )
    return ReadableSpan(
        name=semconv.SPAN_RUN,
        context=context,
        parent=parent,
        resource=Resource(state.resource),
        attributes=attributes,
        kind=SpanKind.INTERNAL,
        status=Status(StatusCode.ERROR, f"run abandoned: {reason}"),
        start_time=state.start_ns,
        end_time=end_ns,
        instrumentation_scope=InstrumentationScope(semconv.SCOPE_NAME, __version__),
    )
