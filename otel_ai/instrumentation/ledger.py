"""The token and node ledger of a trace: what processes of one run tell each other.

AI-Scientist-v2 runs its LLM calls and creates its nodes in process-pool workers that
the stage's owner never hears from (a task returns the node as a plain dict). Each
process appends one JSON line per fact to ``OTEL_AI_DATA_DIR/ledger/{trace id}.jsonl``:

- ``{"k": "llm", "s": stage span id, "n": node span id, "i": input, "o": output}``: an
  LLM call, summed by whoever ends the stage (the stage's process) and the run (the
  ``otel-ai run`` wrapper, or the process that started the run);
- ``{"k": "node", "st": stage, "id": node id, "sp": span id}``: where a node's span is,
  so a node born in another worker can link to its parent, and the stage to its best node;
- ``{"k": "stage", "st": stage, "sp": span id}``: where a stage's span is.

A line is written with one ``write`` to a file opened with ``O_APPEND`` (atomic for lines
this short on a local file system); failures are counted, never raised.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LEDGER_DIR = "ledger"
_MAX_LINE = 2048

_lock = threading.Lock()
_fds: dict[str, tuple[int, int]] = {}  # path -> (pid, fd)
errors = 0


def path_for(data_dir: Path | str, trace_id: int) -> Path:
    return Path(data_dir) / LEDGER_DIR / f"{trace_id:032x}.jsonl"


def _data_dir() -> Path | None:
    from ..export.providers import get_pipeline

    pipeline = get_pipeline()
    return None if pipeline.disabled else pipeline.settings.data_dir


def append(trace_id: int, record: dict[str, Any], data_dir: Path | None = None) -> None:
    """Append one record to the trace's ledger (never raises)."""
    global errors
    try:
        directory = data_dir if data_dir is not None else _data_dir()
        if directory is None or not trace_id:
            return
        path = str(path_for(directory, trace_id))
        line = (json.dumps(record, separators=(",", ":"), default=str)[:_MAX_LINE] + "\n").encode()
        with _lock:
            entry = _fds.get(path)
            if entry is None or entry[0] != os.getpid():
                os.makedirs(os.path.dirname(path), exist_ok=True)
                entry = (os.getpid(), os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
                _fds[path] = entry
            os.write(entry[1], line)
    except (OSError, ValueError, TypeError):
        errors += 1


def records(trace_id: int, data_dir: Path | None = None) -> Iterator[dict[str, Any]]:
    """The records of the trace's ledger, oldest first (none when there is no ledger)."""
    try:
        directory = data_dir if data_dir is not None else _data_dir()
        if directory is None:
            return
        with open(path_for(directory, trace_id), "rb") as handle:
            for raw in handle:
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue  # a line torn by a killed writer
                if isinstance(record, dict):
                    yield record
    except OSError:
        return


def token_totals(trace_id: int, stage_span_id: int | None = None, data_dir: Path | None = None) -> tuple[int, int, int]:
    """(input tokens, output tokens, calls) of the LLM calls of the trace, or of one stage."""
    stage = None if stage_span_id is None else f"{stage_span_id:016x}"
    inputs = outputs = calls = 0
    for record in records(trace_id, data_dir):
        if record.get("k") != "llm" or (stage is not None and record.get("s") != stage):
            continue
        inputs += _int(record.get("i"))
        outputs += _int(record.get("o"))
        calls += 1
    return inputs, outputs, calls


def find_span(trace_id: int, kind: str, stage: str | None, node_id: str | None = None) -> int | None:
    """The span id of the latest node (``kind="node"``) or stage record that matches."""
    found = None
    for record in records(trace_id):
        if record.get("k") != kind:
            continue
        if stage is not None and record.get("st") != stage:
            continue
        if node_id is not None and record.get("id") != node_id:
            continue
        try:
            found = int(str(record.get("sp")), 16)
        except ValueError:
            continue
    return found


def _int(value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return 0
    return max(0, number)


def reset() -> None:
    """Close the cached files (tests)."""
    with _lock:
        for pid, fd in _fds.values():
            if pid == os.getpid():
                try:
                    os.close(fd)
                except OSError:
                    pass
        _fds.clear()
