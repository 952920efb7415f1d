"""Bytes of an output stream into log lines: split, bounded, classified, tracebacks kept.

- :class:`LineSplitter` cuts a byte stream at newlines; a carriage-return progress bar
  keeps only its last state; a line over the bound is truncated and flagged; invalid
  UTF-8 is replaced, never fatal.
- :func:`detect_severity` reads a level from the text (``ERROR``, ``Traceback``,
  ``UserWarning:``...).
- :class:`TracebackGrouper` keeps a Python traceback (chained ones included) together as
  one ERROR record.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

DEFAULT_MAX_LINE = 64 * 1024


@dataclass(frozen=True)
class Line:
    text: str
    truncated: bool = False
    level: str = "info"


class LineSplitter:
    """Feed bytes, get complete lines; :meth:`flush` returns the partial last line."""

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._max = max_line
        self._pending = bytearray()
        self._truncated = False

    def feed(self, data: bytes) -> Iterator[Line]:
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._hold(data[start:])
                return
            self._hold(data[start:end])
            yield self._take()
            start = end + 1

    def _hold(self, chunk: bytes) -> None:
        if not chunk:
            return
        room = self._max - len(self._pending)
        if len(chunk) > room:
            # a progress bar redraws with \r: keep its latest state, not the first 64 KiB
            last_cr = chunk.rfind(b"\r")
            if last_cr >= 0 and len(chunk) - last_cr - 1 <= self._max:
                self._pending = bytearray(chunk[last_cr:])
                return
            self._pending += chunk[: max(room, 0)]
            self._truncated = True
            return
        self._pending += chunk

    def _take(self) -> Line:
        raw = bytes(self._pending)
        truncated = self._truncated
        self._pending.clear()
        self._truncated = False
        if raw.endswith(b"\r"):
            raw = raw[:-1]  # CRLF
        if b"\r" in raw:
            raw = raw.rsplit(b"\r", 1)[1] or raw.rstrip(b"\r").rsplit(b"\r", 1)[-1]
        return Line(raw.decode("utf-8", errors="replace"), truncated)

    @property
    def has_partial(self) -> bool:
        return bool(self._pending)

    def flush(self) -> Line | None:
        """The partial line held so far (at the end of the stream, or after a timeout)."""
        if not self._pending:
            return None
        return self._take()


_LEVELS = (
    ("fatal", re.compile(r"\b(?:CRITICAL|FATAL|Fatal Python error|Segmentation fault|Killed)\b")),
    (
        "error",
        re.compile(
            r"\b(?:ERROR|Error|Exception)\b[:\]]|\bERROR\b|^Traceback \(most recent call last\):|^\w+(?:Error|Exception): |\berror:"
        ),
    ),
    ("warning", re.compile(r"\bWARN(?:ING)?\b|\b\w*Warning: |\bwarning:")),
    ("debug", re.compile(r"\bDEBUG\b")),
)


def detect_severity(text: str, default: str = "info") -> str:
    """A level name read from a log line's text."""
    head = text[:512]
    for level, pattern in _LEVELS:
        if pattern.search(head):
            return level
    return default


_TRACEBACK_START = "Traceback (most recent call last):"
_CHAIN_LINES = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Iteration)?(?::|$)")


class TracebackGrouper:
    """Groups the lines of a Python traceback into one; other lines pass through.

    Feed lines one by one; :meth:`idle` (called when no line came for a while) and
    :meth:`flush` release a traceback whose end could not be seen yet. A traceback
    longer than :attr:`MAX_CHARS` keeps its head and its last lines (the exception),
    with a marker saying how much was left out between them: memory and the record
    stay bounded however long the traceback.
    """

    MAX_LINES = 10_000  # a traceback that never ends is released in parts
    MAX_CHARS = 32 * 1024
    HEAD_CHARS = 8 * 1024
    TAIL_LINES = 64

    def __init__(self) -> None:
        self._group: list[Line] = []  # the head
        self._tail: deque[Line] = deque()
        self._head_chars = 0
        self._lines = 0
        self._omitted_lines = 0
        self._omitted_chars = 0
        self._state = "none"  # none | frames | after_exception

    def _add(self, line: Line) -> None:
        self._lines += 1
        if not self._tail and self._head_chars + len(line.text) <= self.HEAD_CHARS:
            self._group.append(line)
            self._head_chars += len(line.text) + 1
            return
        if len(self._tail) >= self.TAIL_LINES:
            dropped = self._tail.popleft()
            self._omitted_lines += 1
            self._omitted_chars += len(dropped.text) + 1
        self._tail.append(line)

    def feed(self, line: Line) -> Iterator[Line]:
        text = line.text
        if self._state == "none":
            if text.startswith(_TRACEBACK_START):
                self._add(line)
                self._state = "frames"
            else:
                yield line
            return
        if self._state == "frames":
            self._add(line)
            if not text.startswith((" ", "\t")) and text.strip() and _EXCEPTION_LINE.match(text):
                self._state = "after_exception"
            if self._lines >= self.MAX_LINES:
                yield from self.flush()
            return
        # after the exception line: a chained traceback continues the group
        stripped = text.strip()
        if not stripped or stripped in _CHAIN_LINES or text.startswith(_TRACEBACK_START):
            self._add(line)
            if text.startswith(_TRACEBACK_START):
                self._state = "frames"
            return
        if text.startswith((" ", "\t")):  # e.g. a multi-line exception message
            self._add(line)
            return
        yield from self.flush()
        yield from self.feed(line)

    def idle(self) -> Iterator[Line]:
        if self._state == "after_exception":
            yield from self.flush()

    def flush(self) -> Iterator[Line]:
        if not self._group and not self._tail:
            self._state = "none"
            return
        head, tail = self._group, list(self._tail)
        omitted_lines, omitted_chars = self._omitted_lines, self._omitted_chars
        self._group, self._tail = [], deque()
        self._head_chars = self._lines = self._omitted_lines = self._omitted_chars = 0
        self._state = "none"
        lines = tail if tail else head
        while len(lines) > 1 and not lines[-1].text.strip():
            lines.pop()  # blank lines after the exception line belong to no one
        truncated = any(line.truncated for line in head) or any(line.truncated for line in tail)
        # the tail within the bound, the exception line (the last) always kept
        room = self.MAX_CHARS - sum(len(line.text) + 1 for line in head)
        kept: list[str] = []
        for line in reversed(tail):
            if len(line.text) + 1 > room:
                if not kept:  # one enormous exception line: its beginning
                    truncated = True
                    cut = len(line.text) - max(room - 64, 0)
                    kept.append(line.text[: max(room - 64, 0)] + f"…[truncated {cut} chars]")
                    room = 0
                    continue
                omitted_lines += 1
                omitted_chars += len(line.text) + 1
                continue
            kept.append(line.text)
            room -= len(line.text) + 1
        kept.reverse()
        parts = [line.text for line in head]
        if omitted_lines:
            parts.append(f"…[truncated {omitted_lines} lines, {omitted_chars} chars]…")
            truncated = True
        parts.extend(kept)
        yield Line("\n".join(parts), truncated, "error")
