"""Run state files: what ``otel-ai recover`` needs to end a run whose wrapper died.

``otel-ai run`` writes ``{OTEL_AI_DATA_DIR}/state/{run}.json`` atomically at start (trace
and span id of the ``ai.run`` span, its start time, the wrapper's pid and process start
time), refreshes it with each heartbeat, and removes it at a clean end. A state file whose
wrapper is gone is a run nobody will end: :func:`otel_ai.runner.recovery.recover` ends it as
``ai.run.outcome=abandoned`` with the original ids and start time, so the trace is whole,
then removes the file (running it again changes nothing).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
        import psutil  # not on the path of otel-ai run's start (7 ms)

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
