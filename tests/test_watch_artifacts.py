"""Artifact detection and upload end to end: files written under a watched directory,
the events an OTLP receiver gets, and what lands in S3 (moto's server over HTTP on
127.0.0.1), downloaded back and compared by SHA-256."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Wire
from s3_server import S3Env, moto_server_fixture, s3_fixture  # noqa: F401 - fixtures
from watch_helpers import append, wait_for

import otel_ai
from otel_ai import semconv
from otel_ai.artifacts import S3ArtifactStore, StoredArtifact
from otel_ai.watch import Watcher

MiB = 1 << 20


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write(path: Path, data: bytes) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def _by_path(records: list[Any]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for record in sorted(records, key=lambda r: r.attributes[semconv.EVENT_SEQ]):
        found.setdefault(record.attributes[semconv.ARTIFACT_PATH], []).append(record)
    return found


def test_artifacts_are_reported_once_settled_uploaded_and_registered(
    http_wire: Wire, s3: S3Env, tmp_path: Path
) -> None:
    root = tmp_path / "experiment"
    _write(root / "old_figure.png", b"made before the run")  # existed at start: not this run's
    files = {
        "figures/loss.png": ("plot", "image/png", os.urandom(50_000)),
        "figures/val_plot.pdf": ("plot", "application/pdf", b"%PDF plot"),
        "paper.pdf": ("paper", "application/pdf", b"%PDF paper " + os.urandom(1000)),
        "checkpoints/model.pt": ("checkpoint", "application/octet-stream", os.urandom(6 * MiB + 3)),
        "data/experiment_data.npy": ("data", "application/octet-stream", os.urandom(1000)),
        "logs/0-run/stage_1/best_solution_abc.py": (
            "code",
            "text/x-python; charset=utf-8",
            b"print('best')\n",
        ),
    }
    with otel_ai.run("art-run") as run:
        watcher = Watcher(run, [root], artifacts_uri=f"s3://{s3.bucket}/lab", settle_s=0.3).start()
        for relative, (_kind, _ctype, data) in files.items():
            _write(root / relative, data)
        _write(root / "notes.md", b"not an artifact")
        wait_for(lambda: watcher.summary().artifacts_uploaded == len(files), what="6 uploads")
        # new content is a new version; the same content rewritten is not
        new_plot = _write(root / "figures/loss.png", os.urandom(40_000))
        wait_for(lambda: watcher.summary().artifacts_uploaded == len(files) + 1, what="version 2")
        _write(root / "paper.pdf", files["paper.pdf"][2])
        time.sleep(0.8)
        summary = watcher.stop(10)
    assert (
        summary.artifacts_detected == 7 and summary.artifacts_uploaded == 7 and summary.artifacts_failed == 0
    )

    detected = _by_path(http_wire.events(semconv.ARTIFACT_DETECTED))
    registered = _by_path(http_wire.events(semconv.ARTIFACT_REGISTERED))
    assert set(detected) == set(registered) == set(files)
    assert [r.attributes[semconv.ARTIFACT_VERSION] for r in detected["figures/loss.png"]] == [1, 2]
    assert all(len(detected[p]) == 1 for p in files if p != "figures/loss.png")
    for relative, (kind, ctype, data) in files.items():
        if relative == "figures/loss.png":
            data = new_plot
        found = detected[relative][-1].attributes
        assert (
            found[semconv.ARTIFACT_TYPE],
            found[semconv.ARTIFACT_SIZE],
            found[semconv.ARTIFACT_SHA256],
        ) == (kind, len(data), _sha(data))
        event = registered[relative][-1]
        attrs = event.attributes
        key = f"lab/runs/art-run/{relative}"
        assert attrs[semconv.ARTIFACT_KEY] == key
        assert attrs[semconv.ARTIFACT_URI] == f"s3://{s3.bucket}/{key}"
        assert attrs[semconv.ARTIFACT_BUCKET] == s3.bucket
        assert (attrs[semconv.ARTIFACT_SIZE], attrs[semconv.ARTIFACT_SHA256]) == (len(data), _sha(data))
        assert (attrs[semconv.ARTIFACT_CONTENT_TYPE], attrs[semconv.ARTIFACT_KIND]) == (ctype, kind)
        assert attrs[semconv.RUN_ID] == "art-run" and event.severity_text == "INFO"
        body, response = s3.get(key)
        assert _sha(body) == _sha(data) == response["Metadata"][semconv.ARTIFACT_METADATA_SHA256]
    assert "lab/runs/art-run/old_figure.png" not in s3.object_keys()
    uploaded = [p for p in http_wire.latest_metrics() if p.name == semconv.METRIC_ARTIFACT_UPLOADED]
    total = sum(len(d) for _k, _c, d in files.values()) + len(new_plot)
    assert sum(p.value for p in uploaded) == total
    assert {p.attributes[semconv.ARTIFACT_KIND] for p in uploaded} == {
        "plot",
        "paper",
        "checkpoint",
        "data",
        "code",
    }


def test_a_file_being_written_is_reported_once_with_its_final_size(http_wire: Wire, tmp_path: Path) -> None:
    with otel_ai.run("settle") as run:
        watcher = Watcher(run, [tmp_path], settle_s=1.0, upload=False).start()
        with open(tmp_path / "ckpt.pth", "wb") as handle:
            for _ in range(8):  # a slow torch.save
                handle.write(os.urandom(100_000))
                handle.flush()
                time.sleep(0.15)
        wait_for(lambda: watcher.summary().artifacts_detected == 1)
        watcher.stop(5)
    (event,) = http_wire.events(semconv.ARTIFACT_DETECTED)
    assert event.attributes[semconv.ARTIFACT_SIZE] == 800_000
    assert event.attributes[semconv.ARTIFACT_TYPE] == "checkpoint"
    assert not http_wire.events(semconv.ARTIFACT_REGISTERED)


@pytest.mark.parametrize("failure", ["wrong credentials", "missing bucket"])
def test_upload_failures_are_error_events_naming_bucket_and_key_and_the_run_goes_on(
    http_wire: Wire, s3: S3Env, tmp_path: Path, failure: str
) -> None:
    bucket = s3.bucket if failure == "wrong credentials" else "no-such-bucket-otel-ai"
    expected = "InvalidAccessKeyId" if failure == "wrong credentials" else "NoSuchBucket"
    if failure == "wrong credentials":
        s3.server.require_auth()
    with otel_ai.run("failing") as run:
        watcher = Watcher(
            run,
            [tmp_path],
            uploader=S3ArtifactStore(f"s3://{bucket}/p", max_attempts=2, backoff_s=0.01),
            settle_s=0.2,
        ).start()
        _write(tmp_path / "plot.png", b"png bytes")
        wait_for(lambda: watcher.summary().artifacts_failed == 1)
        append(tmp_path / "after.log", "the run goes on\n")
        wait_for(lambda: watcher.summary().lines == 1)
        watcher.stop(5)
    (event,) = http_wire.events(semconv.ARTIFACT_UPLOAD_FAILED)
    attrs = event.attributes
    assert event.severity_text == "ERROR"
    assert (attrs[semconv.ARTIFACT_BUCKET], attrs[semconv.ARTIFACT_KEY]) == (
        bucket,
        "p/runs/failing/plot.png",
    )
    assert attrs[semconv.ERROR_TYPE] == expected
    assert f"s3://{bucket}/p/runs/failing/plot.png" in event.body
    assert bucket in attrs[semconv.EXCEPTION_MESSAGE]
    run_span = http_wire.span(lambda s: s.name == semconv.SPAN_RUN)
    assert run_span.status_code == "OK"
    assert [r.body for r in http_wire.logs() if r.attributes.get(semconv.LOG_SOURCE) == "after.log"] == [
        "the run goes on"
    ]


def test_a_file_that_vanishes_before_its_upload_is_an_error_event(
    http_wire: Wire, s3: S3Env, tmp_path: Path
) -> None:
    class VanishingFirst:
        """The real store, but the file is deleted between detection and upload."""

        def __init__(self, store: S3ArtifactStore) -> None:
            self.store = store
            self.bucket = store.bucket

        def key_for(self, run_id: str, relative_path: str) -> str:
            return self.store.key_for(run_id, relative_path)

        def upload_file(self, *args: Any, **kwargs: Any) -> StoredArtifact:
            return self.store.upload_file(*args, **kwargs)

        def upload_path(self, path: Any, key: str, **kwargs: Any) -> StoredArtifact:
            os.unlink(path)
            return self.store.upload_path(path, key, **kwargs)

    with otel_ai.run("vanish") as run:
        store = VanishingFirst(S3ArtifactStore(f"s3://{s3.bucket}"))
        watcher = Watcher(run, [tmp_path], uploader=store, settle_s=0.2).start()
        _write(tmp_path / "fig.svg", b"<svg/>")
        wait_for(lambda: watcher.summary().artifacts_failed == 1)
        watcher.stop(5)
    (event,) = http_wire.events(semconv.ARTIFACT_UPLOAD_FAILED)
    assert event.attributes[semconv.ERROR_TYPE] == semconv.ARTIFACT_ERROR_FILE_VANISHED
    assert event.attributes[semconv.ARTIFACT_KEY] == "runs/vanish/fig.svg"
    assert s3.object_keys() == []


def test_the_final_sweep_uploads_what_appeared_in_the_last_moments(
    http_wire: Wire, s3: S3Env, tmp_path: Path
) -> None:
    with otel_ai.run("sweep") as run:
        watcher = Watcher(run, [tmp_path], artifacts_uri=f"s3://{s3.bucket}", settle_s=60).start()
        data = _write(tmp_path / "final_plot.png", os.urandom(10_000))
        summary = watcher.stop(10)  # far from settled: the writer is gone, so it counts as settled
    assert summary.artifacts_uploaded == 1
    (event,) = http_wire.events(semconv.ARTIFACT_REGISTERED)
    body, _ = s3.get(event.attributes[semconv.ARTIFACT_KEY])
    assert body == data


def test_what_the_deadline_leaves_is_reported_as_not_uploaded(
    http_wire: Wire, s3: S3Env, tmp_path: Path
) -> None:
    with otel_ai.run("late") as run:
        watcher = Watcher(run, [tmp_path], artifacts_uri=f"s3://{s3.bucket}", settle_s=60).start()
        _write(tmp_path / "a.png", b"a" * 1000)
        _write(tmp_path / "b.png", b"b" * 1000)
        time.sleep(0.2)
        summary = watcher.stop(deadline=time.monotonic())  # no time left at all
        wait_for(lambda: watcher.summary().artifacts_not_uploaded == 2)
    assert summary.artifacts_uploaded == 0
    events = http_wire.events(semconv.ARTIFACT_UPLOAD_FAILED)
    assert sorted(e.attributes[semconv.ARTIFACT_KEY] for e in events) == [
        "runs/late/a.png",
        "runs/late/b.png",
    ]
    assert {e.attributes[semconv.ERROR_TYPE] for e in events} == {semconv.ARTIFACT_ERROR_DEADLINE_EXCEEDED}
    assert all(e.attributes[semconv.ARTIFACT_BUCKET] == s3.bucket for e in events)


def test_artifacts_resolving_outside_the_root_are_refused(http_wire: Wire, s3: S3Env, tmp_path: Path) -> None:
    outside = tmp_path / "private" / "key.png"
    _write(outside, b"private")
    root = tmp_path / "exp"
    root.mkdir()
    with otel_ai.run("escape") as run:
        watcher = Watcher(run, [root], artifacts_uri=f"s3://{s3.bucket}", settle_s=0.2).start()
        (root / "leak.png").symlink_to(outside)
        _write(root / "ok.png", b"fine")
        wait_for(lambda: watcher.summary().artifacts_uploaded == 1 and watcher.summary().paths_refused == 1)
        watcher.stop(5)
    (refused,) = http_wire.events(semconv.ARTIFACT_REFUSED)
    assert refused.attributes[semconv.ARTIFACT_PATH] == "leak.png"
    assert refused.attributes[semconv.ERROR_TYPE] == semconv.ARTIFACT_ERROR_PATH_OUTSIDE_ROOT
    assert refused.severity_text == "WARN"
    assert s3.object_keys() == ["runs/escape/ok.png"]


def test_a_resumed_run_does_not_report_or_upload_the_same_content_again(
    http_wire: Wire, s3: S3Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with otel_ai.run("resumed") as run:
        watcher = Watcher(run, [tmp_path], artifacts_uri=f"s3://{s3.bucket}", settle_s=0.2).start()
        _write(tmp_path / "a.png", b"a")
        wait_for(lambda: watcher.summary().artifacts_uploaded == 1)
        watcher.stop(5)
        _write(tmp_path / "b.png", b"b")  # while nobody watched
        watcher = Watcher(run, [tmp_path], artifacts_uri=f"s3://{s3.bucket}", settle_s=0.2).start()
        wait_for(lambda: watcher.summary().artifacts_uploaded == 1)
        watcher.stop(5)
    assert [e.attributes[semconv.ARTIFACT_PATH] for e in http_wire.events(semconv.ARTIFACT_REGISTERED)] == [
        "a.png",
        "b.png",
    ]


def test_several_roots_keep_their_artifacts_apart(http_wire: Wire, tmp_path: Path) -> None:
    roots = [tmp_path / "exp_a", tmp_path / "exp_b", tmp_path / "exp_a" / "inner"]  # inner: already watched
    for root in roots:
        root.mkdir(parents=True, exist_ok=True)
    with otel_ai.run("roots") as run:
        watcher = Watcher(run, roots, settle_s=0.2, upload=False).start()
        assert watcher.roots == [str(roots[0]), str(roots[1])]
        _write(roots[0] / "plot.png", b"a")
        _write(roots[1] / "plot.png", b"b")
        _write(roots[2] / "x.svg", b"c")
        wait_for(lambda: watcher.summary().artifacts_detected == 3)
        watcher.stop(5)
    paths = sorted(e.attributes[semconv.ARTIFACT_PATH] for e in http_wire.events(semconv.ARTIFACT_DETECTED))
    assert paths == ["exp_a/inner/x.svg", "exp_a/plot.png", "exp_b/plot.png"]


def test_the_final_sweep_finds_what_no_event_announced_listing_again_only_changed_directories(
    http_wire: Wire, tmp_path: Path
) -> None:
    """A polling observer that never polls in the test: only the first scan and the final
    sweep see the tree. The sweep lists again the directories whose time changed and
    takes the others' files from their first listing, and finds what a full walk would."""
    root = tmp_path / "experiment"
    _write(root / "old" / "kept.png", b"before the run")
    _write(root / "stable" / "redrawn.png", b"first drawing")
    _write(root / "a" / "b" / "c" / "deep.png", b"untouched")
    _write(root / "gone" / "removed.png", b"deleted during the run")
    time.sleep(0.1)  # the tree's times older than a clock tick when it is first listed
    with otel_ai.run("sweep-listed") as run:
        watcher = Watcher(run, [root], polling=True, poll_interval_s=3600, settle_s=60).start()
        _write(root / "old" / "new.png", b"a new file in an old directory")
        _write(root / "fresh" / "sub" / "made.png", b"a new file in new directories")
        with open(root / "stable" / "redrawn.png", "r+b") as handle:  # in place: same inode
            handle.write(b"second drawing, longer than the first")
        for path in (root / "gone").iterdir():
            path.unlink()
        (root / "gone").rmdir()
        summary = watcher.stop(10)
    detected = sorted(
        e.attributes[semconv.ARTIFACT_PATH] for e in http_wire.events(semconv.ARTIFACT_DETECTED)
    )
    assert detected == ["fresh/sub/made.png", "old/new.png", "stable/redrawn.png"]
    assert summary.artifacts_detected == 3 and summary.complete


def test_a_directory_whose_time_did_not_change_is_not_listed_again(tmp_path: Path) -> None:
    """What the final sweep relies on, shown by a directory whose time is put back: a file
    added there is not seen (a full walk would see it); one whose time moved is listed."""
    from otel_ai.watch.patterns import DEFAULT_EXCLUDE, DEFAULT_LOG_PATTERNS, ArtifactRules, PathPatterns
    from otel_ai.watch.roots import Scope, make_roots

    _write(tmp_path / "quiet" / "one.png", b"1")
    _write(tmp_path / "busy" / "one.png", b"1")
    old = time.time() - 60
    for directory in (tmp_path / "quiet", tmp_path / "busy", tmp_path):
        os.utime(directory, (old, old))
    (root,) = make_roots([tmp_path])
    scope = Scope(
        [root],
        PathPatterns(DEFAULT_LOG_PATTERNS),
        ArtifactRules({"plot": "*.png"}),
        PathPatterns(DEFAULT_EXCLUDE),
    )
    assert sorted(rel for _p, rel, _st in scope.walk(root)) == ["busy/one.png", "quiet/one.png"]
    root.listed = not scope.cut
    _write(tmp_path / "quiet" / "two.png", b"2")
    os.utime(tmp_path / "quiet", (old, old))  # as if nothing had been added
    _write(tmp_path / "busy" / "two.png", b"2")
    found = sorted(rel for _p, rel in scope.walk_changed(root, deadline=time.monotonic() + 10))
    assert found == ["busy/one.png", "busy/two.png", "quiet/one.png"]
    assert sorted(rel for _p, rel, _st in scope.walk(root)) == [
        "busy/one.png",
        "busy/two.png",
        "quiet/one.png",
        "quiet/two.png",
    ]


def test_python_environments_below_a_root_are_left_alone_whatever_their_name(
    http_wire: Wire, tmp_path: Path
) -> None:
    """A venv (``pyvenv.cfg``) or conda environment (``conda-meta/``) in the experiment's
    directory holds tens of thousands of installed files: none is walked, tailed or
    reported, before or during the run; the experiment's own files are."""
    root = tmp_path / "experiment"
    venv = root / "venv"
    _write(venv / "pyvenv.cfg", b"home = /usr/bin\n")
    _write(venv / "lib" / "python3.11" / "site-packages" / "pkg" / "tests" / "baseline.png", b"packaged")
    conda = root / "envs" / "torch"
    (conda / "conda-meta").mkdir(parents=True)
    _write(conda / "lib" / "model.pt", b"packaged weights")
    (venv / "logs").mkdir()
    (root / "logs").mkdir()
    with otel_ai.run("environments") as run:
        watcher = Watcher(run, [root], settle_s=0.2, upload=False).start()
        _write(venv / "lib" / "python3.11" / "site-packages" / "new" / "logo.png", b"pip install")
        append(venv / "logs" / "pip.log", "Collecting torch\n")
        _write(conda / "lib" / "late.pt", b"conda install")
        _write(root / "figures" / "loss.png", b"the experiment's")
        _write(root / "notes" / "pyvenv.cfg.png", b"a plot whose name only looks like it")
        append(root / "logs" / "train.log", "epoch 1\n")
        wait_for(lambda: watcher.summary().artifacts_detected >= 2 and watcher.summary().lines >= 1)
        summary = watcher.stop(10)
    detected = sorted(
        e.attributes[semconv.ARTIFACT_PATH] for e in http_wire.events(semconv.ARTIFACT_DETECTED)
    )
    assert detected == ["figures/loss.png", "notes/pyvenv.cfg.png"]
    assert summary.lines == 1 and summary.files_tailed == 1
    assert [r.body for r in http_wire.logs() if r.body in ("epoch 1", "Collecting torch")] == ["epoch 1"]
    assert sorted(watcher._scope.environments) == [str(conda), str(venv)]
