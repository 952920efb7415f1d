"""What an artifact store promises, the errors it raises, and the path rules it enforces.

An :class:`ArtifactStore` takes a file under a watched root and returns a
:class:`StoredArtifact` (key, URI, size, SHA-256, content type) or raises
:class:`ArtifactUploadError`, which names the bucket and key and says what went wrong in
our own words (third-party exceptions are mapped at the seam, in the store). Paths that
resolve outside their root, through ``..`` or a symlink, are refused before a byte is read.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol, runtime_checkable

from .. import semconv

_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredArtifact:
    """One artifact that landed in the store."""

    bucket: str
    key: str
    uri: str
    size_bytes: int
    sha256: str
    content_type: str
    parts: int = 1  # > 1: uploaded in that many multipart parts


class ArtifactUploadError(Exception):
    """An artifact could not be stored; the run goes on.

    ``error_type`` is the S3 error code (``AccessDenied``, ``NoSuchBucket``,
    ``InvalidAccessKeyId``...), the botocore exception name for transport errors
    (``EndpointConnectionError``...), or one of ours: ``FileVanished``,
    ``PathOutsideRoot``, ``ContentChanged``, ``DeadlineExceeded``.
    """

    def __init__(
        self,
        message: str,
        *,
        bucket: str,
        key: str,
        error_type: str,
        retryable: bool = False,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.bucket = bucket
        self.key = key
        self.error_type = error_type
        self.retryable = retryable
        self.path = path

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"


@runtime_checkable
class ArtifactStore(Protocol):
    """Where artifacts go. :class:`otel_ai.artifacts.S3ArtifactStore` is the one we ship."""

    bucket: str

    def key_for(self, run_id: str, relative_path: str) -> str:
        """The object key of ``relative_path`` for ``run_id``."""
        ...

    def upload_file(
        self,
        root: str | os.PathLike[str],
        relative_path: str,
        *,
        run_id: str,
        content_type: str | None = None,
        sha256: str | None = None,
        deadline: float | None = None,
    ) -> StoredArtifact:
        """Store ``root/relative_path``; raises :class:`ArtifactUploadError`."""
        ...

    def upload_path(
        self,
        path: str | os.PathLike[str],
        key: str,
        *,
        content_type: str | None = None,
        sha256: str | None = None,
        deadline: float | None = None,
    ) -> StoredArtifact:
        """Store the file at ``path`` (already checked by the caller) under ``key``."""
        ...


def clean_relative_path(relative_path: str) -> str | None:
    """``relative_path`` as a clean POSIX path, or None when it is absolute or climbs out
    with ``..``."""
    text = str(relative_path).replace("\\", "/")
    if not text or text.startswith("/") or "\x00" in text:
        return None
    parts = [p for p in PurePosixPath(text).parts if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return "/".join(parts)


def resolve_inside(root: str | os.PathLike[str], relative_path: str) -> Path | None:
    """The real path of ``root/relative_path`` when it stays inside ``root`` (after
    following symlinks), else None."""
    clean = clean_relative_path(relative_path)
    if clean is None:
        return None
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, clean))
    try:
        if os.path.commonpath([real_root, real]) != real_root or real == real_root:
            return None
    except ValueError:  # different drives
        return None
    return Path(real)


def artifact_key(prefix: str, run_id: str, relative_path: str) -> str:
    """``{prefix}/runs/{run_id}/{relative path}`` (no leading prefix when it is empty)."""
    safe_run = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in str(run_id)) or "unknown"
    head = prefix.strip("/")
    key = f"runs/{safe_run}/{relative_path}"
    return f"{head}/{key}" if head else key


def hash_file(path: str | os.PathLike[str], *, deadline: float | None = None) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in 1 MiB chunks (never whole in memory).

    Raises TimeoutError when ``deadline`` (a ``time.monotonic()`` value) passes first.
    """
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as handle:
        buffer = bytearray(_HASH_CHUNK)
        view = memoryview(buffer)
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"hashing {path} did not finish before the deadline")
            count = handle.readinto(buffer)
            if not count:
                break
            digest.update(view[:count])
            size += count
    return digest.hexdigest(), size


# the error types of ours (S3's own codes pass through as they are)
FILE_VANISHED = semconv.ARTIFACT_ERROR_FILE_VANISHED
PATH_OUTSIDE_ROOT = semconv.ARTIFACT_ERROR_PATH_OUTSIDE_ROOT
CONTENT_CHANGED = semconv.ARTIFACT_ERROR_CONTENT_CHANGED
DEADLINE_EXCEEDED = semconv.ARTIFACT_ERROR_DEADLINE_EXCEEDED
