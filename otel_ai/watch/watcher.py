"""The watcher: file events over the watched directories, feeding the tailer and the
artifact detector, with a final sweep within the shutdown deadline.

Threads (none of them the experiment's):

- watchdog's observer: native events (inotify, FSEvents, ReadDirectoryChangesW), or its
  polling observer when native events are unavailable (or ``polling=True``). Its handler
  only notes which paths changed, in a bounded, coalescing inbox; past the bound it asks
  for one rescan instead (counted in ``ai.watch.events.overflowed``), so nothing is lost.
- ``otel_ai-watch``: takes the inbox, tails log files, settles artifact candidates, saves
  positions, and at the end runs the final sweep.
- ``otel_ai-artifacts-N``: hash and upload (see :mod:`otel_ai.watch.detector`).

A tree with no changes costs nothing but the observer's wait: no periodic re-globbing, no
re-hashing. Tailed files are looked at every ``poll_interval_s`` with one ``fstat`` each
(cheap insurance against a lost event).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence

from opentelemetry.context import Context

from .. import semconv
from .._internal import never_raise
from ..artifacts import ArtifactStore, S3ArtifactStore, parse_s3_uri
from ..config import ConfigurationError
from ..export.providers import DEFAULT_SHUTDOWN_TIMEOUT_S, before_shutdown, get_pipeline
from ..model import Run
from .detector import ArtifactDetector
from .events import WatchEvents
from .observing import EventHandler, Inbox, Watches
from .patterns import (
    DEFAULT_ARTIFACT_PATTERNS,
    DEFAULT_EXCLUDE,
    DEFAULT_LOG_PATTERNS,
    ArtifactRules,
    PathPatterns,
)
from .roots import MTIME_TICK_NS, Root, Scope, make_roots, positions_marker, save_positions
from .sink import RunLogSink
from .state import WatchState, stored_key
from .summary import WatchSummary
from .tailer import DEFAULT_MAX_LINE_BYTES, LineSink, LogTailer, TailSource

_STATE_EVERY_S = 1.0
_NATIVE_SAFETY_FACTOR = 5  # with native events, the fstat insurance runs 5x less often

_running: weakref.WeakSet[Watcher] = weakref.WeakSet()


class Watcher:
    """Watch directories of a run: tail its log files, detect (and upload) its artifacts.

    Every complete line of a file matching ``log_patterns`` becomes a log record of the
    run (``log.file.path``, ``ai.log.source``, severity from the text, the current stage);
    files matching ``artifact_patterns`` are reported as ``ai.artifact.detected`` once
    their size settles, once per content, and uploaded when an artifacts URI is set
    (``ai.artifact.registered``, or an ERROR ``ai.artifact.upload_failed``).

    Args:
        run: the run the files belong to (None: the run open in this process whenever
            something is reported).
        roots: directories to watch, recursively. One that does not exist yet is
            watched from when it appears.
        from_beginning: read log files that exist at start from their beginning (and
            report artifacts that exist at start); by default both start from now.
            Ignored for a resumed run: its saved positions win.
        new_since_ns: files changed at or after this time (ns since the epoch) are new
            even if they exist at start: log files read from their beginning, artifacts
            reported (``otel-ai run`` starts its command before the watcher).
        log_patterns, artifact_patterns, exclude: glob patterns on paths relative to a
            root (see :mod:`otel_ai.watch.patterns`); artifact patterns are ordered
            (type, pattern) pairs or a {type: patterns} mapping.
        uploader: an :class:`~otel_ai.artifacts.ArtifactStore` to upload to.
        artifacts_uri: ``s3://bucket/prefix`` to upload to (default
            OTEL_AI_ARTIFACTS_URI / ``configure(artifacts_uri=)``); ``upload=False``
            turns uploading off whatever is configured.
        state_dir: where positions are saved so a restarted watcher of the same run
            resumes exactly (default ``{OTEL_AI_DATA_DIR}/watch``).
        max_line_bytes: longer lines keep their head and are flagged ``ai.log.truncated``.
        flush_timeout_s: a line without its newline is delivered (``ai.log.partial``)
            after this long without new data.
        settle_s: an artifact is reported when unchanged for this long.
        polling: True forces the polling observer; None uses native events when the
            platform has them, polling otherwise.
        poll_interval_s: the polling observer's interval, and how often tailed files are
            checked as insurance against lost events.
        upload_workers: threads hashing and uploading artifacts.
        line_sink: where lines go instead of the run's log records (tests, benchmarks).
        log_context: for a run whose stages live in other processes (``otel-ai run``):
            returns (the context lines belong to, the open stage's name or None).
        inbox_limit: distinct changed paths noted between two looks; past it, one
            rescan replaces them (counted in ``ai.watch.events.overflowed``).

    Use ``start()`` / ``stop(deadline=...)`` or ``with Watcher(...):``. Nothing here
    raises into the caller once started; configuration mistakes raise
    :class:`~otel_ai.ConfigurationError` at construction.
    """

    def __init__(
        self,
        run: Run | None = None,
        roots: Sequence[str | os.PathLike[str]] = (".",),
        *,
        from_beginning: bool = False,
        log_patterns: Sequence[str] = DEFAULT_LOG_PATTERNS,
        artifact_patterns: Sequence[tuple[str, str]]
        | Mapping[str, Sequence[str] | str] = DEFAULT_ARTIFACT_PATTERNS,
        exclude: Sequence[str] = DEFAULT_EXCLUDE,
        uploader: ArtifactStore | None = None,
        artifacts_uri: str | None = None,
        upload: bool = True,
        state_dir: str | os.PathLike[str] | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        flush_timeout_s: float = 2.0,
        settle_s: float = 2.0,
        polling: bool | None = None,
        poll_interval_s: float = 1.0,
        upload_workers: int = 2,
        line_sink: LineSink | None = None,
        log_context: Callable[[], tuple[Context | None, str | None]] | None = None,
        inbox_limit: int = 65536,
        new_since_ns: int | None = None,
    ) -> None:
        if isinstance(roots, (str, os.PathLike)):
            roots = [roots]
        if not roots:
            raise ConfigurationError("Watcher needs at least one directory to watch")
        if max_line_bytes < 256:
            raise ConfigurationError(f"max_line_bytes={max_line_bytes} is too small (at least 256)")
        for name, value in (
            ("flush_timeout_s", flush_timeout_s),
            ("settle_s", settle_s),
            ("poll_interval_s", poll_interval_s),
        ):
            if not value > 0:
                raise ConfigurationError(f"{name}={value!r} must be a positive number of seconds")
        if artifacts_uri is not None:
            parse_s3_uri(artifacts_uri)  # a bad URI is a clear error now, not at the first upload
        self._run = run
        self._roots = make_roots(roots)
        self.from_beginning = bool(from_beginning)
        self._new_since_ns = None if new_since_ns is None else int(new_since_ns) - MTIME_TICK_NS
        self._logs = PathPatterns(log_patterns)
        self._rules = ArtifactRules(artifact_patterns)
        self._scope = Scope(self._roots, self._logs, self._rules, PathPatterns(exclude))
        self._uploader = uploader
        self._artifacts_uri = artifacts_uri
        self._upload = bool(upload)
        self._state_dir = state_dir
        self.max_line_bytes = int(max_line_bytes)
        self.flush_timeout_s = float(flush_timeout_s)
        self.settle_s = float(settle_s)
        self.poll_interval_s = float(poll_interval_s)
        self._upload_workers = int(upload_workers)
        self._line_sink = line_sink
        self._log_context = log_context
        self._inbox = Inbox(max(int(inbox_limit), 16))
        self._events = WatchEvents(run)
        self._handler = EventHandler(self._inbox, self._scope.interesting)
        self._watches = Watches(
            self._handler,
            self._scope.left_out,
            polling=polling,
            poll_interval_s=self.poll_interval_s,
            wake=self._inbox.wake.set,
        )
        self.store: ArtifactStore | None = None
        self._owns_store = False
        self._tailer: LogTailer | None = None
        self._detector: ArtifactDetector | None = None
        self._thread: threading.Thread | None = None
        self._stop_requested = threading.Event()
        self._stopping = threading.Event()  # walks without a deadline end when it is set
        self._set_up_done = threading.Event()
        self._done = threading.Event()
        self._stop_deadline: float | None = None
        self._summary = WatchSummary()
        self._state_unwritable = False
        self._started = False
        self._stopped = False
        self._pid = os.getpid()
        self._refused_logs: set[str] = set()
        self._next_safety = 0.0
        self._next_save = 0.0
        self._next_roots = 0.0
        self._saved_marker: tuple[int, ...] = ()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else ("running" if self._started else "new")
        return f"<otel_ai Watcher {[r.path for r in self._roots]} {state}>"

    def __enter__(self) -> Watcher:  # noqa: PYI034 - as the model's context managers
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def observer_kind(self) -> str:
        """``native`` or ``polling`` once started."""
        return self._watches.kind

    @property
    def roots(self) -> list[str]:
        return [root.path for root in self._roots]

    # -- starting ---------------------------------------------------------------------
    def start(self, *, background: bool = False) -> Watcher:
        """Start watching: the observer first, then one scan of each root (so nothing
        created meanwhile is missed), then the worker threads. Returns ``self``. With
        ``background`` all that runs on the watcher's thread (``otel-ai run``: for a
        tree of 300,000 files it takes seconds, which the command's output must not wait)."""
        if self._started:
            return self
        self._started = True
        if background:
            self._thread = threading.Thread(target=self._set_up_then_loop, name="otel_ai-watch", daemon=True)
            self._thread.start()
            return self
        try:
            if self._set_up():
                self._thread = threading.Thread(target=self._loop, name="otel_ai-watch", daemon=True)
                self._thread.start()
        finally:
            self._set_up_done.set()
        return self

    def _set_up_then_loop(self) -> None:
        ready = False
        try:
            ready = self._set_up()
        finally:
            self._set_up_done.set()
            if not ready:
                self._done.set()
        if ready:
            self._loop()

    @never_raise(default=False)
    def _set_up(self) -> bool:
        pipeline = get_pipeline()
        if pipeline.disabled:  # OTEL_SDK_DISABLED: the experiment runs, nothing is watched
            self._stopped = True
            return False
        settings = pipeline.settings
        self.store = self._make_store(settings.artifacts_uri)
        state_dir = (
            os.fspath(self._state_dir)
            if self._state_dir is not None
            else os.fspath(settings.data_dir / "watch")
        )
        excluded = {os.path.abspath(os.fspath(settings.data_dir)), os.path.abspath(state_dir)}
        self._scope.excluded_prefixes = tuple(p.rstrip(os.sep) + os.sep for p in excluded)
        current = self._events.run()
        run_id = current.run_id if current is not None else settings.run_id
        for root in self._roots:
            if run_id:
                root.state = WatchState(state_dir, run_id, root.path)
        sink = (
            self._line_sink
            if self._line_sink is not None
            else RunLogSink(self._run, log_context=self._log_context)
        )
        self._tailer = LogTailer(
            sink,
            max_line_bytes=self.max_line_bytes,
            flush_timeout_s=self.flush_timeout_s,
            on_refused=self._log_refused,
        )
        if self._rules:
            self._detector = ArtifactDetector(
                self._events,
                store=self.store,
                settle_s=self.settle_s,
                workers=self._upload_workers,
                recheck=self._inbox.file,
            )
            for root in self._roots:
                if root.state is not None:
                    self._detector.restore(root.state.load_artifacts())
        self._start_observer()
        for root in self._roots:
            if root.scheduled:
                self._initial_scan(root)
        self._summary.observer = self.observer_kind
        self._summary.roots = tuple(r.path for r in self._roots)
        _running.add(self)
        return True

    def _make_store(self, configured_uri: str | None) -> ArtifactStore | None:
        if not self._upload:
            return None
        if self._uploader is not None:
            return self._uploader
        uri = self._artifacts_uri or configured_uri
        if not uri:
            return None
        self._owns_store = True
        return S3ArtifactStore(uri)

    def _start_observer(self) -> None:
        existing = [root for root in self._roots if os.path.isdir(root.path)]
        reason = self._watches.start([root.path for root in existing])
        if reason is not None:
            self._events.log(
                f"otel_ai: native file events unavailable ({reason}); polling every {self.poll_interval_s:g} s",
                "warning",
            )
        for root in existing:
            root.scheduled = True

    def _schedule_late_root(self, root: Root) -> None:
        """A root that did not exist at start appeared: watch it and read it all."""
        self._watches.add_root(root.path)
        root.scheduled = True
        self._scan(root)
        root.listed = not self._scope.cut

    # -- scanning ---------------------------------------------------------------------
    def _initial_scan(self, root: Root) -> None:
        tailer = self._tailer
        assert tailer is not None
        saved_logs = root.state.load_logs() if root.state is not None else {}
        root.resumed = bool(root.state is not None and root.state.exists)
        seen: set[str] = set()
        for path, rel, st in self._walk(root):
            new = self._new_since_ns is not None and st.st_mtime_ns >= self._new_since_ns
            if self._logs.match(rel):
                seen.add(rel)
                source = TailSource(path, rel, root.path)
                entry = saved_logs.get(rel) if root.resumed else None
                if entry is not None and (entry.get("dev"), entry.get("ino")) != (st.st_dev, st.st_ino):
                    tailer.recover_renamed(source, entry)  # rotated while nobody watched
                tailer.track(source, from_start=self.from_beginning or root.resumed or new, restored=entry)
                continue
            kind = self._rules.type_of(rel)
            if kind is None or self._detector is None:
                continue
            display = root.display(rel)
            if root.resumed or self.from_beginning or new:
                self._detector.check(path, rel, root.path, display, kind)
            else:
                self._detector.baseline(display, st)
        root.listed = not self._scope.cut
        root.first_scan_cut = self._scope.cut
        seen_keys = {stored_key(rel) for rel in seen} if saved_logs else set()
        # renamed or deleted while nobody watched
        tailer.recover_unseen(root.path, {rel: e for rel, e in saved_logs.items() if rel not in seen_keys})

    def _finish_first_scan(self, root: Root, deadline: float) -> None:
        """The command ended before the first scan did: files older than the run are
        known, as that scan would have had them (logs followed from their end, artifacts
        not reported); the others are looked at."""
        since = None if root.resumed or self.from_beginning else self._new_since_ns
        for path, rel, st in self._walk(root, deadline=deadline):
            if since is None or st.st_mtime_ns >= since:
                self._changed(root, path, rel)
            elif self._logs.match(rel):
                self._tailer.track(TailSource(path, rel, root.path), from_start=False)  # type: ignore[union-attr]
            elif self._detector is not None and self._rules.type_of(rel) is not None:
                self._detector.baseline(root.display(rel), st)

    def _scan(self, root: Root, *, under: str | None = None, deadline: float | None = None) -> None:
        for path, rel, _st in self._walk(root, under=under, deadline=deadline):
            self._changed(root, path, rel)

    def _walk(
        self, root: Root, *, under: str | None = None, deadline: float | None = None
    ) -> Iterator[tuple[str, str, os.stat_result]]:
        return self._scope.walk(root, under=under, deadline=deadline, stopping=self._stopping)

    # -- reacting ---------------------------------------------------------------------
    def _changed(self, root: Root, path: str, rel: str) -> None:
        if self._scope.excluded(path, rel):
            return
        if self._logs.match(rel):
            assert self._tailer is not None
            self._tailer.changed(TailSource(path, rel, root.path))
            return
        kind = self._rules.type_of(rel)
        if kind is not None and self._detector is not None:
            self._detector.check(path, rel, root.path, root.display(rel), kind)

    def _log_refused(self, source: TailSource) -> None:
        if source.path in self._refused_logs:
            return
        self._refused_logs.add(source.path)
        self._summary.paths_refused += 1
        self._events.log(
            f"otel_ai: not tailing {source.relative}: it resolves outside the watched root {source.root}",
            "warning",
        )

    def _loop(self) -> None:
        try:
            while not self._stop_requested.is_set():
                self._inbox.wake.wait(self._timeout())
                if self._stop_requested.is_set():
                    break
                self._inbox.wake.clear()
                self._cycle(safety=None)
        finally:
            deadline = self._stop_deadline
            if deadline is not None:
                self._final_sweep(deadline)
            self._done.set()

    def _timeout(self) -> float:
        now = time.monotonic()
        times = [self._next_safety]
        if positions_marker(self._tailer, self._detector) != self._saved_marker:
            times.append(self._next_save)
        tailer, detector = self._tailer, self._detector
        if tailer is not None:
            if tailer.busy:
                # a full export queue drains in milliseconds; spinning would steal the GIL
                # from the very thread that drains it
                return 0.005 if tailer.blocked else 0.0
            upcoming = tailer.next_deadline()
            if upcoming is not None:
                times.append(upcoming)
        if detector is not None and detector.candidates:
            times.append(min(c.since for c in detector.candidates.values()) + self.settle_s)
        if any(not root.scheduled for root in self._roots):
            times.append(self._next_roots)
        return min(max(min(times) - now, 0.0), 5.0)

    @never_raise()
    def _cycle(self, *, safety: bool | None, deadline: float | None = None) -> None:
        tailer, detector = self._tailer, self._detector
        assert tailer is not None
        moves, files, dirs, gone_dirs, rescan = self._inbox.take()
        for line in self._watches.take_refusals():
            self._events.log(line, "warning")
        now = time.monotonic()
        for src, dest in moves:
            found = self._scope.root_of(dest)
            target = None
            if found is not None and self._logs.match(found[1]) and not self._scope.excluded(dest, found[1]):
                target = TailSource(dest, found[1], found[0].path)
            tailer.renamed(src, target)
        if rescan:
            for root in self._roots:
                if root.scheduled:
                    self._watches.refresh(root.path)
                    self._scan(root, deadline=deadline)
        for directory in gone_dirs:
            self._watches.gone(directory)
            tailer.gone_under(directory)
            if detector is not None:
                prefix = directory.rstrip(os.sep) + os.sep
                for path in [p for p in detector.candidates if p.startswith(prefix)]:
                    detector.gone(path)
        for directory in dirs:
            found = self._scope.root_of(directory)
            if found is not None:
                self._watches.appeared(directory)  # watched before it is scanned
                self._scan(found[0], under=directory, deadline=deadline)
        for path in files:
            found = self._scope.root_of(path)
            if found is not None:
                self._changed(found[0], path, found[1])
        if safety is None:
            interval = self.poll_interval_s * (
                _NATIVE_SAFETY_FACTOR if self.observer_kind == semconv.WATCH_OBSERVER_NATIVE else 1
            )
            safety = now >= self._next_safety
            if safety:
                self._next_safety = now + interval
        tailer.tick(safety_poll=safety)
        if detector is not None:
            detector.tick()
        if now >= self._next_roots and any(not root.scheduled for root in self._roots):
            self._next_roots = now + self.poll_interval_s
            for root in self._roots:
                if not root.scheduled and os.path.isdir(root.path):
                    self._schedule_late_root(root)
        if now >= self._next_save and positions_marker(self._tailer, self._detector) != self._saved_marker:
            self._next_save = now + _STATE_EVERY_S
            self._save_state()

    def _save_state(self) -> None:
        tailer, detector = self._tailer, self._detector
        if tailer is None:
            return
        self._saved_marker = positions_marker(self._tailer, self._detector)
        artifacts = detector.take_changes() if detector is not None and detector.dirty else None
        try:
            save_positions(self._roots, tailer, artifacts)
        except OSError as exc:
            if not self._state_unwritable:  # a full or read-only data directory: said once
                self._state_unwritable = True
                logging.getLogger("otel_ai").warning(
                    "otel_ai: cannot save the watcher's positions (%s); a restarted run may repeat lines", exc
                )

    # -- stopping ---------------------------------------------------------------------
    def stop(self, timeout: float | None = None, *, deadline: float | None = None) -> WatchSummary:
        """Stop watching, after a final sweep: lines written just before the end are
        delivered (a last line without newline too), artifacts that appeared in the last
        seconds are reported and uploaded, or reported as not uploaded when
        ``deadline`` (a ``time.monotonic()`` value; default now + ``timeout``, default
        10 s) comes first. Positions are saved. Emits ``ai.watch.stopped`` and returns
        its counts. Safe to call twice; a no-op in a forked child."""
        if not self._started or self._stopped or self._pid != os.getpid():
            return self._summary
        self._stopped = True
        if deadline is None:
            deadline = time.monotonic() + (
                DEFAULT_SHUTDOWN_TIMEOUT_S if timeout is None else max(float(timeout), 0.0)
            )
        return self._stop(deadline) or self._summary

    @never_raise()
    def _stop(self, deadline: float) -> WatchSummary:
        self._stopping.set()  # a first scan still under way ends (the final sweep walks)
        self._set_up_done.wait(max(deadline - time.monotonic(), 0.0))
        self._watches.stop(join=max(min(deadline - time.monotonic(), 1.0), 0.0))
        self._stop_deadline = deadline
        self._stop_requested.set()
        self._inbox.wake.set()
        thread = self._thread
        if thread is not None:
            self._done.wait(max(deadline - time.monotonic(), 0.0) + 0.25)
        _running.discard(self)
        summary = self.summary()
        self._events.stopped(summary.attributes())
        return summary

    def _final_sweep(self, deadline: float) -> None:
        """On the worker thread, after the observer stopped."""
        tailer = self._tailer
        if tailer is None:
            return
        try:
            self._sweep(tailer, deadline)
        finally:
            self._summary.bytes_undelivered = tailer.undelivered_bytes()
            tailer.close()
            if self._owns_store and isinstance(self.store, S3ArtifactStore):
                self.store.close()

    @never_raise()
    def _sweep(self, tailer: LogTailer, deadline: float) -> None:
        detector = self._detector
        self._cycle(safety=True, deadline=deadline)
        for root in self._roots:
            if not root.scheduled and os.path.isdir(root.path):
                root.scheduled = True
            if root.scheduled:
                # whatever appeared after the last event we processed: the directories
                # changed since they were listed, when the whole tree was listed once
                if root.listed and not self._scope.cut:
                    for path, rel in self._scope.walk_changed(root, deadline=deadline):
                        self._changed(root, path, rel)
                elif root.first_scan_cut:
                    self._finish_first_scan(root, deadline)
                else:
                    self._scan(root, deadline=deadline)
        log_deadline = deadline
        if detector is not None and detector.pending:
            log_deadline = time.monotonic() + (deadline - time.monotonic()) / 2
        complete = tailer.drain(log_deadline)
        if detector is not None:
            detector.finish(deadline)
        self._save_state()
        self._summary.complete = complete and time.monotonic() <= deadline

    def summary(self) -> WatchSummary:
        """The counts so far (final once :meth:`stop` returned)."""
        tailer, detector = self._tailer, self._detector
        return self._summary.take_counts(
            tailer.stats if tailer is not None else None,
            detector.stats if detector is not None else None,
            overflowed=self._inbox.overflowed,
            refused_logs=len(self._refused_logs),
        )


def _stop_running_watchers() -> None:
    """Before telemetry shuts down: a watcher nobody stopped still gets its final sweep."""
    pid = os.getpid()
    for watcher in list(_running):
        if watcher._pid == pid:
            watcher.stop(DEFAULT_SHUTDOWN_TIMEOUT_S / 2)


before_shutdown(_stop_running_watchers)


__all__ = ["WatchSummary", "Watcher"]
