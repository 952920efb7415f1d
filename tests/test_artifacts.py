"""The S3 artifact store against a real S3 API over HTTP (moto's server on 127.0.0.1).

What landed in S3 is downloaded back and compared byte for byte and by SHA-256; errors
are our own :class:`ArtifactUploadError` naming the bucket and key.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest
from opentelemetry import context as context_api
from s3_server import ACCESS_KEY, FlakyProxy, S3Env, moto_server_fixture, s3_fixture  # noqa: F401 - fixtures

from otel_ai import ConfigurationError, semconv
from otel_ai.artifacts import (
    ArtifactUploadError,
    S3ArtifactStore,
    artifact_key,
    clean_relative_path,
    content_type_for,
    parse_s3_uri,
    resolve_inside,
)

MiB = 1 << 20


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_small_file_lands_with_its_checksum_as_metadata(s3: S3Env, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    _write(tmp_path / "figures" / "loss.png", data)
    store = S3ArtifactStore(f"s3://{s3.bucket}/lab/ai-scientist")

    stored = store.upload_file(tmp_path, "figures/loss.png", run_id="run-42")

    assert stored.key == "lab/ai-scientist/runs/run-42/figures/loss.png"
    assert stored.uri == f"s3://{s3.bucket}/lab/ai-scientist/runs/run-42/figures/loss.png"
    assert stored.size_bytes == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.content_type == "image/png"
    assert stored.parts == 1
    body, response = s3.get(stored.key)
    assert hashlib.sha256(body).hexdigest() == stored.sha256
    assert response["Metadata"][semconv.ARTIFACT_METADATA_SHA256] == stored.sha256
    assert response["ContentType"] == "image/png"


def test_a_file_over_the_threshold_goes_multipart_and_arrives_whole(s3: S3Env, tmp_path: Path) -> None:
    data = os.urandom(12 * MiB + 12345)
    _write(tmp_path / "checkpoints" / "model.safetensors", data)
    store = S3ArtifactStore(f"s3://{s3.bucket}", multipart_threshold=5 * MiB, part_size=5 * MiB)

    stored = store.upload_file(tmp_path, "checkpoints/model.safetensors", run_id="run-mp")

    assert stored.key == "runs/run-mp/checkpoints/model.safetensors"
    assert stored.parts == 3
    body, response = s3.get(stored.key)
    assert len(body) == len(data)
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest() == stored.sha256
    assert response["Metadata"][semconv.ARTIFACT_METADATA_SHA256] == stored.sha256
    assert response["ETag"].strip('"').endswith("-3")  # S3's mark of a 3-part upload
    assert not s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads")


def test_wrong_credentials_are_an_error_naming_bucket_and_key(s3: S3Env, tmp_path: Path) -> None:
    _write(tmp_path / "plot.png", b"png")
    store = S3ArtifactStore(f"s3://{s3.bucket}/p", max_attempts=2, backoff_s=0.01)
    s3.server.require_auth()

    with pytest.raises(ArtifactUploadError) as caught:
        store.upload_file(tmp_path, "plot.png", run_id="r1")

    error = caught.value
    assert error.error_type == "InvalidAccessKeyId"
    assert (error.bucket, error.key) == (s3.bucket, "p/runs/r1/plot.png")
    assert s3.bucket in str(error) and "p/runs/r1/plot.png" in str(error)
    assert ACCESS_KEY not in str(error)
    assert not error.retryable


def test_a_missing_bucket_is_an_error_naming_it(s3: S3Env, tmp_path: Path) -> None:
    _write(tmp_path / "paper.pdf", b"%PDF-1.5")
    store = S3ArtifactStore("s3://no-such-bucket-otel-ai/x", max_attempts=2, backoff_s=0.01)

    with pytest.raises(ArtifactUploadError) as caught:
        store.upload_file(tmp_path, "paper.pdf", run_id="r1")

    assert caught.value.error_type == "NoSuchBucket"
    assert caught.value.uri == "s3://no-such-bucket-otel-ai/x/runs/r1/paper.pdf"


def test_a_file_that_vanished_is_an_error_not_a_crash(s3: S3Env, tmp_path: Path) -> None:
    store = S3ArtifactStore(f"s3://{s3.bucket}")
    with pytest.raises(ArtifactUploadError) as caught:
        store.upload_file(tmp_path, "gone.png", run_id="r1")
    assert caught.value.error_type == semconv.ARTIFACT_ERROR_FILE_VANISHED
    assert s3.object_keys() == []


def test_paths_escaping_the_root_are_refused_before_reading(s3: S3Env, tmp_path: Path) -> None:
    root = tmp_path / "experiment"
    outside = _write(tmp_path / "secrets" / "id_rsa.png", b"private")
    root.mkdir()
    (root / "link.png").symlink_to(outside)
    (root / "sub").mkdir()
    (root / "sub" / "up").symlink_to(tmp_path / "secrets", target_is_directory=True)
    store = S3ArtifactStore(f"s3://{s3.bucket}")

    for relative in (
        "../secrets/id_rsa.png",
        "link.png",
        "sub/up/id_rsa.png",
        "/etc/passwd",
        "sub/../../secrets/id_rsa.png",
    ):
        with pytest.raises(ArtifactUploadError) as caught:
            store.upload_file(root, relative, run_id="r1")
        assert caught.value.error_type == semconv.ARTIFACT_ERROR_PATH_OUTSIDE_ROOT, relative
    assert s3.object_keys() == []


def test_transient_errors_are_retried_with_backoff(
    s3: S3Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(70_000)
    _write(tmp_path / "plot.png", data)
    random.seed(7)
    expected = [random.random() for _ in range(3)]
    random.seed(7)
    with FlakyProxy(s3.endpoint, failures=2) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.endpoint)
        store = S3ArtifactStore(f"s3://{s3.bucket}", backoff_s=0.01)
        stored = store.upload_file(tmp_path, "plot.png", run_id="r1")
    assert [status for method, _path, status in proxy.requests if method == "PUT"] == [503, 503, 200]
    # the backoff's jitter leaves a seeded experiment's random sequence alone
    assert [random.random() for _ in range(3)] == expected
    body, _ = s3.get(stored.key)
    assert body == data


def test_retries_stop_at_the_deadline(s3: S3Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    _write(tmp_path / "plot.png", b"x" * 100)
    with FlakyProxy(s3.endpoint, failures=100) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.endpoint)
        store = S3ArtifactStore(f"s3://{s3.bucket}", backoff_s=0.2, max_attempts=50)
        with pytest.raises(ArtifactUploadError) as caught:
            store.upload_file(tmp_path, "plot.png", run_id="r1", deadline=time.monotonic() + 1.0)
    puts = [status for method, _path, status in proxy.requests if method == "PUT"]
    # retried, then given up when the next backoff would pass the deadline, long before
    # the 50 attempts allowed
    assert 2 <= len(puts) < 50 and set(puts) == {503}, puts
    assert caught.value.error_type == "SlowDown" and caught.value.retryable


def test_our_own_s3_traffic_runs_with_instrumentation_suppressed(s3: S3Env, tmp_path: Path) -> None:
    """botocore's instrumentation hooks the same request lifecycle events this test hooks;
    it traces nothing when the suppression key is set, which it must be for all our calls."""
    _write(tmp_path / "small.png", b"s" * 10)
    _write(tmp_path / "big.pt", os.urandom(11 * MiB))
    store = S3ArtifactStore(f"s3://{s3.bucket}", multipart_threshold=5 * MiB, part_size=5 * MiB)
    seen: list[tuple[str, object, object]] = []

    def record(request: object = None, **kwargs: object) -> None:
        seen.append(
            (
                str(kwargs.get("event_name")),
                context_api.get_value(context_api._SUPPRESS_INSTRUMENTATION_KEY),
                context_api.get_value(context_api._SUPPRESS_HTTP_INSTRUMENTATION_KEY),
            )
        )

    store.client.meta.events.register("before-send.s3", record)
    store.upload_file(tmp_path, "small.png", run_id="r1")
    store.upload_file(tmp_path, "big.pt", run_id="r1")

    operations = {name.rsplit(".", 1)[-1] for name, _, _ in seen}
    assert {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"} <= operations
    assert all(suppressed is True and http is True for _, suppressed, http in seen)


def test_configuration_mistakes_are_clear_errors() -> None:
    with pytest.raises(ConfigurationError, match="not valid"):
        S3ArtifactStore("https://bucket/prefix")
    with pytest.raises(ConfigurationError, match="5 MiB"):
        S3ArtifactStore("s3://bucket", part_size=MiB)
    assert parse_s3_uri("s3://my-bucket/a/b/") == ("my-bucket", "a/b")
    assert parse_s3_uri("s3://my-bucket") == ("my-bucket", "")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("plots/loss.PNG", "image/png"),
        ("fig.svg", "image/svg+xml"),
        ("paper.pdf", "application/pdf"),
        ("ckpt/model.safetensors", "application/octet-stream"),
        ("data.npy", "application/octet-stream"),
        ("best_solution_1.py", "text/x-python; charset=utf-8"),
        ("logs.tar.gz", "application/gzip"),
        ("mystery.zzz", "application/octet-stream"),
    ],
)
def test_content_type_comes_from_the_name(name: str, expected: str) -> None:
    assert content_type_for(name) == expected


def test_relative_paths_are_cleaned_and_keys_built(tmp_path: Path) -> None:
    assert clean_relative_path("./a//b/./c.png") == "a/b/c.png"
    assert clean_relative_path("../a") is None
    assert clean_relative_path("/abs") is None
    assert resolve_inside(tmp_path, "a/../b") is None
    assert artifact_key("", "run/1", "x.png") == "runs/run_1/x.png"
    assert artifact_key("p/q/", "r", "x.png") == "p/q/runs/r/x.png"
