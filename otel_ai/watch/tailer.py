"""Lossless log tailing: every complete line of every tailed file, once, in order.

A :class:`LogTailer` keeps the :class:`~otel_ai.watch.filetail.FileTail` of each tailed
file (see there for rotation, copy-truncate, deletion, partial and over-long lines), by
path and by inode, so that a file renamed to another tailed name keeps its position and a
rotated-away file is drained for a grace period before it is closed. It keeps at most
``max_open_files`` descriptors open, resumes from saved positions, and at the end drains
everything within a deadline.

Delivery follows the sink's pace: the sink says how many lines it can take now
(:meth:`LineSink.room`); lines it cannot take yet wait in a backlog of at most one read
(256 KiB), and nothing more is read until they are taken. The file itself is the
buffer, so a slow exporter costs latency, never lines. ``consumed`` (the offset after the last delivered line) and a
fingerprint of the bytes before it are what survives a restart.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..model.lines import Line
from .filetail import (
    BLOCKED,
    CHUNK,
    DEFAULT_MAX_LINE_BYTES,
    DONE,
    FINGERPRINT,
    FileTail,
    LineSink,
    TailSource,
    TailStats,
    start_offset,
)


@dataclass
class _Restored:
    offset: int
    fingerprint: bytes


class LogTailer:
    """All tailed files of a watcher, by path and by inode.

    Not thread-safe: one thread (the watcher's) drives it.
    """

    def __init__(
        self,
        sink: LineSink,
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        flush_timeout_s: float = 2.0,
        retire_grace_s: float = 5.0,
        max_open_files: int = 512,
        on_refused: Callable[[TailSource], None] | None = None,
    ) -> None:
        self.sink = sink
        self.max_line_bytes = int(max_line_bytes)
        self.flush_timeout_s = float(flush_timeout_s)
        self.retire_grace_s = float(retire_grace_s)
        self.max_open_files = max(int(max_open_files), 8)
        self.stats = TailStats()
        self.tails: dict[str, FileTail] = {}
        self._by_inode: dict[tuple[int, int], FileTail] = {}
        self._retiring: list[FileTail] = []
        self._again: set[FileTail] = set()
        self.blocked = False  # the sink was full: poll again after a short pause, not at once
        self._on_refused = on_refused
        self._lock = threading.Lock()  # guards the maps for state snapshots from other threads
        # path -> ((root, relative), (dev, ino, offset)) as :meth:`take_changes` last told
        self._reported: dict[str, tuple[tuple[str, str], tuple[int, int, int]]] = {}
        self._forgotten: set[tuple[str, str]] = set()  # saved positions of files not followed now

    # -- following files --------------------------------------------------------------
    def track(
        self,
        source: TailSource,
        *,
        from_start: bool,
        restored: dict[str, Any] | None = None,
    ) -> FileTail | None:
        """Start following a file that exists now (initial scan or a restart).

        ``restored``: its saved state (a resumed run): same inode and intact bytes before
        the saved offset -> continue there; otherwise read it from its start (it was
        replaced or truncated while nobody watched). Without a saved state,
        ``from_start`` chooses between its start and the end of its last complete line.
        """
        existing = self.tails.get(source.path)
        if existing is not None:
            return existing
        fd = self._open_regular(source)
        if fd is None:
            return None
        st = os.fstat(fd)
        offset = 0
        fingerprint = b""
        if restored is not None:
            same_file = (restored.get("dev"), restored.get("ino")) == (st.st_dev, st.st_ino)
            saved = _restored(restored)
            if same_file and saved is not None and saved.offset <= st.st_size:
                fp = saved.fingerprint
                if not fp or os.pread(fd, len(fp), saved.offset - len(fp)) == fp:
                    offset, fingerprint = saved.offset, fp
        elif not from_start:
            offset = start_offset(fd, st.st_size)
            size = min(FINGERPRINT, offset)
            fingerprint = os.pread(fd, size, offset - size) if size else b""
        tail = FileTail(
            source, st.st_dev, st.st_ino, offset, max_line_bytes=self.max_line_bytes, fingerprint=fingerprint
        )
        tail.adopt_fd(fd)
        tail.last_mtime = st.st_mtime_ns
        self._add(tail)
        return tail

    def recover_renamed(self, source: TailSource, restored: dict[str, Any]) -> None:
        """A resumed run whose file was rotated while nobody watched: find the old inode in
        the same directory (``app.log.1``) and deliver what it got after our offset."""
        key = (restored.get("dev"), restored.get("ino"))
        saved = _restored(restored)
        if saved is None or None in key:
            return
        directory = os.path.dirname(source.path)
        try:
            with os.scandir(directory) as entries:
                match = next(
                    (e.path for e in entries if e.inode() == key[1] and e.is_file(follow_symlinks=False)),
                    None,
                )
        except OSError:
            return
        if match is None:
            return
        try:
            fd = os.open(match, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != key or st.st_size < saved.offset:
            os.close(fd)
            return
        tail = FileTail(
            source,
            st.st_dev,
            st.st_ino,
            saved.offset,
            max_line_bytes=self.max_line_bytes,
            fingerprint=saved.fingerprint,
        )
        tail.adopt_fd(fd)
        tail.poll(self.sink, self.stats, budget=1 << 62)
        self._retire(tail)

    def recover_unseen(self, root: str, saved: dict[str, dict[str, Any]]) -> None:
        """Saved positions (of a resumed run) under ``root`` whose files were renamed or
        deleted while nobody watched: what each got after its offset is delivered when
        it is found, and the position is gone from the saved state at the next
        :meth:`take_changes`."""
        for relative, entry in saved.items():
            self.recover_renamed(TailSource(os.path.join(root, relative), relative, root), entry)
            self._forgotten.add((root, relative))

    def changed(self, source: TailSource) -> None:
        """The file at ``source.path`` was created, written, or replaced: deliver what is new."""
        path = source.path
        try:
            st = os.stat(path)
        except OSError:
            self.gone(path)
            return
        if not stat.S_ISREG(st.st_mode):
            return
        key = (st.st_dev, st.st_ino)
        tail = self.tails.get(path)
        if tail is not None and (tail.dev, tail.ino) == key:
            self._poll(tail)
            return
        if tail is not None:  # another file at this path now: rotation by rename, or recreated
            self._detach_path(tail)
            self._poll(tail)
            self._retire(tail)
            self.stats.rotations += 1
        moved = self._by_inode.get(key)
        if moved is not None and self.tails.get(moved.source.path) is not moved:
            # a tailed file renamed to this (also tailed) name: same bytes, same position
            if moved in self._retiring:
                self._retiring.remove(moved)
                moved.retired_at = None
            moved.source = source
            self.tails[path] = moved
            self._poll(moved)
            return
        fd = self._open_regular(source)
        if fd is None:
            return
        st = os.fstat(fd)
        new = FileTail(source, st.st_dev, st.st_ino, 0, max_line_bytes=self.max_line_bytes)
        new.adopt_fd(fd)
        self._add(new)
        self._poll(new)

    def renamed(self, old_path: str, source: TailSource | None) -> bool:
        """``old_path`` was renamed: to ``source`` when the new name is tailed too (same
        bytes, same position), else away (a rotation: drain, then retire). False when
        ``old_path`` was not tailed."""
        tail = self.tails.get(old_path)
        if tail is None:
            return False
        self._detach_path(tail)
        if source is None:
            self._poll(tail)
            self._retire(tail)
            self.stats.rotations += 1
            return True
        replaced = self.tails.get(source.path)
        if replaced is not None and replaced is not tail:  # the rename overwrote a tailed file
            self._detach_path(replaced)
            self._poll(replaced)
            self._retire(replaced)
        tail.source = source
        with self._lock:
            self.tails[source.path] = tail
        self._poll(tail)
        return True

    def gone(self, path: str) -> None:
        """The path no longer names the file (deleted, renamed away): drain it, retire it."""
        tail = self.tails.get(path)
        if tail is None:
            return
        self._detach_path(tail)
        self._poll(tail)
        self._retire(tail)

    def gone_under(self, directory: str) -> None:
        prefix = directory.rstrip(os.sep) + os.sep
        for path in [p for p in self.tails if p.startswith(prefix)]:
            self.gone(path)

    # -- the periodic part ------------------------------------------------------------
    def tick(self, *, safety_poll: bool) -> bool:
        """Flush held partial lines past their timeout, follow retiring files, and (when
        ``safety_poll``) look at every tailed file in case an event was lost. True when
        some file has more to deliver right away."""
        now = time.monotonic()
        again, self._again = self._again, set()
        self.blocked = False
        for tail in again:
            if tail.fd is not None:
                self._poll(tail)
        if safety_poll:
            for tail in list(self.tails.values()):
                if tail.fd is None:
                    continue
                try:
                    size = os.fstat(tail.fd).st_size
                except OSError:
                    continue
                if size != tail.pos:
                    self._poll(tail)
            self._check_paths()
        for tail in list(self._retiring):
            if tail.fd is not None:
                self._poll(tail)
            expired = tail.retired_at is not None and now - tail.retired_at >= self.retire_grace_s
            if expired and tail.flush_partial(self.sink, self.stats):
                self._drop(tail)
        for tail in list(self.tails.values()):
            if tail.has_pending and now - tail.last_data >= self.flush_timeout_s:
                tail.flush_partial(self.sink, self.stats)
        return bool(self._again)

    def _check_paths(self) -> None:
        """Rotations whose events were lost: the path now names another file, or none."""
        for path, tail in list(self.tails.items()):
            try:
                st = os.stat(path)
            except OSError:
                self.gone(path)
                continue
            if (st.st_dev, st.st_ino) != (tail.dev, tail.ino):
                self.changed(tail.source)

    def next_deadline(self) -> float | None:
        """The monotonic time at which :meth:`tick` has something to do (None: nothing)."""
        times = [t.last_data + self.flush_timeout_s for t in self.tails.values() if t.has_pending]
        times += [t.retired_at + self.retire_grace_s for t in self._retiring if t.retired_at is not None]
        return min(times) if times else None

    @property
    def busy(self) -> bool:
        """Some file has more to deliver right away (see also ``blocked``)."""
        return bool(self._again)

    # -- the end ----------------------------------------------------------------------
    def drain(self, deadline: float) -> bool:
        """The final sweep: deliver everything, partial lines included, before ``deadline``.
        True when nothing is left undelivered."""
        tails = list(self.tails.values()) + list(self._retiring)
        pending = list(tails)
        while pending and time.monotonic() < deadline:
            waiting = []
            for tail in pending:
                if tail.fd is None and not tail.open():
                    continue
                if tail.poll(self.sink, self.stats, budget=4 * CHUNK) != DONE or not tail.flush_partial(
                    self.sink, self.stats
                ):
                    waiting.append(tail)
            pending = waiting
            if pending and self.sink.room() <= 0:
                time.sleep(0.002)
        return not pending

    def undelivered_bytes(self) -> int:
        return sum(t.undelivered_bytes() for t in [*self.tails.values(), *self._retiring])

    def close(self) -> None:
        for tail in [*self.tails.values(), *self._retiring]:
            tail.close()

    def take_changes(self) -> dict[tuple[str, str], dict[str, Any] | None]:
        """What changed since the last call, by (root, relative path): the state of a file
        followed anew or further ({dev, ino, offset, fp}), None for a path no longer
        followed. A comparison of three integers per followed file; only what changed
        is built (and then redacted and written by the caller)."""
        with self._lock:
            tails = [(path, tail, tail.source) for path, tail in self.tails.items()]
        changes: dict[tuple[str, str], dict[str, Any] | None] = {}
        current: dict[str, tuple[tuple[str, str], tuple[int, int, int]]] = {}
        for path, tail, source in tails:
            key, mark = (source.root, source.relative), (tail.dev, tail.ino, tail.consumed)
            current[path] = (key, mark)
            if self._reported.get(path) != (key, mark):
                changes[key] = tail.state()
        gone = {key for path, (key, _mark) in self._reported.items() if path not in current}
        for key in gone | self._forgotten:
            changes.setdefault(key, None)
        self._forgotten.clear()
        self._reported = current
        return changes

    # -- internals --------------------------------------------------------------------
    def _poll(self, tail: FileTail) -> None:
        if tail.fd is None and not self._reopen(tail):
            return
        status = tail.poll(self.sink, self.stats)
        if status != DONE:
            self._again.add(tail)
            if status == BLOCKED:
                self.blocked = True

    def _reopen(self, tail: FileTail) -> bool:
        """Reopen a tail whose descriptor was closed to save descriptors: by its path, or,
        when the path now names another file, by its inode in the same directory."""
        if tail.open():
            return True
        directory = os.path.dirname(tail.source.path)
        try:
            with os.scandir(directory) as entries:
                match = next(
                    (e.path for e in entries if e.inode() == tail.ino and e.is_file(follow_symlinks=False)),
                    None,
                )
        except OSError:
            return False
        if match is None:
            return False
        try:
            fd = os.open(match, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return False
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (tail.dev, tail.ino):
            os.close(fd)
            return False
        tail.adopt_fd(fd)
        return True

    def _open_regular(self, source: TailSource) -> int | None:
        real_root = os.path.realpath(source.root)
        real = os.path.realpath(source.path)
        if os.path.commonpath([real_root, real]) != real_root:
            if self._on_refused is not None:
                self._on_refused(source)
            return None
        self._make_room()
        try:
            fd = os.open(
                source.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
            )
        except OSError:
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device named *.log
            os.close(fd)
            return None
        return fd

    def _make_room(self) -> None:
        """Keep at most ``max_open_files`` descriptors: close the least recently active
        ones (they reopen by path, checking the inode, on their next event)."""
        open_tails = [
            t for t in self.tails.values() if t.fd is not None and not t.has_pending and not t.backlog
        ]
        if len(open_tails) + len(self._retiring) < self.max_open_files:
            return
        open_tails.sort(key=lambda t: t.last_used)
        for tail in open_tails[: max(len(open_tails) // 4, 1)]:
            tail.close()

    def _add(self, tail: FileTail) -> None:
        with self._lock:
            self.tails[tail.source.path] = tail
            self._by_inode[(tail.dev, tail.ino)] = tail
        self.stats.files += 1

    def _detach_path(self, tail: FileTail) -> None:
        with self._lock:
            if self.tails.get(tail.source.path) is tail:
                del self.tails[tail.source.path]

    def _retire(self, tail: FileTail) -> None:
        if tail.fd is None:
            self._drop(tail)
            return
        tail.retired_at = time.monotonic()
        if tail not in self._retiring:
            self._retiring.append(tail)

    def _drop(self, tail: FileTail) -> None:
        tail.close()
        if tail in self._retiring:
            self._retiring.remove(tail)
        with self._lock:
            if self._by_inode.get((tail.dev, tail.ino)) is tail:
                del self._by_inode[(tail.dev, tail.ino)]
        self._again.discard(tail)


def _restored(saved: dict[str, Any]) -> _Restored | None:
    try:
        offset = int(saved.get("offset", -1))
        fingerprint = bytes.fromhex(str(saved.get("fp", "")))
    except (TypeError, ValueError):
        return None
    if offset < 0 or len(fingerprint) > offset:
        return None
    return _Restored(offset, fingerprint)


__all__ = ["DEFAULT_MAX_LINE_BYTES", "FileTail", "Line", "LineSink", "LogTailer", "TailSource", "TailStats"]
