"""Bytes of an output stream into log lines: split, bounded, classified, tracebacks kept.

- :class:`LineSplitter` cuts a byte stream at newlines into :class:`~otel_ai.model.lines.Line`
  (the one line type, whose severity :func:`~otel_ai.model.lines.line_severity` reads);
  a carriage-return progress bar keeps only its last state; a line over the bound is
  truncated and the bytes left out counted; invalid UTF-8 is replaced, never fatal.
- :class:`TracebackGrouper` keeps a Python traceback (chained ones included) together as
  one ERROR record.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator

from ..model.lines import TRACEBACK_START, Line

DEFAULT_MAX_LINE = 64 * 1024


class LineSplitter:
    """Feed bytes, get complete lines; :meth:`flush` returns the partial last line."""

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._max = max_line
        self._pending = bytearray()
        self._cut = 0

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
            self._cut += len(chunk) - max(room, 0)
            return
        self._pending += chunk

    def _take(self, partial: bool = False) -> Line:
        raw = bytes(self._pending)
        cut = self._cut
        self._pending.clear()
        self._cut = 0
        if raw.endswith(b"\r"):
            raw = raw[:-1]  # CRLF
        if b"\r" in raw:
            raw = raw.rsplit(b"\r", 1)[1] or raw.rstrip(b"\r").rsplit(b"\r", 1)[-1]
        return Line(raw, cut, partial)

    def flush(self) -> Line | None:
        """The partial line held so far (at the end of the stream, or after a timeout)."""
        if not self._pending:
            return None
        return self._take(partial=True)


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
        self._group: list[str] = []  # the head
        self._tail: deque[str] = deque()
        self._cut = 0  # left out of the lines grouped so far
        self._head_chars = 0
        self._lines = 0
        self._omitted_lines = 0
        self._omitted_chars = 0
        self._state = "none"  # none | frames | after_exception

    def _add(self, line: Line, text: str) -> None:
        self._lines += 1
        self._cut += line.cut
        if not self._tail and self._head_chars + len(text) <= self.HEAD_CHARS:
            self._group.append(text)
            self._head_chars += len(text) + 1
            return
        if len(self._tail) >= self.TAIL_LINES:
            dropped = self._tail.popleft()
            self._omitted_lines += 1
            self._omitted_chars += len(dropped) + 1
        self._tail.append(text)

    def feed(self, line: Line) -> Iterator[Line]:
        text = line.text
        if self._state == "none":
            if text.startswith(TRACEBACK_START):
                self._add(line, text)
                self._state = "frames"
            else:
                yield line
            return
        if self._state == "frames":
            self._add(line, text)
            if not text.startswith((" ", "\t")) and text.strip() and _EXCEPTION_LINE.match(text):
                self._state = "after_exception"
            if self._lines >= self.MAX_LINES:
                yield from self.flush()
            return
        # after the exception line: a chained traceback continues the group
        stripped = text.strip()
        if not stripped or stripped in _CHAIN_LINES or text.startswith(TRACEBACK_START):
            self._add(line, text)
            if text.startswith(TRACEBACK_START):
                self._state = "frames"
            return
        if text.startswith((" ", "\t")):  # e.g. a multi-line exception message
            self._add(line, text)
            return
        yield from self.flush()
        yield from self.feed(line)

    def idle(self) -> Iterator[Line]:
        if self._state == "after_exception":
            yield from self.flush()

    def flush(self) -> Iterator[Line]:
        """The traceback grouped so far as one line (its text starts with the traceback
        header, so its severity is ERROR); ``cut`` is non-zero when it was bounded."""
        if not self._group and not self._tail:
            self._state = "none"
            return
        head, tail = self._group, list(self._tail)
        omitted_lines, omitted_chars, cut = self._omitted_lines, self._omitted_chars, self._cut
        self._group, self._tail = [], deque()
        self._head_chars = self._lines = self._omitted_lines = self._omitted_chars = self._cut = 0
        self._state = "none"
        lines = tail if tail else head
        while len(lines) > 1 and not lines[-1].strip():
            lines.pop()  # blank lines after the exception line belong to no one
        # the tail within the bound, the exception line (the last) always kept
        room = self.MAX_CHARS - sum(len(text) + 1 for text in head)
        kept: list[str] = []
        for text in reversed(tail):
            if len(text) + 1 > room:
                if not kept:  # one enormous exception line: its beginning
                    left_out = len(text) - max(room - 64, 0)
                    cut += left_out
                    kept.append(text[: max(room - 64, 0)] + f"…[truncated {left_out} chars]")
                    room = 0
                    continue
                omitted_lines += 1
                omitted_chars += len(text) + 1
                continue
            kept.append(text)
            room -= len(text) + 1
        kept.reverse()
        parts = list(head)
        if omitted_lines:
            parts.append(f"…[truncated {omitted_lines} lines, {omitted_chars} chars]…")
            cut += omitted_chars
        parts.extend(kept)
        yield Line("\n".join(parts).encode(), cut)
