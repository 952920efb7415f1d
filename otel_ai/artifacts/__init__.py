"""Artifact storage: S3 / MinIO uploads behind a small interface.

:class:`S3ArtifactStore` uploads a file under a watched root to
``s3://bucket/prefix/runs/{run_id}/{relative path}``: streamed with its SHA-256 computed
on the way (stored as object metadata ``sha256``), multipart above a threshold, bounded
concurrency, retries with backoff on transient errors, our own S3 traffic untraced.
Failures raise :class:`ArtifactUploadError` naming the bucket and key; paths escaping
their root are refused. :mod:`otel_ai.watch` drives it and turns results into
``ai.artifact.registered`` events (or ERROR ``ai.artifact.upload_failed`` events).

Pod workers that upload by hand::

    store = S3ArtifactStore("s3://lab-artifacts/ai-scientist")
    stored = store.upload_file(experiment_dir, "paper.pdf", run_id=run.run_id)
    run.artifact_registered(stored.key, stored.size_bytes, stored.sha256,
                            stored.content_type, "paper", stored.uri)
"""

from __future__ import annotations

from .content import content_type_for
from .s3 import S3ArtifactStore, parse_s3_uri, untraced
from .store import (
    ArtifactStore,
    ArtifactUploadError,
    StoredArtifact,
    artifact_key,
    clean_relative_path,
    hash_file,
    resolve_inside,
)

__all__ = [
    "ArtifactStore",
    "ArtifactUploadError",
    "S3ArtifactStore",
    "StoredArtifact",
    "artifact_key",
    "clean_relative_path",
    "content_type_for",
    "hash_file",
    "parse_s3_uri",
    "resolve_inside",
    "untraced",
]
