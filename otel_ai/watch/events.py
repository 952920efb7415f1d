"""What the watcher reports, through the run's own methods.

``ai.artifact.detected`` / ``ai.artifact.registered`` go through
:meth:`Run.artifact_detected` / :meth:`Run.artifact_registered`; an upload failure is an
ERROR ``ai.artifact.upload_failed`` event naming the bucket and key, a refused path a WARN
``ai.artifact.refused``, the end of watching ``ai.watch.stopped`` with its counts. With
no run open, events are still emitted (log-based only) with the configured run id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.metrics import Counter, Meter

from .. import semconv
from ..artifacts import ArtifactUploadError, StoredArtifact
from ..export.providers import get_pipeline
from ..metrics.instruments import instruments
from ..model import Run
from ..model.coerce import coerce_attributes
from ..model.events import emit_log, severity, summary
from ..model.registry import registry

_counter: tuple[Meter, Counter] | None = None


def _uploaded_counter() -> Counter:
    """``ai.artifact.uploaded`` (By): the model's instrument when it has one."""
    global _counter
    shared = getattr(instruments(), "artifact_uploaded", None)
    if shared is not None:
        return shared  # type: ignore[no-any-return]
    meter = get_pipeline().meter
    cached = _counter
    if cached is None or cached[0] is not meter:
        cached = (
            meter,
            meter.create_counter(
                semconv.METRIC_ARTIFACT_UPLOADED, unit="By", description="Artifact bytes uploaded"
            ),
        )
        _counter = cached
    return cached[1]


class WatchEvents:
    """Emits the watcher's events on ``run`` (None: the run open in this process)."""

    def __init__(self, run: Run | None) -> None:
        self._run = run

    def run(self) -> Run | None:
        return self._run or registry.current()

    def run_id(self) -> str:
        run = self.run()
        return run.run_id if run is not None else (get_pipeline().settings.run_id or "unknown")

    def _event(self, name: str, attributes: Mapping[str, Any], level: str = "info") -> None:
        run = self.run()
        if run is not None:
            run.event(name, attributes, level)
            return
        attrs = coerce_attributes(attributes)
        emit_log(
            None, self.run_id(), attrs, event_name=name, body=summary(name, attrs), level=severity(level)
        )

    def detected(self, path: str, kind: str, size: int, sha256: str | None, version: int) -> None:
        extra = {semconv.ARTIFACT_SHA256: sha256, semconv.ARTIFACT_VERSION: version}
        run = self.run()
        if run is not None:
            run.artifact_detected(path, kind, size, **extra)
        else:
            self._event(
                semconv.ARTIFACT_DETECTED,
                {
                    semconv.ARTIFACT_PATH: path,
                    semconv.ARTIFACT_TYPE: kind,
                    semconv.ARTIFACT_SIZE: size,
                    **extra,
                },
            )

    def registered(self, path: str, kind: str, stored: StoredArtifact, version: int) -> None:
        extra = {
            semconv.ARTIFACT_PATH: path,
            semconv.ARTIFACT_VERSION: version,
            semconv.ARTIFACT_BUCKET: stored.bucket,
        }
        run = self.run()
        if run is not None:
            run.artifact_registered(
                stored.key, stored.size_bytes, stored.sha256, stored.content_type, kind, stored.uri, **extra
            )
        else:
            self._event(
                semconv.ARTIFACT_REGISTERED,
                {
                    semconv.ARTIFACT_KEY: stored.key,
                    semconv.ARTIFACT_URI: stored.uri,
                    semconv.ARTIFACT_SIZE: stored.size_bytes,
                    semconv.ARTIFACT_SHA256: stored.sha256,
                    semconv.ARTIFACT_CONTENT_TYPE: stored.content_type,
                    semconv.ARTIFACT_KIND: kind,
                    **extra,
                },
            )
        _uploaded_counter().add(
            stored.size_bytes, {semconv.RUN_ID: self.run_id(), semconv.ARTIFACT_KIND: kind}
        )

    def upload_failed(
        self, path: str, kind: str, error: ArtifactUploadError, *, size: int | None, version: int | None
    ) -> None:
        self._event(
            semconv.ARTIFACT_UPLOAD_FAILED,
            {
                semconv.ARTIFACT_PATH: path,
                semconv.ARTIFACT_KIND: kind,
                semconv.ARTIFACT_BUCKET: error.bucket,
                semconv.ARTIFACT_KEY: error.key,
                semconv.ARTIFACT_URI: error.uri,
                semconv.ARTIFACT_SIZE: size,
                semconv.ARTIFACT_VERSION: version,
                semconv.ERROR_TYPE: error.error_type,
                semconv.EXCEPTION_MESSAGE: error.message,
            },
            "error",
        )

    def refused(self, path: str, message: str) -> None:
        self._event(
            semconv.ARTIFACT_REFUSED,
            {
                semconv.ARTIFACT_PATH: path,
                semconv.ERROR_TYPE: semconv.ARTIFACT_ERROR_PATH_OUTSIDE_ROOT,
                semconv.EXCEPTION_MESSAGE: message,
            },
            "warning",
        )

    def log(self, message: str, level: str = "info") -> None:
        run = self.run()
        if run is not None:
            run.log(message, level, source=semconv.SCOPE_NAME)

    def stopped(self, attributes: Mapping[str, Any]) -> None:
        self._event(semconv.WATCH_STOPPED, attributes)
