"""Artifacts to S3 or MinIO through boto3: streamed, hashed, multipart, retried, untraced.

- The SHA-256 is computed while the bytes stream past; no file is ever read whole into
  memory. Small files (up to ``multipart_threshold``) go in one PutObject from a buffer of
  at most that size; larger ones in multipart uploads of ``part_size`` parts, with at most
  ``max_concurrency`` parts in flight per store (memory stays under about
  ``max_concurrency x part_size``).
- The checksum is stored as object metadata (``x-amz-meta-sha256``). A multipart upload
  needs it up front: it is the detector's hash (or a hashing pass), and the bytes that
  actually stream are hashed again; a mismatch (the file changed mid-upload) aborts the
  upload with ``ContentChanged`` rather than store an object whose checksum lies.
- Transient failures (throttling, 5xx, timeouts, refused connections) are retried with
  exponential backoff and jitter, within the caller's deadline; others fail at once.
- botocore's exceptions become :class:`ArtifactUploadError` here, at the seam, with the
  bucket and key.
- Every call runs with OpenTelemetry instrumentation suppressed, so an instrumented
  botocore/urllib3 in the same process never traces our own traffic.

S3 settings are boto3's own: the credentials chain, ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL`` for MinIO (path-style addressing is used with a custom endpoint),
``AWS_REGION``.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from opentelemetry import context as context_api

from .. import semconv
from ..config import ConfigurationError, check_s3_uri
from .content import content_type_for
from .store import (
    CONTENT_CHANGED,
    DEADLINE_EXCEEDED,
    FILE_VANISHED,
    PATH_OUTSIDE_ROOT,
    ArtifactUploadError,
    StoredArtifact,
    artifact_key,
    clean_relative_path,
    hash_file,
    resolve_inside,
)

MiB = 1 << 20
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PARTS = 10_000

_T = TypeVar("_T")

# S3 error codes worth another try; anything else (AccessDenied, NoSuchBucket,
# InvalidAccessKeyId, SignatureDoesNotMatch...) fails at once.
_TRANSIENT_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "InternalError",
        "ServiceUnavailable",
        "500",
        "502",
        "503",
        "504",
    }
)

# botocore's instrumentation, urllib3's and requests' all honour these keys
_SUPPRESS_PLAIN_KEY = "suppress_instrumentation"


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """Suppress OpenTelemetry instrumentation (botocore, urllib3, requests) in this block."""
    ctx = context_api.set_value(context_api._SUPPRESS_INSTRUMENTATION_KEY, True)
    ctx = context_api.set_value(context_api._SUPPRESS_HTTP_INSTRUMENTATION_KEY, True, ctx)
    ctx = context_api.set_value(_SUPPRESS_PLAIN_KEY, True, ctx)
    token = context_api.attach(ctx)
    try:
        yield
    finally:
        context_api.detach(token)


# backoff jitter from a generator of our own: a seeded experiment's `random` sequence
# must not move because an upload was retried
_jitter = random.Random()


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``; raises
    :class:`ConfigurationError` for anything else."""
    try:
        clean = check_s3_uri(uri)
    except ValueError as exc:
        raise ConfigurationError(f"artifacts URI {uri!r} is not valid: {exc}") from None
    bucket, _, prefix = clean[len("s3://") :].partition("/")
    return bucket, prefix.strip("/")


class S3ArtifactStore:
    """Uploads artifacts to ``s3://bucket/prefix`` under ``prefix/runs/{run_id}/...``.

    Args:
        uri: ``s3://bucket`` or ``s3://bucket/prefix`` (``--artifacts`` /
            OTEL_AI_ARTIFACTS_URI).
        client: a boto3 S3 client to use instead of one built from boto3's settings.
        multipart_threshold: files larger than this go in multipart uploads.
        part_size: bytes per part (at least 5 MiB; grown for files over 10,000 parts).
        max_concurrency: parts (or small files) in flight at once, across all uploads.
        max_attempts: tries per request on transient errors.
        backoff_s, max_backoff_s: the first retry delay and its cap (doubling, jittered).
        connect_timeout_s, read_timeout_s: per request.
    """

    def __init__(
        self,
        uri: str,
        *,
        client: Any = None,
        multipart_threshold: int = 16 * MiB,
        part_size: int = 8 * MiB,
        max_concurrency: int = 4,
        max_attempts: int = 5,
        backoff_s: float = 0.25,
        max_backoff_s: float = 8.0,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
    ) -> None:
        self.bucket, self.prefix = parse_s3_uri(uri)
        if part_size < MIN_PART_SIZE:
            raise ConfigurationError(f"part_size={part_size} is below S3's minimum part size of 5 MiB")
        if multipart_threshold < part_size:
            raise ConfigurationError("multipart_threshold must be at least part_size")
        if max_concurrency < 1 or max_attempts < 1:
            raise ConfigurationError("max_concurrency and max_attempts must be at least 1")
        self.multipart_threshold = int(multipart_threshold)
        self.part_size = int(part_size)
        self.max_concurrency = int(max_concurrency)
        self.max_attempts = int(max_attempts)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self._timeouts = (float(connect_timeout_s), float(read_timeout_s))
        self._client = client
        self._client_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        self._executor: ThreadPoolExecutor | None = None
        self._closed = threading.Event()

    def __repr__(self) -> str:
        return f"<S3ArtifactStore s3://{self.bucket}/{self.prefix}>"

    # -- identity ---------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The boto3 S3 client (built on first use from boto3's own settings)."""
        client = self._client
        if client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._new_client()
                client = self._client
        return client

    def _new_client(self) -> Any:
        import boto3
        from botocore.config import Config

        custom_endpoint = bool(os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
        config = Config(
            connect_timeout=self._timeouts[0],
            read_timeout=self._timeouts[1],
            retries={"total_max_attempts": 1},  # we retry ourselves, within the deadline
            max_pool_connections=max(10, self.max_concurrency + 2),
            s3={"addressing_style": "path" if custom_endpoint else "auto"},
            # S3-compatible stores (MinIO, older Ceph) reject the newer default checksums
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        with untraced():
            return boto3.session.Session().client("s3", config=config)

    def key_for(self, run_id: str, relative_path: str) -> str:
        """``prefix/runs/{run_id}/{relative_path}``."""
        return artifact_key(self.prefix, run_id, relative_path)

    def uri_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # -- uploading --------------------------------------------------------------------
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
        """Upload ``root/relative_path`` to ``prefix/runs/{run_id}/{relative_path}``.

        ``sha256``, when known (the detector hashed the file), saves a hashing pass for
        large files and is verified against the bytes uploaded. ``deadline`` is a
        ``time.monotonic()`` value nothing may wait past. Raises
        :class:`ArtifactUploadError`; a path escaping ``root`` is refused with
        ``PathOutsideRoot`` before anything is read.
        """
        clean = clean_relative_path(relative_path)
        key = self.key_for(run_id, clean if clean is not None else str(relative_path))
        real = resolve_inside(root, relative_path)
        if real is None:
            raise ArtifactUploadError(
                f"refused to upload {relative_path!r}: it resolves outside the watched root {os.fspath(root)!r}",
                bucket=self.bucket,
                key=key,
                error_type=PATH_OUTSIDE_ROOT,
                path=str(relative_path),
            )
        return self.upload_path(real, key, content_type=content_type, sha256=sha256, deadline=deadline)

    def upload_path(
        self,
        path: str | os.PathLike[str],
        key: str,
        *,
        content_type: str | None = None,
        sha256: str | None = None,
        deadline: float | None = None,
    ) -> StoredArtifact:
        """Upload the file at ``path`` to ``key`` (no root check: callers own the path)."""
        content_type = content_type or content_type_for(key)
        path = os.fspath(path)
        try:
            size = os.stat(path).st_size
            if size <= self.multipart_threshold:
                stored = self._put(path, key, content_type, sha256, deadline)
                if stored is not None:
                    return stored
            return self._multipart(path, key, content_type, sha256, deadline)
        except ArtifactUploadError:
            raise
        except Exception as exc:
            raise self._map(exc, key, path) from exc

    def _put(
        self, path: str, key: str, content_type: str, sha256: str | None, deadline: float | None
    ) -> StoredArtifact | None:
        self._acquire_slot(key, deadline)
        try:
            with open(path, "rb") as handle:
                data = handle.read(self.multipart_threshold + 1)
            if len(data) > self.multipart_threshold:
                return None  # it grew past the threshold: multipart after all
            digest = hashlib.sha256(data).hexdigest()
            if sha256 is not None and digest != sha256:
                raise self._changed(path, key)
            self._call(
                key,
                deadline,
                lambda: self.client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=data,
                    ContentType=content_type,
                    Metadata={semconv.ARTIFACT_METADATA_SHA256: digest},
                ),
            )
            return StoredArtifact(self.bucket, key, self.uri_for(key), len(data), digest, content_type, 1)
        finally:
            self._slots.release()

    def _multipart(
        self, path: str, key: str, content_type: str, sha256: str | None, deadline: float | None
    ) -> StoredArtifact:
        if sha256 is None:
            try:
                sha256, _size = hash_file(path, deadline=deadline)
            except TimeoutError:
                raise self._deadline(key, path) from None
        size = os.stat(path).st_size
        part_size = max(self.part_size, math.ceil(size / (MAX_PARTS - 1) / MiB) * MiB)
        created = self._call(
            key,
            deadline,
            lambda: self.client.create_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                ContentType=content_type,
                Metadata={semconv.ARTIFACT_METADATA_SHA256: sha256},
            ),
        )
        upload_id = created["UploadId"]
        futures: list[Future[str]] = []
        failures: list[Future[str]] = []

        def note_failure(future: Future[str]) -> None:
            if not future.cancelled() and future.exception() is not None:
                failures.append(future)

        try:
            digest = hashlib.sha256()
            total = 0
            with open(path, "rb") as handle:
                number = 0
                while True:
                    self._acquire_slot(key, deadline)
                    try:
                        data = handle.read(part_size)
                    except BaseException:
                        self._slots.release()
                        raise
                    if not data:
                        self._slots.release()
                        break
                    digest.update(data)
                    total += len(data)
                    number += 1
                    future = self._pool().submit(self._part, key, upload_id, number, data, deadline)
                    del data  # only the in-flight part keeps its bytes
                    future.add_done_callback(note_failure)
                    futures.append(future)
                    if failures:
                        failures[0].result()  # raises the first part's error
            etags = [future.result() for future in futures]
            if digest.hexdigest() != sha256:
                raise self._changed(path, key)
            parts = [{"PartNumber": i + 1, "ETag": etag} for i, etag in enumerate(etags)]
            self._call(
                key,
                deadline,
                lambda: self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                ),
            )
            return StoredArtifact(
                self.bucket, key, self.uri_for(key), total, sha256, content_type, len(parts)
            )
        except BaseException:
            for future in futures:
                future.cancel()
            self._abort(key, upload_id)
            raise

    def _part(self, key: str, upload_id: str, number: int, data: bytes, deadline: float | None) -> str:
        try:
            response = self._call(
                key,
                deadline,
                lambda: self.client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
                ),
            )
            return str(response["ETag"])
        finally:
            self._slots.release()

    def _abort(self, key: str, upload_id: str) -> None:
        """Best effort: a dangling multipart upload costs storage until a lifecycle rule."""
        try:
            with untraced():
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception:  # noqa: BLE001, S110 - the upload's own error is the one to report
            pass

    # -- plumbing ---------------------------------------------------------------------
    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            with self._client_lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="otel_ai-s3")
        return self._executor

    def _acquire_slot(self, key: str, deadline: float | None) -> None:
        while True:
            if self._closed.is_set():
                raise self._deadline(key, None, "the store was closed")
            wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if wait <= 0:
                raise self._deadline(key, None)
            if self._slots.acquire(timeout=wait):
                return

    def _call(self, key: str, deadline: float | None, request: Callable[[], _T]) -> _T:
        attempt = 0
        while True:
            attempt += 1
            try:
                with untraced():
                    return request()
            except Exception as exc:
                if attempt >= self.max_attempts or not _is_transient(exc):
                    raise
                delay = min(self.max_backoff_s, self.backoff_s * (2 ** (attempt - 1))) * _jitter.uniform(
                    0.5, 1.0
                )
                if deadline is not None and time.monotonic() + delay >= deadline:
                    raise
                if self._closed.wait(delay):
                    raise

    def close(self) -> None:
        """Stop waiting for slots and retries; in-flight requests finish on their own."""
        self._closed.set()
        executor = self._executor
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    # -- the seam: their exceptions become ours ----------------------------------------
    def _map(self, exc: BaseException, key: str, path: str | None) -> ArtifactUploadError:
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"s3://{self.bucket}/{key}"
        if isinstance(exc, ArtifactUploadError):
            return exc
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
            code = str(
                error.get("Code")
                or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                or "ClientError"
            )
            message = str(error.get("Message") or exc)
            return ArtifactUploadError(
                f"upload to {where} failed: {code}: {message}",
                bucket=self.bucket,
                key=key,
                error_type=code,
                retryable=_is_transient(exc),
                path=path,
            )
        if isinstance(exc, FileNotFoundError):
            return ArtifactUploadError(
                f"upload to {where} failed: {path} vanished",
                bucket=self.bucket,
                key=key,
                error_type=FILE_VANISHED,
                path=path,
            )
        if isinstance(exc, BotoCoreError):
            return ArtifactUploadError(
                f"upload to {where} failed: {type(exc).__name__}: {exc}",
                bucket=self.bucket,
                key=key,
                error_type=type(exc).__name__,
                retryable=_is_transient(exc),
                path=path,
            )
        return ArtifactUploadError(
            f"upload to {where} failed: {type(exc).__name__}: {exc}",
            bucket=self.bucket,
            key=key,
            error_type=type(exc).__name__,
            path=path,
        )

    def _changed(self, path: str, key: str) -> ArtifactUploadError:
        return ArtifactUploadError(
            f"upload to s3://{self.bucket}/{key} abandoned: {path} changed while it was being uploaded",
            bucket=self.bucket,
            key=key,
            error_type=CONTENT_CHANGED,
            retryable=True,
            path=path,
        )

    def _deadline(
        self, key: str, path: str | None, why: str = "the shutdown deadline passed"
    ) -> ArtifactUploadError:
        return ArtifactUploadError(
            f"upload to s3://{self.bucket}/{key} not finished: {why}",
            bucket=self.bucket,
            key=key,
            error_type=DEADLINE_EXCEEDED,
            retryable=True,
            path=path,
        )


def _is_transient(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(exc, (ConnectionError, HTTPClientError)):
        return True
    if isinstance(exc, ClientError):
        response = exc.response if isinstance(exc.response, dict) else {}
        code = str(response.get("Error", {}).get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return code in _TRANSIENT_CODES or status == 429 or status >= 500
    return False
