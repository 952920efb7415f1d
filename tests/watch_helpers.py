"""Helpers shared by the watcher tests: a collecting line sink, waiting, writing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from otel_ai.watch import Line, TailSource, Watcher


class Collector:
    """A real line sink that keeps what it was given (source, bytes, cut, partial)."""

    def __init__(self, room: int = 1 << 30) -> None:
        self._room = room
        self._lock = threading.Lock()
        self.records: list[tuple[str, bytes, int, bool]] = []

    def room(self) -> int:
        return self._room

    def deliver(self, source: TailSource, lines: Sequence[Line]) -> None:
        with self._lock:
            self.records.extend((source.relative, line.data, line.cut, line.partial) for line in lines)

    def texts(self, relative: str | None = None) -> list[str]:
        with self._lock:
            return [d.decode() for r, d, _c, _p in self.records if relative is None or r == relative]

    def __len__(self) -> int:
        with self._lock:
            return len(self.records)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def logs_only(root: Path, sink: Collector, **options: object) -> Watcher:
    """A started watcher of ``root`` that tails logs into ``sink`` and detects nothing."""
    options.setdefault("artifact_patterns", ())
    return Watcher(None, [root], line_sink=sink, **options).start()  # type: ignore[arg-type]


def append(path: Path, text: str | bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(text.encode() if isinstance(text, str) else text)
