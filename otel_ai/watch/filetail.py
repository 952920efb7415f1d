"""One tailed file: every complete line of it, once, in order, whatever happens to its path.

A :class:`FileTail` follows one file through an open descriptor, so it survives what
happens to the path:

- rotation by rename (``app.log`` -> ``app.log.1``, a new ``app.log``): the old file is
  drained to its end through the descriptor, kept for a grace period in case its writer
  still appends, then closed; the new file is read from its start. A tailed file renamed
  to another tailed name keeps its position (same inode);
- copy-truncate: the file shrinks below our position, or the bytes just before our
  position change (a fingerprint), and reading restarts at 0;
- deletion: what the writer wrote before it is drained through the descriptor;
- partial lines are held until their newline, or until ``flush_timeout_s`` without new
  data (then delivered with ``partial`` set); at the end of a run they are delivered too;
- lines longer than ``max_line_bytes`` keep their head, the rest is counted (``cut``),
  never held in memory.

Delivery follows the sink's pace: the sink says how many lines it can take now
(:meth:`LineSink.room`); lines it cannot take yet wait in a backlog of at most one read
(256 KiB), and nothing more is read until they are taken. The file itself is the
buffer, so a slow exporter costs latency, never lines. ``consumed`` (the offset after the last delivered line) and a
fingerprint of the bytes before it are what survives a restart.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..model.lines import Line

CHUNK = 256 * 1024
FINGERPRINT = 32
DEFAULT_MAX_LINE_BYTES = 64 * 1024
# the marker appended to a cut line is not counted against the bound
_MARKER_ROOM = 64
# what FileTail.poll found
DONE, MORE, BLOCKED = 0, 1, 2


@dataclass(frozen=True)
class TailSource:
    """Where lines come from: the file's absolute path and its path relative to its root."""

    path: str
    relative: str
    root: str


class LineSink(Protocol):
    """Where tailed lines go (the run's log records, in production)."""

    def room(self) -> int:
        """How many lines can be taken now without anything being dropped downstream."""
        ...

    def deliver(self, source: TailSource, lines: Sequence[Line]) -> None:
        """Take ``lines`` (never more than the last :meth:`room` said), in order."""
        ...


@dataclass
class TailStats:
    lines: int = 0
    truncated: int = 0
    partial: int = 0
    empty: int = 0
    rotations: int = 0
    files: int = 0


class FileTail:
    """One tailed file (see the module docstring)."""

    def __init__(
        self,
        source: TailSource,
        dev: int,
        ino: int,
        offset: int,
        *,
        max_line_bytes: int,
        fingerprint: bytes = b"",
    ) -> None:
        self.source = source
        self.dev = dev
        self.ino = ino
        self.fd: int | None = None
        self.pos = offset  # next byte to read
        self.consumed = offset  # first byte not yet delivered (a line start)
        self.pending = b""  # bytes of the line being held (its head, when over-long)
        self.discarding = False  # over the bound: skipping to the next newline
        self.cut = 0
        self.fingerprint = fingerprint  # the bytes just before ``consumed``
        self.max_line = max_line_bytes
        self.head = max(max_line_bytes - _MARKER_ROOM, 1)
        now = time.monotonic()
        self.last_data = now
        self.last_used = now
        self.last_mtime = -1
        self.retired_at: float | None = None
        # complete lines read but not yet taken by the sink (at most one read's worth)
        self.backlog: list[Line] = []
        self.backlog_ends: list[int] = []

    def __repr__(self) -> str:
        return f"<FileTail {self.source.relative} ino={self.ino} at {self.consumed}>"

    @property
    def has_pending(self) -> bool:
        return bool(self.pending) or self.discarding

    # -- descriptors ------------------------------------------------------------------
    def open(self) -> bool:
        """(Re)open the file by path; False when the path is gone or holds another file."""
        if self.fd is not None:
            return True
        try:
            fd = os.open(
                self.source.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
            )
        except OSError:
            return False
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (self.dev, self.ino) or not stat.S_ISREG(st.st_mode):
            os.close(fd)
            return False
        self.fd = fd
        return True

    def adopt_fd(self, fd: int) -> None:
        self.close()
        self.fd = fd

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    # -- reading ----------------------------------------------------------------------
    def poll(self, sink: LineSink, stats: TailStats, *, budget: int = 8 * CHUNK) -> int:
        """Deliver what was appended. Returns DONE (at the end of the file), MORE (the
        budget is spent, more is waiting) or BLOCKED (the sink is full)."""
        fd = self.fd
        if fd is None:
            return DONE
        self.last_used = time.monotonic()
        if self.backlog and not self._deliver_backlog(sink, stats):
            return BLOCKED
        st = os.fstat(fd)
        if st.st_size < self.pos or (st.st_mtime_ns != self.last_mtime and not self._fingerprint_holds(fd)):
            self._restart(sink, stats)
        self.last_mtime = st.st_mtime_ns
        spent = 0
        while spent < budget:
            data = os.pread(fd, CHUNK, self.pos)
            if not data:
                return DONE
            spent += len(data)
            self.last_data = time.monotonic()
            self._take(data)
            if self.backlog and not self._deliver_backlog(sink, stats):
                return BLOCKED
        return MORE

    def _fingerprint_holds(self, fd: int) -> bool:
        fp = self.fingerprint
        if not fp:
            return True
        return os.pread(fd, len(fp), self.consumed - len(fp)) == fp

    def _restart(self, sink: LineSink, stats: TailStats) -> None:
        """Copy-truncate: the file was cut below our position (or rewritten); start over.
        Lines read but not yet delivered, and a line being held, were written before the
        cut: they are delivered, not lost (one batch over the sink's conservative room)."""
        leftovers = list(self.backlog)
        if self.has_pending:
            leftovers.append(Line(self.pending, self.cut, True))
        if leftovers:
            self._deliver(sink, stats, leftovers)
        self.backlog.clear()
        self.backlog_ends.clear()
        self.pos = self.consumed = 0
        self.pending = b""
        self.discarding = False
        self.cut = 0
        self.fingerprint = b""
        stats.rotations += 1

    def _take(self, data: bytes) -> None:
        """Split ``data`` (read at ``self.pos``) into complete lines, added to the backlog
        with the offset just after each; the unfinished last line is held."""
        base = self.pos
        self.pos += len(data)
        lines = self.backlog
        ends = self.backlog_ends
        start = 0
        if self.discarding:
            newline = data.find(b"\n")
            if newline < 0:
                self.cut += len(data)
                return
            self.cut += newline
            lines.append(Line(self.pending, self.cut))
            ends.append(base + newline + 1)
            self.pending = b""
            self.discarding = False
            self.cut = 0
            start = newline + 1
        held = self.pending
        if held:
            buf = held + data[start:]
        else:
            buf = data[start:] if start else data
        position = base + start - len(held)
        parts = buf.split(b"\n")
        tail = parts.pop()
        limit = self.max_line
        for part in parts:
            position += len(part) + 1
            ends.append(position)
            if len(part) > limit:
                lines.append(Line(part[: self.head], len(part) - self.head))
            else:
                lines.append(Line(part))
        if len(tail) > limit:
            self.pending = tail[: self.head]
            self.cut = len(tail) - self.head
            self.discarding = True
        else:
            self.pending = tail

    def _deliver_backlog(self, sink: LineSink, stats: TailStats) -> bool:
        """Hand the backlog over as far as the sink has room; True when it is empty."""
        lines, ends = self.backlog, self.backlog_ends
        done = 0
        total = len(lines)
        while done < total:
            room = sink.room()
            if room <= 0:
                break
            count = min(room, total - done, 4096)
            self._deliver(sink, stats, lines[done : done + count])
            done += count
            self.consumed = ends[done - 1]
        if done:
            del lines[:done]
            del ends[:done]
            self._remember_fingerprint()
        return not lines

    def _deliver(self, sink: LineSink, stats: TailStats, lines: Sequence[Line]) -> None:
        kept = [line for line in lines if line.cut or (line.data and line.data != b"\r")]
        stats.empty += len(lines) - len(kept)
        if kept:
            sink.deliver(self.source, kept)
            stats.lines += len(kept)
            for line in kept:
                if line.cut:
                    stats.truncated += 1
                if line.partial:
                    stats.partial += 1

    def _remember_fingerprint(self) -> None:
        fd = self.fd
        size = min(FINGERPRINT, self.consumed)
        if fd is None or size <= 0:
            self.fingerprint = b""
            return
        try:
            self.fingerprint = os.pread(fd, size, self.consumed - size)
        except OSError:
            self.fingerprint = b""

    def flush_partial(self, sink: LineSink, stats: TailStats) -> bool:
        """Deliver the held partial line (flush timeout, end of run) after the backlog;
        False while the sink is full."""
        if self.backlog and not self._deliver_backlog(sink, stats):
            return False
        if not self.has_pending:
            return True
        if sink.room() <= 0:
            return False
        line = Line(self.pending, self.cut, True)
        self.pending = b""
        self.discarding = False
        self.cut = 0
        self._deliver(sink, stats, [line])
        self.consumed = self.pos
        self._remember_fingerprint()
        return True

    def undelivered_bytes(self) -> int:
        """Bytes written to the file but not delivered (held, or not read yet)."""
        fd = self.fd
        try:
            size = os.fstat(fd).st_size if fd is not None else os.stat(self.source.path).st_size
        except OSError:
            return self.pos - self.consumed
        return max(size - self.consumed, 0)

    def state(self) -> dict[str, Any]:
        return {"dev": self.dev, "ino": self.ino, "offset": self.consumed, "fp": self.fingerprint.hex()}


def start_offset(fd: int, size: int) -> int:
    """Where "from the end" starts: after the last complete line, so a line being
    written when tailing starts is delivered whole once its newline arrives."""
    if size <= 0:
        return 0
    window = min(size, DEFAULT_MAX_LINE_BYTES)
    data = os.pread(fd, window, size - window)
    newline = data.rfind(b"\n")
    if newline < 0:
        return size if window < size else 0
    return size - window + newline + 1


__all__ = [
    "BLOCKED",
    "CHUNK",
    "DEFAULT_MAX_LINE_BYTES",
    "DONE",
    "FINGERPRINT",
    "MORE",
    "FileTail",
    "LineSink",
    "TailSource",
    "TailStats",
    "start_offset",
]
