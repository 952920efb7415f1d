"""Artifact detection: report a file once its size has settled, once per content.

A file matching an artifact rule becomes a *candidate*; each change resets its clock.
When its size and mtime have not moved for ``settle_s`` (and it is not empty) it goes to
a worker, which resolves it inside its root (refusing symlinks and ``..`` that lead out),
hashes it in 1 MiB chunks, and checks it did not change meanwhile (else it is a candidate
again). Content already reported for that path (same SHA-256) is not reported again; new
content is a new version: ``ai.artifact.detected`` with ``ai.artifact.version``. With a
store, the worker then uploads it: ``ai.artifact.registered`` or an ERROR
``ai.artifact.upload_failed``.

Hashing and uploading run on ``workers`` threads fed by a bounded queue; when the queue
is full, candidates simply wait their turn. At the end of a run
every candidate counts as settled (its writer is gone); what the deadline leaves
unfinished is reported as not uploaded.
"""

from __future__ import annotations

import os
import queue
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._internal import report_internal_error
from ..artifacts import ArtifactStore, ArtifactUploadError, hash_file, resolve_inside
from ..artifacts.store import CONTENT_CHANGED, DEADLINE_EXCEEDED
from .events import WatchEvents


@dataclass
class Known:
    """What was last seen of an artifact path (persisted across restarts)."""

    size: int
    mtime_ns: int
    sha256: str | None = None  # None: a baseline (existed when watching started), not reported
    version: int = 0
    uploaded: bool | None = None  # None: no store, or not tried


@dataclass
class Candidate:
    path: str  # absolute, as seen under the root
    relative: str  # relative to its root
    root: str
    display: str  # relative path as reported (prefixed with the root's name when several)
    kind: str
    size: int
    mtime_ns: int
    since: float
    claimed: bool = False  # reported by whoever finished with it first (worker or stop)


@dataclass
class DetectorStats:
    detected: int = 0
    uploaded: int = 0
    failed: int = 0
    not_uploaded: int = 0
    refused: int = 0


class ArtifactDetector:
    def __init__(
        self,
        events: WatchEvents,
        *,
        store: ArtifactStore | None,
        settle_s: float = 2.0,
        workers: int = 2,
        queue_size: int = 1024,
        recheck: Callable[[str], None],
    ) -> None:
        self.events = events
        self.store = store
        self.settle_s = float(settle_s)
        self.stats = DetectorStats()
        self.known: dict[str, Known] = {}
        self.candidates: dict[str, Candidate] = {}
        # what changed in ``known`` since the last save: a save writes these alone, so
        # its cost does not grow with the artifacts the run has seen
        self._changed: dict[str, None] = {}
        self._lock = threading.Lock()
        self._refused: dict[str, tuple[int, int]] = {}
        self._queue: queue.Queue[Candidate] = queue.Queue(maxsize=max(int(queue_size), 1))
        self._jobs = threading.Semaphore(0)  # one permit per queued job
        self._inflight_jobs: dict[int, Candidate] = {}
        self._recheck = recheck
        self._stopping = threading.Event()
        self._closed = False
        self.deadline: float | None = None
        self._threads = [
            threading.Thread(target=self._work, name=f"otel_ai-artifacts-{i}", daemon=True)
            for i in range(max(int(workers), 1))
        ]
        for thread in self._threads:
            thread.start()

    # -- state ------------------------------------------------------------------------
    def restore(self, entries: dict[str, dict[str, Any]]) -> None:
        for display, entry in entries.items():
            try:
                self.known[display] = Known(
                    size=int(entry["size"]),
                    mtime_ns=int(entry["mtime_ns"]),
                    sha256=entry.get("sha256"),
                    version=int(entry.get("version", 0)),
                    uploaded=entry.get("uploaded"),
                )
            except (KeyError, TypeError, ValueError):
                continue

    @property
    def dirty(self) -> bool:
        """Whether ``known`` changed since :meth:`take_changes` last ran."""
        return bool(self._changed)

    def take_changes(self) -> dict[str, dict[str, Any]]:
        """The entries of ``known`` that changed since the last call (the state to save)."""
        with self._lock:
            changed, self._changed = self._changed, {}
            return {display: dict(vars(self.known[display])) for display in changed}

    def _mark(self, display: str) -> None:  # under self._lock
        self._changed[display] = None

    # -- the watcher's thread ---------------------------------------------------------
    def baseline(self, display: str, st: os.stat_result) -> None:
        """A file that existed before watching started: remembered, not reported."""
        with self._lock:
            if display not in self.known:
                self.known[display] = Known(st.st_size, st.st_mtime_ns)
                self._mark(display)

    def check(self, path: str, relative: str, root: str, display: str, kind: str) -> None:
        """Something happened to ``path``: (re)start its settle clock if it changed."""
        try:
            st = os.stat(path)
        except OSError:
            self.candidates.pop(path, None)
            return

        if not stat.S_ISREG(st.st_mode):
            return
        with self._lock:
            known = self.known.get(display)
        if known is not None and (known.size, known.mtime_ns) == (st.st_size, st.st_mtime_ns):
            self.candidates.pop(path, None)
            return
        current = self.candidates.get(path)
        if current is not None and (current.size, current.mtime_ns) == (st.st_size, st.st_mtime_ns):
            return
        self.candidates[path] = Candidate(
            path, relative, root, display, kind, st.st_size, st.st_mtime_ns, time.monotonic()
        )

    def gone(self, path: str) -> None:
        self.candidates.pop(path, None)

    def tick(self, *, force: bool = False, deadline: float | None = None) -> float | None:
        """Hand settled candidates to the workers; returns when the next one settles."""
        now = time.monotonic()
        upcoming: float | None = None
        for path, candidate in list(self.candidates.items()):
            ready_at = candidate.since + self.settle_s
            if not force and (now < ready_at or candidate.size == 0):
                if candidate.size and (upcoming is None or ready_at < upcoming):
                    upcoming = ready_at
                continue
            try:
                if deadline is None:
                    self._queue.put_nowait(candidate)
                else:
                    self._queue.put(candidate, timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Full:
                return now + 0.2
            self._jobs.release()
            del self.candidates[path]
        return upcoming

    # -- workers ----------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            if not self._jobs.acquire(timeout=5.0) and not self._stopping.is_set():
                continue
            with self._lock:
                if self._closed:
                    return
                job: Candidate | None
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    job = None
                else:
                    # taken and marked in flight atomically: finish() sees every job
                    self._inflight_jobs[id(job)] = job
            if job is None:
                if self._stopping.is_set():
                    return
                continue
            try:
                self._process(job)
            except Exception as exc:  # noqa: BLE001 - a worker must survive one bad file
                report_internal_error("ArtifactDetector._process", exc)
            finally:
                with self._lock:
                    self._inflight_jobs.pop(id(job), None)

    def _claim(self, job: Candidate, *, closing: bool = False) -> bool:
        """True for the one party that reports on ``job`` (its worker, or finish())."""
        with self._lock:
            if job.claimed or (self._closed and not closing):
                return False
            job.claimed = True
            return True

    def _process(self, job: Candidate) -> None:
        real = resolve_inside(job.root, job.relative)
        if real is None:
            self._refuse(job)
            return
        try:
            before = os.stat(real)
            sha256, size = hash_file(real, deadline=self.deadline)
            after = os.stat(real)
        except FileNotFoundError:
            return  # gone before it settled: nothing was there to report
        except TimeoutError:
            self._not_uploaded(job, None)
            return
        if (before.st_size, before.st_mtime_ns) != (
            after.st_size,
            after.st_mtime_ns,
        ) or size != after.st_size:
            self._recheck(job.path)  # still being written
            return
        with self._lock:
            known = self.known.get(job.display)
            if known is not None and known.sha256 == sha256:
                known.size, known.mtime_ns = size, after.st_mtime_ns
                self._mark(job.display)
                return
            version = (known.version if known is not None else 0) + 1
            entry = Known(size, after.st_mtime_ns, sha256, version)
            self.known[job.display] = entry
            self._mark(job.display)
        store = self.store
        if store is None:
            if self._claim(job):
                self.stats.detected += 1
                self.events.detected(job.display, job.kind, size, sha256, version)
            return
        if self._closed:
            return
        self.stats.detected += 1
        self.events.detected(job.display, job.kind, size, sha256, version)
        key = store.key_for(self.events.run_id(), job.display)
        try:
            stored = store.upload_path(real, key, sha256=sha256, deadline=self.deadline)
        except ArtifactUploadError as error:
            if error.error_type == CONTENT_CHANGED:
                self._recheck(job.path)  # the next settled version gets uploaded
                return
            if not self._claim(job):
                return
            with self._lock:
                entry.uploaded = False
                self._mark(job.display)
            if error.error_type == DEADLINE_EXCEEDED:
                self.stats.not_uploaded += 1
            else:
                self.stats.failed += 1
            self.events.upload_failed(job.display, job.kind, error, size=size, version=version)
            return
        if self._claim(job):
            with self._lock:
                entry.uploaded = True
                self._mark(job.display)
            self.stats.uploaded += 1
            self.events.registered(job.display, job.kind, stored, version)

    def _refuse(self, job: Candidate) -> None:
        seen = (job.size, job.mtime_ns)
        with self._lock:
            if self._refused.get(job.display) == seen:
                return
            self._refused[job.display] = seen
        self.stats.refused += 1
        self.events.refused(job.display, f"{job.display} resolves outside the watched root {job.root}")

    def _not_uploaded(self, job: Candidate, size: int | None) -> None:
        if not self._claim(job, closing=True):
            return
        self.stats.not_uploaded += 1
        store = self.store
        if store is None:
            # no store: "reported" is detected, without a hash we had no time to compute
            self.stats.detected += 1
            self.events.detected(job.display, job.kind, job.size, None, 0)
            return
        key = store.key_for(self.events.run_id(), job.display)
        error = ArtifactUploadError(
            f"{job.display} was not uploaded to s3://{store.bucket}/{key}: the shutdown deadline passed first",
            bucket=store.bucket,
            key=key,
            error_type=DEADLINE_EXCEEDED,
            retryable=True,
            path=job.path,
        )
        self.events.upload_failed(
            job.display, job.kind, error, size=job.size if size is None else size, version=None
        )

    # -- the end ----------------------------------------------------------------------
    def finish(self, deadline: float) -> None:
        """Final sweep: every candidate is settled now; wait for the workers until
        ``deadline``; report what is left as not uploaded."""
        self.deadline = deadline
        self.tick(force=True, deadline=deadline)
        self._stopping.set()
        for _ in self._threads:
            self._jobs.release()
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            self._closed = True  # workers still busy report nothing from now on
            leftovers = list(self._inflight_jobs.values())
            while True:
                try:
                    leftovers.append(self._queue.get_nowait())
                except queue.Empty:
                    break
        leftovers.extend(self.candidates.values())
        self.candidates.clear()
        for job in leftovers:
            self._not_uploaded(job, None)

    @property
    def pending(self) -> int:
        return len(self.candidates) + self._queue.qsize() + len(self._inflight_jobs)


__all__ = ["ArtifactDetector", "Candidate", "DetectorStats", "Known"]
