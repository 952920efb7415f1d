"""What a watcher did: the counts of its ``ai.watch.stopped`` event."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .. import semconv


@dataclass
class WatchSummary:
    """What a watcher did; also the attributes of its ``ai.watch.stopped`` event."""

    observer: str = ""
    roots: tuple[str, ...] = ()
    files_tailed: int = 0
    lines: int = 0
    lines_truncated: int = 0
    lines_partial: int = 0
    bytes_undelivered: int = 0
    rotations: int = 0
    events_overflowed: int = 0
    paths_refused: int = 0
    artifacts_detected: int = 0
    artifacts_uploaded: int = 0
    artifacts_failed: int = 0
    artifacts_not_uploaded: int = 0
    complete: bool = False  # the final sweep finished within the deadline

    def take_counts(
        self, tailing: Any, artifacts: Any, *, overflowed: int, refused_logs: int
    ) -> WatchSummary:
        """The counts of a tailer's stats, a detector's stats (either None when absent)
        and the watcher's own; returns ``self``."""
        if tailing is not None:
            self.files_tailed = tailing.files
            self.lines = tailing.lines
            self.lines_truncated = tailing.truncated
            self.lines_partial = tailing.partial
            self.rotations = tailing.rotations
        self.events_overflowed = overflowed
        if artifacts is not None:
            self.artifacts_detected = artifacts.detected
            self.artifacts_uploaded = artifacts.uploaded
            self.artifacts_failed = artifacts.failed
            self.artifacts_not_uploaded = artifacts.not_uploaded
            self.paths_refused = refused_logs + artifacts.refused
        return self

    def attributes(self) -> dict[str, Any]:
        return {
            semconv.WATCH_OBSERVER: self.observer,
            semconv.WATCH_ROOTS: list(self.roots),
            semconv.WATCH_FILES_TAILED: self.files_tailed,
            semconv.WATCH_LINES: self.lines,
            semconv.WATCH_LINES_TRUNCATED: self.lines_truncated,
            semconv.WATCH_LINES_PARTIAL: self.lines_partial,
            semconv.WATCH_BYTES_UNDELIVERED: self.bytes_undelivered,
            semconv.WATCH_ROTATIONS: self.rotations,
            semconv.WATCH_EVENTS_OVERFLOWED: self.events_overflowed,
            semconv.WATCH_PATHS_REFUSED: self.paths_refused,
            semconv.WATCH_ARTIFACTS_DETECTED: self.artifacts_detected,
            semconv.WATCH_ARTIFACTS_UPLOADED: self.artifacts_uploaded,
            semconv.WATCH_ARTIFACTS_FAILED: self.artifacts_failed,
            semconv.WATCH_ARTIFACTS_NOT_UPLOADED: self.artifacts_not_uploaded,
            semconv.WATCH_COMPLETE: self.complete,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


__all__ = ["WatchSummary"]
