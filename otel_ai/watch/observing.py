"""File events from watchdog: its observer started (native, else polling), and a handler
that only notes which paths changed in a bounded, coalescing :class:`Inbox`.

Past the inbox's bound the handler asks for one rescan instead (counted in
``ai.watch.events.overflowed``), so nothing is lost; the watcher's own thread takes the
inbox and does the work.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
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
from watchdog.observers.api import BaseObserver
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


def start_observer(
    handler: EventHandler, paths: Sequence[str], *, polling: bool | None, poll_interval_s: float
) -> tuple[BaseObserver, str, str | None]:
    """A started observer watching ``paths`` recursively, its kind (native or polling) and,
    when native events were wanted but failed, why."""
    reason = None
    if polling is not True:
        # watchdog warns, on its own thread, when nested directories appear faster than
        # it adds their watches (os.makedirs); harmless, but under -W error the warning
        # would be raised inside its event thread and end event delivery
        warnings.filterwarnings("ignore", message=_WATCHDOG_BENIGN, category=RuntimeWarning)
        observer: BaseObserver = Observer()
        try:
            for path in paths:
                observer.schedule(handler, path, recursive=True, event_filter=EVENT_TYPES)
            observer.start()
        except Exception as exc:  # noqa: BLE001 - inotify limits, unsupported filesystems...
            reason = f"{type(exc).__name__}: {exc}"
            stop_quietly(observer)
        else:
            kind = (
                semconv.WATCH_OBSERVER_POLLING
                if isinstance(observer, PollingObserver)
                else semconv.WATCH_OBSERVER_NATIVE
            )
            return observer, kind, None
    observer = PollingObserver(timeout=poll_interval_s)
    for path in paths:
        observer.schedule(handler, path, recursive=True, event_filter=EVENT_TYPES)
    observer.start()
    return observer, semconv.WATCH_OBSERVER_POLLING, reason


def schedule_late(
    observer: BaseObserver, handler: EventHandler, path: str, *, poll_interval_s: float
) -> BaseObserver | None:
    """Watch ``path`` (a root that appeared after the start) with ``observer``; when that
    fails (e.g. the inotify watch limit), with a polling observer of its own, returned."""
    try:
        observer.schedule(handler, path, recursive=True, event_filter=EVENT_TYPES)
    except Exception:  # noqa: BLE001 - e.g. inotify watch limit: poll this root
        fallback = PollingObserver(timeout=poll_interval_s)
        fallback.schedule(handler, path, recursive=True, event_filter=EVENT_TYPES)
        fallback.start()
        return fallback
    return None


def stop_quietly(observer: BaseObserver, join: float = 0.0) -> None:
    try:
        observer.stop()
        if join > 0 and observer.is_alive():
            observer.join(join)
    except Exception:  # noqa: BLE001, S110 - stopping a half-started observer
        pass


__all__ = ["EVENT_TYPES", "EventHandler", "Inbox", "schedule_late", "start_observer", "stop_quietly"]
