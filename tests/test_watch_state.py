"""The watcher's state on disk: journals that grow by what changed.

A run sees every plot of every node, and the matching files that were there when
watching started; it may tail thousands of log files. The state of all of them was
rewritten (and fsynced) every second while any changed, a cost that grew with the run.
These tests read the files back: a save appends the changed entries alone (artifacts, and
the positions of the log files that moved), a resumed watcher finds every entry, a log
file gone while nobody watched is delivered once and then forgotten, a line cut short is
skipped and never glued to the next, the journal is rewritten when it holds too many
lines, a save that failed is written whole by the next one, and the files of an earlier
version are read and replaced."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from watch_helpers import Collector, append, logs_only, wait_for

import otel_ai
from otel_ai.watch import Watcher
from otel_ai.watch.state import JOURNAL_FORMAT, JOURNAL_SLACK, WatchState, stored_key


def _entry(size: int, version: int = 1) -> dict[str, Any]:
    return {
        "size": size,
        "mtime_ns": 1_700_000_000_000_000_000 + size,
        "sha256": "ab" * 32,
        "version": version,
    }


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_resumed_watcher_appends_the_changed_artifacts_to_the_journal_and_rewrites_nothing(
    tmp_path: Path, monkeypatch: Any
) -> None:
    root = tmp_path / "experiment"
    for i in range(300):  # there before the run: remembered (baselines), not reported
        (root / f"node_{i:03d}").mkdir(parents=True)
        (root / f"node_{i:03d}" / "plot.png").write_bytes(b"old %d" % i)
    state_dir = tmp_path / "state"
    monkeypatch.setenv("OTEL_AI_DATA_DIR", str(tmp_path / "data"))
    with otel_ai.run("journal") as run:
        watcher = Watcher(run, [root], settle_s=0.2, upload=False, state_dir=state_dir).start()
        watcher.stop(5)
        (journal,) = state_dir.glob("*.artifacts.jsonl")
        before = journal.read_bytes()
        header, *entries = _lines(journal)
        assert header["format"] == JOURNAL_FORMAT
        assert len(entries) == 300
        watcher = Watcher(run, [root], settle_s=0.2, upload=False, state_dir=state_dir).start()
        (root / "node_007" / "plot.png").write_bytes(b"redrawn")
        (root / "new.png").write_bytes(b"new")
        wait_for(lambda: watcher.summary().artifacts_detected == 2)
        watcher.stop(5)
    after = journal.read_bytes()
    assert after.startswith(before)  # appended, not rewritten
    added = _lines(journal)[301:]
    assert sorted(item["k"] for item in added) == ["new.png", "node_007/plot.png"]
    assert all(item["v"]["version"] == 1 and item["v"]["sha256"] for item in added)
    assert not list(state_dir.glob("*.artifacts.json"))


def test_a_line_cut_short_is_skipped_and_the_journal_rewritten_before_the_next_append(tmp_path: Path) -> None:
    state = WatchState(tmp_path, "run", "/experiment")
    state.load_artifacts()
    state.save_artifacts({"a.png": _entry(1), "b.png": _entry(2)})
    with open(state.artifacts_path, "a", encoding="utf-8") as handle:
        handle.write('{"k":"c.png","v":{"si')  # the machine went down mid-line
    resumed = WatchState(tmp_path, "run", "/experiment")
    loaded = resumed.load_artifacts()
    assert sorted(loaded) == ["a.png", "b.png"]
    resumed.save_artifacts({"d.png": _entry(4)})
    header, *entries = _lines(resumed.artifacts_path)  # every line whole again
    assert {item["k"] for item in entries} == {"a.png", "b.png", "d.png"}
    assert WatchState(tmp_path, "run", "/experiment").load_artifacts()["d.png"] == _entry(4)


def test_the_journal_is_rewritten_when_it_holds_more_than_twice_its_entries(tmp_path: Path) -> None:
    state = WatchState(tmp_path, "run", "/experiment")
    state.load_artifacts()
    names = [f"plot_{i}.png" for i in range(10)]
    most_lines = 0
    for size in range(1, 201):  # every entry changes 200 times
        state.save_artifacts({name: _entry(size) for name in names})
        most_lines = max(most_lines, len(state.artifacts_path.read_text().splitlines()))
    assert most_lines <= 1 + 2 * len(names) + JOURNAL_SLACK + len(names)
    loaded = WatchState(tmp_path, "run", "/experiment").load_artifacts()
    assert loaded == {name: _entry(200) for name in names}


def test_a_save_that_failed_is_written_whole_by_the_next_one(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state = WatchState(state_dir, "run", "/experiment")
    state.load_artifacts()
    state.save_artifacts({"a.png": _entry(1)})
    blocked = state_dir.rename(tmp_path / "moved")
    state_dir.write_text("a file where the directory was")  # every write there fails
    try:
        state.save_artifacts({"b.png": _entry(2)})
        raise AssertionError("the save should have failed")
    except OSError:
        pass
    state_dir.unlink()
    blocked.rename(state_dir)
    state.save_artifacts({})  # nothing new: what failed is written all the same
    assert WatchState(state_dir, "run", "/experiment").load_artifacts() == {
        "a.png": _entry(1),
        "b.png": _entry(2),
    }


def test_the_state_file_of_an_earlier_version_is_read_and_replaced(tmp_path: Path) -> None:
    state = WatchState(tmp_path, "run", "/experiment")
    secret = "sk-proj-" + "Q" * 40
    legacy = {
        "format": 1,
        "root": "/experiment",
        "files": {"old.png": _entry(1), stored_key(f"{secret}.png"): _entry(2)},
    }
    state.artifacts.legacy_path.write_text(json.dumps(legacy), encoding="utf-8")
    assert sorted(state.load_artifacts()) == sorted(legacy["files"])  # type: ignore[arg-type]
    state.save_artifacts({"new.png": _entry(3)})
    assert not state.artifacts.legacy_path.exists()
    text = state.artifacts_path.read_text(encoding="utf-8")
    assert secret not in text
    assert sorted(WatchState(tmp_path, "run", "/experiment").load_artifacts()) == sorted(
        [*legacy["files"], "new.png"]  # type: ignore[list-item]
    )
    assert os.path.basename(state.artifacts_path).endswith(".artifacts.jsonl")


def test_a_save_appends_the_positions_of_the_log_files_that_moved_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_AI_RUN_ID", "positions")
    root = tmp_path / "exp"
    root.mkdir()
    state_dir = tmp_path / "state"
    sink = Collector()
    watcher = logs_only(root, sink, state_dir=state_dir)
    for i in range(200):
        append(root / f"node_{i:03d}.log", f"line {i}\n")
    wait_for(lambda: len(sink) == 200, what="200 lines")
    watcher.stop(5)
    (journal,) = state_dir.glob("*.logs.jsonl")
    before = journal.read_bytes()
    header, *entries = _lines(journal)
    assert header["format"] == JOURNAL_FORMAT
    latest = {item["k"]: item["v"] for item in entries}
    assert len(latest) == 200 and latest["node_007.log"]["offset"] == len("line 7\n")

    sink = Collector()
    watcher = logs_only(root, sink, state_dir=state_dir)
    append(root / "node_007.log", "more\n")
    wait_for(lambda: len(sink) == 1)
    watcher.stop(5)
    assert sink.texts() == ["more"]  # resumed: nothing repeated
    after = journal.read_bytes()
    assert after.startswith(before)  # appended, not rewritten
    added = _lines(journal)[len(entries) + 1 :]
    assert {item["k"] for item in added} == {"node_007.log"}
    assert added[-1]["v"]["offset"] == len("line 7\nmore\n")
    assert not list(state_dir.glob("*.logs.json"))


def test_a_log_file_gone_while_nobody_watched_is_delivered_once_and_forgotten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_AI_RUN_ID", "forgotten")
    root = tmp_path / "exp"
    root.mkdir()
    state_dir = tmp_path / "state"
    sink = Collector()
    watcher = logs_only(root, sink, state_dir=state_dir)
    append(root / "train.log", "epoch 0\n")
    append(root / "eval.log", "eval 0\n")
    wait_for(lambda: len(sink) == 2)
    watcher.stop(5)
    # while nobody watches: train.log gets a line, then is renamed to a name not tailed
    append(root / "train.log", "epoch 1\n")
    os.rename(root / "train.log", root / "train.old")

    for expected in (["epoch 1"], []):  # the second restart finds nothing to deliver again
        sink = Collector()
        watcher = logs_only(root, sink, state_dir=state_dir)
        append(root / "eval.log", "eval more\n")
        wait_for(lambda sink=sink: "eval more" in sink.texts())
        watcher.stop(5)
        assert sink.texts("train.log") == expected
        assert sink.texts("eval.log") == ["eval more"]
    (journal,) = state_dir.glob("*.logs.jsonl")
    saved = WatchState(state_dir, "forgotten", str(root)).load_logs()
    assert sorted(saved) == ["eval.log"]
    assert {"k": "train.log", "v": None} in _lines(journal)[1:]


def test_the_tailing_positions_of_an_earlier_version_are_read_and_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_AI_RUN_ID", "legacy-logs")
    root = tmp_path / "exp"
    root.mkdir()
    (root / "run.log").write_text("before the upgrade\n")
    state_dir = tmp_path / "state"
    info = os.stat(root / "run.log")
    legacy = WatchState(state_dir, "legacy-logs", str(root)).logs.legacy_path
    assert legacy.name.endswith(".logs.json")
    state_dir.mkdir()
    offset = len("before the upgrade\n")
    legacy.write_text(
        json.dumps(
            {
                "format": 1,
                "root": str(root),
                "files": {
                    "run.log": {
                        "dev": info.st_dev,
                        "ino": info.st_ino,
                        "offset": offset,
                        "fp": b"ade\n".hex(),
                    }
                },
            }
        )
    )
    append(root / "run.log", "after the upgrade\n")
    sink = Collector()
    watcher = logs_only(root, sink, state_dir=state_dir)
    wait_for(lambda: len(sink) == 1)
    watcher.stop(5)
    assert sink.texts() == ["after the upgrade"]  # resumed at the old file's position
    assert not legacy.exists()
    saved = WatchState(state_dir, "legacy-logs", str(root)).load_logs()
    assert saved["run.log"]["offset"] == offset + len("after the upgrade\n")
