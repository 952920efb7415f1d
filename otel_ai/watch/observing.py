"""File events from watchdog: what its observer (native, else polling) watches, with the
directories left out given no watch at all (:class:`Watches`), and a handler that only
notes which paths changed in a bounded, coalescing :class:`Inbox`.

Past the inbox's bound the handler asks for one rescan instead (counted in
``ai.watch.events.overflowed``), so nothing is lost; the watcher's own thread takes the
inbox and does the work.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

from .. import semconv
from .._internal import report_internal_error

# watchdog logs a harmless error when its inotify thread is stopped while events are
# queued. In a process with no logging set up, Python's last-resort handler would print
# it on stderr: under `otel-ai run` that is the experiment's stderr, which must reach the
# terminal unchanged. The watcher reports its own problems as telemetry.
logging.getLogger("watchdog").addHandler(logging.NullHandler())

EVENT_TYPES: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileClosedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]
_WATCHDOG_BENIGN = r"Callback with id .* already exists for watch"

# polling observers standing in for directories the kernel refused to watch, at most (each
# is one of watchdog's threads); past it, their files are read by the final sweep only
MAX_POLLED_REFUSALS = 8
_watching: weakref.WeakSet[Watches] = weakref.WeakSet()


class _Refusals(logging.Handler):
    """watchdog only logs a directory it could not watch once its observer runs (a new
    directory past the inotify limit), and leaves it unwatched: the watches holding it
    are told, to poll it instead."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if str(record.msg).startswith("Unable to watch") and record.args:
                args = record.args if isinstance(record.args, tuple) else (record.args,)
                path = os.fsdecode(args[0])  # type: ignore[arg-type]
                for watches in list(_watching):
                    watches.refused(path, str(args[1]) if len(args) > 1 else "")
        except Exception as exc:  # noqa: BLE001 - never in watchdog's way
            report_internal_error("Watches.refused", exc)


logging.getLogger("watchdog.observers.inotify").addHandler(_Refusals())


class Inbox:
    """Paths that changed since the watcher last looked: coalesced and bounded."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.files: dict[str, None] = {}
        self.dirs: dict[str, None] = {}
        self.gone_dirs: dict[str, None] = {}
        self.moves: dict[str, str] = {}
        self.rescan = False
        self.overflowed = 0

    def _add(self, bucket: dict[str, None], path: str) -> None:
        with self.lock:
            if path not in bucket:
                if len(self.files) + len(self.dirs) + len(self.gone_dirs) + len(self.moves) >= self.limit:
                    self.overflowed += 1
                    self.rescan = True
                else:
                    bucket[path] = None
        self.wake.set()

    def file(self, path: str) -> None:
        self._add(self.files, path)

    def dir(self, path: str) -> None:
        self._add(self.dirs, path)

    def gone_dir(self, path: str) -> None:
        self._add(self.gone_dirs, path)

    def moved(self, src: str, dest: str) -> None:
        with self.lock:
            if len(self.files) + len(self.dirs) + len(self.gone_dirs) + len(self.moves) >= self.limit:
                self.overflowed += 1
                self.rescan = True
            else:
                self.moves[src] = dest
        self.wake.set()

    def take(self) -> tuple[list[tuple[str, str]], list[str], list[str], list[str], bool]:
        with self.lock:
            moves = list(self.moves.items())
            files, dirs, gone = list(self.files), list(self.dirs), list(self.gone_dirs)
            rescan = self.rescan
            self.moves.clear()
            self.files.clear()
            self.dirs.clear()
            self.gone_dirs.clear()
            self.rescan = False
        return moves, files, dirs, gone, rescan


class EventHandler(FileSystemEventHandler):
    """Runs on watchdog's thread: notes the paths ``interesting`` accepts, nothing more."""

    def __init__(self, inbox: Inbox, interesting: Callable[[str], bool]) -> None:
        self._inbox = inbox
        self._interesting = interesting

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            src = os.fsdecode(event.src_path)
            dest = os.fsdecode(event.dest_path) if event.dest_path else ""
            inbox = self._inbox
            if event.is_directory:
                if event.event_type == "created":
                    inbox.dir(src)
                elif event.event_type == "deleted":
                    inbox.gone_dir(src)
                elif event.event_type == "moved":
                    inbox.gone_dir(src)
                    if dest:
                        inbox.dir(dest)
                return
            if event.event_type == "moved" and dest:
                inbox.moved(src, dest)  # handled first: a tailed file keeps its position
            for path in (src, dest):
                if path and self._interesting(path):
                    inbox.file(path)
        except Exception as exc:  # noqa: BLE001 - watchdog's thread must go on
            report_internal_error("Watcher.on_any_event", exc)


# directories directly under a root given watches of their own, at most: past it the root
# is watched whole (each watch is one of watchdog's threads)
MAX_SPLIT = 32


class Watches:
    """The observer and what it watches.

    watchdog watches a directory recursively by walking it and adding an inotify watch
    to every directory below, with no way to leave one out. A ``.git``, a ``.venv``, a
    ``node_modules`` or a Python environment in the working directory (thousands of
    directories, tens of thousands of files) cost the wrapper that walk at every start,
    and one inotify watch per directory, a per-user limit (8,192 on many systems) past
    which watchdog leaves the rest of the tree unwatched without a word. So a root with
    such a directory directly under it is watched alone, not recursively, and each of its
    other directories recursively, one watch each; a directory that appears there later
    gets its watch when the watcher looks at it (:meth:`appeared`, before it is scanned).
    Excluded directories deeper down are still watched, their events ignored.

    Native events when the platform has them (``polling`` None), else, or with
    ``polling=True``, watchdog's polling observer. A watch the native observer cannot
    add (the inotify limit) falls back to a polling observer of its own.
    """

    def __init__(
        self,
        handler: EventHandler,
        left_out: Callable[[str], bool],
        *,
        polling: bool | None,
        poll_interval_s: float,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._handler = handler
        self._wake = wake  # the watcher's thread has refusals to look at
        self._refusals: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self.polled_refusals = 0
        self.unwatched = 0  # refused and not polled either: read by the final sweep
        self._left_out = left_out
        self._polling = polling
        self._poll_interval_s = poll_interval_s
        self._observer: BaseObserver | None = None
        self._fallbacks: list[BaseObserver] = []
        self.kind = ""
        self.roots: list[str] = []
        self.split_roots: set[str] = set()  # watched alone, their directories one by one
        self.tops: dict[str, tuple[BaseObserver, ObservedWatch]] = {}  # such a directory: its watch
        _watching.add(self)

    def start(self, roots: Sequence[str]) -> str | None:
        """Watch ``roots`` (existing directories). Returns why native events are
        unavailable when they were wanted and failed (the observer polls then)."""
        reason = None
        if self._polling is not True:
            # watchdog warns, on its own thread, when nested directories appear faster than
            # it adds their watches (os.makedirs); harmless, but under -W error the warning
            # would be raised inside its event thread and end event delivery
            warnings.filterwarnings("ignore", message=_WATCHDOG_BENIGN, category=RuntimeWarning)
            observer: BaseObserver = Observer()
            try:
                observer.start()
                self._observer = observer
                for root in roots:
                    self._watch_root(root)
            except Exception as exc:  # noqa: BLE001 - inotify limits, unsupported filesystems...
                reason = f"{type(exc).__name__}: {exc}"
                self.stop()
                self.split_roots.clear()
                self.tops.clear()
                self._fallbacks.clear()
            else:
                native = not isinstance(observer, PollingObserver)
                self.kind = semconv.WATCH_OBSERVER_NATIVE if native else semconv.WATCH_OBSERVER_POLLING
                return None
        self._observer = PollingObserver(timeout=self._poll_interval_s)
        self._observer.start()
        self.kind = semconv.WATCH_OBSERVER_POLLING
        for root in roots:
            self._watch_root(root)
        return reason

    def add_root(self, root: str) -> None:
        """Watch a root that appeared after the start; a polling observer of its own when
        the observer cannot (e.g. the inotify watch limit)."""
        try:
            self._watch_root(root)
        except Exception:  # noqa: BLE001
            self._poll(root)

    def appeared(self, directory: str) -> None:
        """A directory appeared (made, or moved in): one directly under a root watched
        alone gets its watch, unless it is left out."""
        if (
            os.path.dirname(directory) in self.split_roots
            and directory not in self.tops
            and os.path.isdir(directory)
            and not os.path.islink(directory)
            and not self._left_out(directory)
        ):
            self._watch_top(directory)

    def gone(self, directory: str) -> None:
        """A directory was removed or moved away: its own watch, if it had one, goes."""
        entry = self.tops.pop(directory, None)
        if entry is not None:
            try:
                entry[0].unschedule(entry[1])
            except Exception:  # noqa: BLE001, S110 - its emitter may have stopped already
                pass

    def refused(self, path: str, why: str) -> None:
        """On watchdog's thread: a directory under one of our watches was left unwatched."""
        if any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in self.roots):
            with self._lock:
                self._refusals.append((path, why))
            self._wake()

    def take_refusals(self) -> list[str]:
        """On the watcher's thread: poll the directories refused since the last look (a
        bounded number); what to warn about, one line each."""
        with self._lock:
            refusals, self._refusals = self._refusals, []
        lines = []
        for path, why in refusals:
            if self.polled_refusals < MAX_POLLED_REFUSALS and os.path.isdir(path):
                self.polled_refusals += 1
                self._poll(path)
                lines.append(
                    f"otel_ai: cannot watch {path} ({why}); polling it every {self._poll_interval_s:g} s"
                )
            else:
                self.unwatched += 1
                if self.unwatched == 1:
                    lines.append(
                        f"otel_ai: cannot watch {path} ({why}), nor poll more directories: files under the "
                        "directories the kernel refuses are read when the run ends (fs.inotify.max_user_watches)"
                    )
        return lines

    def refresh(self, root: str) -> None:
        """After events were lost (the inbox overflowed): the directories under a root
        watched alone, watched as they are now."""
        if root not in self.split_roots:
            return
        for directory in [d for d in self.tops if os.path.dirname(d) == root and not os.path.isdir(d)]:
            self.gone(directory)
        listed = self._directories(root)
        for directory in listed[1] if listed is not None else ():
            self.appeared(directory)

    def stop(self, join: float = 0.0) -> None:
        for observer in [self._observer, *self._fallbacks]:
            if observer is not None:
                stop_quietly(observer, join)

    def _watch_root(self, root: str) -> None:
        assert self._observer is not None
        if root not in self.roots:
            self.roots.append(root)
        listed = self._directories(root)
        if listed is None or not _worth_splitting(*listed):
            self._observer.schedule(self._handler, root, recursive=True, event_filter=EVENT_TYPES)
            return
        self.split_roots.add(root)
        self._observer.schedule(self._handler, root, recursive=False, event_filter=EVENT_TYPES)
        # listed again once the root's own watch exists: a directory made in between is
        # in this listing or has its event
        again = self._directories(root) or listed
        for directory in again[1]:
            self._watch_top(directory)

    def _directories(self, root: str) -> tuple[list[str], list[str]] | None:
        """The directories directly under ``root``, and those of them not left out."""
        try:
            with os.scandir(root) as listing:
                directories = [entry.path for entry in listing if entry.is_dir(follow_symlinks=False)]
        except OSError:
            return None
        return directories, [directory for directory in directories if not self._left_out(directory)]

    def _watch_top(self, directory: str) -> None:
        assert self._observer is not None
        try:
            watch = self._observer.schedule(
                self._handler, directory, recursive=True, event_filter=EVENT_TYPES
            )
        except Exception:  # noqa: BLE001 - gone meanwhile, or the inotify watch limit
            if os.path.isdir(directory):
                self._poll(directory)
            return
        self.tops[directory] = (self._observer, watch)

    def _poll(self, directory: str) -> None:
        fallback = PollingObserver(timeout=self._poll_interval_s)
        watch = fallback.schedule(self._handler, directory, recursive=True, event_filter=EVENT_TYPES)
        fallback.start()
        self._fallbacks.append(fallback)
        if os.path.dirname(directory) in self.split_roots:
            self.tops[directory] = (fallback, watch)


def _worth_splitting(directories: list[str], kept: list[str]) -> bool:
    """Watch a root alone and its directories one by one when some of them are left out,
    and not too many are kept (else watch it whole)."""
    return len(kept) < len(directories) and len(kept) <= MAX_SPLIT


def stop_quietly(observer: BaseObserver, join: float = 0.0) -> None:
    try:
        observer.stop()
        if join > 0 and observer.is_alive():
            observer.join(join)
    except Exception:  # noqa: BLE001, S110 - stopping a half-started observer
        pass


__all__ = [
    "EVENT_TYPES",
    "MAX_POLLED_REFUSALS",
    "MAX_SPLIT",
    "EventHandler",
    "Inbox",
    "Watches",
    "stop_quietly",
]
