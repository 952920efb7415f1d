"""The token and node ledger of a trace: what processes of one run tell each other.

AI-Scientist-v2 runs its LLM calls and creates its nodes in process-pool workers that
the stage's owner never hears from (a task returns the node as a plain dict). Each
process appends one JSON line per fact to ``OTEL_AI_DATA_DIR/ledger/{trace id}.jsonl``:

- ``{"k": "llm", "s": stage span id, "n": node span id, "i": input, "o": output}``: an
  LLM call, summed by whoever ends the stage (the stage's process) and the run (the
  ``otel-ai run`` wrapper, or the process that started the run);
- ``{"k": "node", "st": stage, "id": node id, "sp": span id}``: where a node's span is,
  so the process that submits a later node task can send its parent's context with it,
  and the stage can link to its best node;
- ``{"k": "done", "s": stage span id, "n": node span id, "b": is_buggy}``: a node ended
  in a process that does not own its stage (a pool worker), counted by the stage's
  owner in the stage span's ``ai.stage.nodes.*`` when it ends the stage.

(A stage's span travels with each pool task instead: nothing about it must outlive a
process. Records of kind ``stage`` from older versions are still read.)

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

from ..export.providers import get_pipeline

LEDGER_DIR = "ledger"
_MAX_LINE = 2048

_lock = threading.Lock()
_fds: dict[str, tuple[int, int]] = {}  # path -> (pid, fd)
errors = 0


def path_for(data_dir: Path | str, trace_id: int) -> Path:
    return Path(data_dir) / LEDGER_DIR / f"{trace_id:032x}.jsonl"


def _data_dir() -> Path | None:
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


class _Index:
    """What one process knows of one ledger file, read incrementally: each lookup reads
    only the lines appended since the last one, so its cost does not grow with the run.

    Memory: per node record one entry in ``spans`` for each of (stage, id), (None, id)
    and one per stage for (stage, None), and per node ended in a pool worker one entry
    in ``outcomes``, i.e. a few hundred bytes per node, and per stage one token total.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.identity: tuple[int, int] | None = None  # (device, inode) of the file read
        self.offset = 0
        # (kind, stage or None, node id or None) -> (span id, stage) of the latest match
        self.spans: dict[tuple[str, str | None, str | None], tuple[int, str | None]] = {}
        # stage span id (hex) or None (the whole trace) -> [input, output, calls]
        self.tokens: dict[str | None, list[int]] = {}
        # stage span id (hex) -> node span id (hex) -> is_buggy, of nodes ended elsewhere
        self.outcomes: dict[str, dict[str, bool | None]] = {}

    def refresh(self) -> None:
        try:
            handle = open(self.path, "rb")
        except OSError:
            return
        with handle:
            info = os.fstat(handle.fileno())
            identity = (info.st_dev, info.st_ino)
            if identity != self.identity or info.st_size < self.offset:
                self.__init__(self.path)  # type: ignore[misc]  # a new file: start over
                self.identity = identity
            if info.st_size == self.offset:
                return
            handle.seek(self.offset)
            data = handle.read(info.st_size - self.offset)
        end = data.rfind(b"\n")
        if end < 0:
            return  # a line still being written
        self.offset += end + 1
        for raw in data[: end + 1].splitlines():
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # a line torn by a killed writer
            if isinstance(record, dict):
                self._add(record)

    def _add(self, record: dict[str, Any]) -> None:
        kind = record.get("k")
        if kind == "llm":
            counts = (_int(record.get("i")), _int(record.get("o")))
            for key in {None, record.get("s") if isinstance(record.get("s"), str) else None}:
                totals = self.tokens.setdefault(key, [0, 0, 0])
                totals[0] += counts[0]
                totals[1] += counts[1]
                totals[2] += 1
            return
        if kind == "done":
            stage_span, node_span, buggy = record.get("s"), record.get("n"), record.get("b")
            if isinstance(stage_span, str) and isinstance(node_span, str):
                self.outcomes.setdefault(stage_span, {})[node_span] = (
                    buggy if isinstance(buggy, bool) else None
                )
            return
        if not isinstance(kind, str):
            return
        try:
            span_id = int(str(record.get("sp")), 16)
        except ValueError:
            return
        stage, node_id = record.get("st"), record.get("id")
        stage = stage if isinstance(stage, str) else None
        node_id = node_id if isinstance(node_id, str) else None
        value = (span_id, stage)
        for key in {(kind, stage, node_id), (kind, None, node_id), (kind, stage, None), (kind, None, None)}:
            self.spans[key] = value


_indexes: dict[str, _Index] = {}


def _index(trace_id: int, data_dir: Path | None) -> _Index | None:
    directory = data_dir if data_dir is not None else _data_dir()
    if directory is None or not trace_id:
        return None
    path = str(path_for(directory, trace_id))
    with _lock:
        index = _indexes.get(path)
        if index is None:
            index = _indexes[path] = _Index(path)
        index.refresh()
    return index


def records(trace_id: int, data_dir: Path | None = None) -> Iterator[dict[str, Any]]:
    """The records of the trace's ledger, oldest first (none when there is no ledger).
    Reads the whole file: for tools and tests; lookups use the incremental index."""
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


def token_totals(
    trace_id: int, stage_span_id: int | None = None, data_dir: Path | None = None
) -> tuple[int, int, int]:
    """(input tokens, output tokens, calls) of the LLM calls of the trace, or of one stage."""
    try:
        index = _index(trace_id, data_dir)
    except OSError:
        return 0, 0, 0
    if index is None:
        return 0, 0, 0
    stage = None if stage_span_id is None else f"{stage_span_id:016x}"
    with _lock:
        totals = index.tokens.get(stage)
        return (totals[0], totals[1], totals[2]) if totals else (0, 0, 0)


def node_ended_elsewhere(trace_id: int, stage_span_id: int, node_span_id: int, is_buggy: bool | None) -> None:
    """A node of a stage another process owns has ended here: its owner counts it."""
    append(trace_id, {"k": "done", "s": f"{stage_span_id:016x}", "n": f"{node_span_id:016x}", "b": is_buggy})


def nodes_ended_elsewhere(trace_id: int, stage_span_id: int) -> dict[int, bool | None]:
    """Node span id -> is_buggy of the stage's nodes that ended in other processes."""
    try:
        index = _index(trace_id, None)
    except OSError:
        return {}
    if index is None:
        return {}
    with _lock:
        found = dict(index.outcomes.get(f"{stage_span_id:016x}", {}))
    result: dict[int, bool | None] = {}
    for span, buggy in found.items():
        try:
            result[int(span, 16)] = buggy
        except ValueError:
            continue
    return result


def find_span(trace_id: int, kind: str, stage: str | None, node_id: str | None = None) -> int | None:
    """The span id of the latest node (``kind="node"``) or stage record that matches."""
    found = find(trace_id, kind, stage, node_id)
    return None if found is None else found[0]


def find(
    trace_id: int, kind: str, stage: str | None, node_id: str | None = None, data_dir: Path | None = None
) -> tuple[int, str | None] | None:
    """(span id, stage name) of the latest record of that kind that matches, or None."""
    try:
        index = _index(trace_id, data_dir)
    except OSError:
        return None
    if index is None:
        return None
    with _lock:
        return index.spans.get((kind, stage, node_id))


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
        _indexes.clear()


def _lock_after_fork() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_lock_after_fork)
