"""Read a run's OTLP/JSON lines files: the embedded default's, or a collector's.

- The embedded default's files: ``traces-*.jsonl``, ``logs-*.jsonl``, ``metrics-*.jsonl``
  in a directory (OTEL_AI_DATA_DIR), or one such file.
- What a collector's ``file`` exporter wrote: OTLP/JSON lines under whatever name its
  ``path`` says (``otel.json``, rotated ``otel-2026-...json``), a file or a directory of
  them.

Each line is recognised by its top-level key, so one file may mix signals. Reading never
raises on bad content: :func:`read_jsonl` skips (and counts) lines that are not JSON
objects, e.g. the half-written last line of a process that crashed while exporting.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

from .otlp_json import Telemetry

__all__ = ["FILE_PATTERNS", "JsonlReader", "load_directory", "load_path", "read_jsonl"]

#: File-name patterns :func:`load_directory` reads from a directory.
FILE_PATTERNS: tuple[str, ...] = ("traces-*.jsonl", "logs-*.jsonl", "metrics-*.jsonl")
# a collector's file exporter names its files freely; these are what it is usually told
_COLLECTOR_PATTERNS = ("*.json", "*.jsonl")


class JsonlReader(Iterator[dict[str, Any]]):
    """Stream the JSON objects of a JSON-lines file, skipping bad lines.

    Iterating yields one ``dict`` per line that parses as a JSON *object*.
    Blank lines are ignored silently.  A line that is not valid UTF-8/JSON, or
    is JSON but not an object (e.g. the truncated last line written by a
    process that crashed mid-export), is skipped and counted -- iteration never
    raises for bad content.  Opening a missing file does raise
    ``FileNotFoundError`` (on the first ``next()``).

    After (or during) iteration the counters tell what happened:

    Attributes:
        path: The file being read.
        lines: Non-blank lines seen so far.
        records: Lines yielded as objects so far.
        skipped: Lines skipped as unparseable so far.
        skipped_line_numbers: 1-based line numbers of the skipped lines.

    The file is closed when iteration finishes, on :meth:`close`, or when used
    as a context manager and the block exits.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lines = 0
        self.records = 0
        self.skipped = 0
        self.skipped_line_numbers: list[int] = []
        self._gen = self._generate()

    def _generate(self) -> Generator[dict[str, Any], None, None]:
        with open(self.path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                self.lines += 1
                try:
                    obj = json.loads(raw)
                except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError
                    obj = None
                if not isinstance(obj, dict):
                    self.skipped += 1
                    self.skipped_line_numbers.append(number)
                    continue
                self.records += 1
                yield obj

    def __iter__(self) -> JsonlReader:
        return self

    def __next__(self) -> dict[str, Any]:
        return next(self._gen)

    def close(self) -> None:
        """Stop reading and close the file."""
        self._gen.close()

    def __enter__(self) -> JsonlReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_jsonl(path: str | os.PathLike[str]) -> JsonlReader:
    """Stream the JSON objects of ``path`` line by line.

    Returns a :class:`JsonlReader`, an iterator of ``dict`` whose ``skipped``
    attribute counts the lines that were not JSON objects::

        reader = read_jsonl("traces-1.jsonl")
        for obj in reader:
            ...
        print(reader.skipped)
    """
    return JsonlReader(path)


def _load_file(path: Path) -> Telemetry:
    result = Telemetry(files=[path])
    with read_jsonl(path) as reader:
        for obj in reader:
            result.add_request(obj)
    result.skipped_lines = reader.skipped
    return result


def load_directory(path: str | os.PathLike[str]) -> Telemetry:
    """Load the OTLP/JSON telemetry of a run directory or of a single file.

    For a directory, every ``traces-*.jsonl``, ``logs-*.jsonl`` and
    ``metrics-*.jsonl`` file directly inside it (not recursively) is read, in
    sorted name order per pattern.  For a file, just that file is read.  In
    both cases each line is dispatched by its top-level key, not by the file
    name, so a file mixing signals is fine.  Unparseable lines are skipped and
    counted in :attr:`Telemetry.skipped_lines`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    root = Path(path)
    if root.is_dir():
        result = Telemetry()
        seen: set[Path] = set()
        for pattern in FILE_PATTERNS:
            for file in sorted(root.glob(pattern)):
                if file in seen or not file.is_file():
                    continue
                seen.add(file)
                result.extend(_load_file(file))
        return result
    if not root.exists():
        raise FileNotFoundError(f"no such file or directory: {root}")
    return _load_file(root)


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
