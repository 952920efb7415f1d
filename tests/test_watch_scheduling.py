"""What the watcher asks the kernel to watch: directories left out directly under a root
(a ``.venv``, ``node_modules``, a Python environment) get no inotify watch at all, and
directories that appear, move or go there during the run are followed. The watches are
counted from the kernel's own record of this process (``/proc/self/fdinfo``)."""

from __future__ import annotations

import errno
import os
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from watch_helpers import Collector, append, logs_only, wait_for

from otel_ai.watch import Line, TailSource, observing

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify and /proc: Linux")


def inotify_watches() -> int:
    """The inotify watches this process holds, as the kernel lists them."""
    count = 0
    for fd in os.listdir("/proc/self/fdinfo"):
        try:
            with open(f"/proc/self/fdinfo/{fd}") as info:
                count += sum(1 for line in info if line.startswith("inotify wd:"))
        except OSError:
            continue
    return count


def tree(top: Path, directories: int) -> None:
    for index in range(directories):
        (top / f"pkg{index}" / "sub").mkdir(parents=True, exist_ok=True)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A working directory as a user's: the experiment's directories next to a virtual
    environment, node modules and a Python environment not named ``.venv``."""
    root = tmp_path / "work"
    tree(root / ".venv", 20)
    tree(root / "node_modules", 20)
    tree(root / "env", 20)
    (root / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (root / "experiments" / "a" / "b").mkdir(parents=True)
    (root / "logs").mkdir()
    return root


def test_directories_left_out_under_a_root_get_no_watch_and_new_ones_are_followed(checkout: Path) -> None:
    root = checkout
    before = inotify_watches()
    sink = Collector()
    watcher = logs_only(root, sink)
    try:
        # the root itself, experiments, experiments/a, experiments/a/b, logs: not one of the
        # 123 directories of .venv, node_modules and env
        assert inotify_watches() - before == 5
        append(root / "top.log", "in the root\n")
        append(root / "experiments" / "a" / "b" / "train.log", "deep in the experiment\n")
        append(root / ".venv" / "pkg0" / "sub" / "pip.log", "left out\n")
        wait_for(lambda: len(sink) == 2, what="2 lines")

        # a directory made during the run, nested at once: watched, so a file made in it
        # later arrives while the run goes on (nothing rescans the tree until the end)
        (root / "runs" / "deep" / "er").mkdir(parents=True)
        append(root / "runs" / "deep" / "er" / "first.log", "first\n")
        wait_for(lambda: "first" in sink.texts(), what="the first line in a new directory")
        wait_for(lambda: inotify_watches() - before == 8, what="3 more watches")
        append(root / "runs" / "deep" / "er" / "second.log", "second\n")
        wait_for(lambda: "second" in sink.texts(), what="a new file in the new directory")

        # renamed: followed under its new name, the old watch given back
        os.rename(root / "experiments", root / "renamed")
        wait_for(lambda: str(root / "renamed") in watcher._watches.tops, what="the renamed directory watched")
        append(root / "renamed" / "a" / "b" / "after.log", "after the rename\n")
        wait_for(lambda: "after the rename" in sink.texts(), what="a line under the new name")
        assert str(root / "experiments") not in watcher._watches.tops
        wait_for(lambda: inotify_watches() - before == 8, what="as many watches as directories")

        # removed: its watches go with it
        shutil.rmtree(root / "runs")
        wait_for(lambda: inotify_watches() - before == 5, what="the removed directory's watches gone")
    finally:
        summary = watcher.stop(5)
    assert sorted(sink.records) == sorted(
        [
            ("top.log", b"in the root", 0, False),
            ("experiments/a/b/train.log", b"deep in the experiment", 0, False),
            ("runs/deep/er/first.log", b"first", 0, False),
            ("runs/deep/er/second.log", b"second", 0, False),
            ("renamed/a/b/after.log", b"after the rename", 0, False),
        ]
    )
    assert summary.complete
    assert inotify_watches() == before


def test_a_root_with_nothing_left_out_directly_under_it_is_watched_whole(tmp_path: Path) -> None:
    root = tmp_path / "work"
    tree(root / "experiments", 3)
    (root / "experiments" / ".venv" / "lib").mkdir(parents=True)  # deeper down: watched, ignored
    before = inotify_watches()
    sink = Collector()
    watcher = logs_only(root, sink)
    try:
        assert inotify_watches() - before == 1 + 1 + 3 * 2 + 2
        assert not watcher._watches.split_roots
        append(root / "experiments" / ".venv" / "lib" / "pip.log", "ignored\n")
        append(root / "experiments" / "pkg2" / "sub" / "x.log", "watched\n")
        wait_for(lambda: len(sink) == 1)
    finally:
        watcher.stop(5)
    assert sink.texts() == ["watched"]


def test_past_the_bound_of_separate_watches_the_root_is_watched_whole(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(observing, "MAX_SPLIT", 1)  # experiments and logs: two to keep
    before = inotify_watches()
    sink = Collector()
    watcher = logs_only(checkout, sink)
    try:
        assert inotify_watches() - before == 5 + 3 * 41
        append(checkout / "logs" / "x.log", "still tailed\n")
        wait_for(lambda: len(sink) == 1)
    finally:
        watcher.stop(5)
    assert sink.texts() == ["still tailed"]


def test_the_polling_observer_leaves_them_out_too(checkout: Path) -> None:
    sink = Collector()
    watcher = logs_only(checkout, sink, polling=True, poll_interval_s=0.1)
    try:
        assert watcher.observer_kind == "polling"
        assert set(watcher._watches.tops) == {str(checkout / "experiments"), str(checkout / "logs")}
        (checkout / "late" / "er").mkdir(parents=True)
        append(checkout / "late" / "er" / "x.log", "polled\n")
        append(checkout / "experiments" / "a" / "y.log", "polled too\n")
        wait_for(lambda: len(sink) == 2)
        wait_for(lambda: str(checkout / "late") in watcher._watches.tops, what="the new directory polled")
    finally:
        watcher.stop(5)
    assert sorted(sink.texts()) == ["polled", "polled too"]


def test_a_directory_whose_event_was_lost_in_an_overflow_is_watched_after_the_rescan(checkout: Path) -> None:
    class Stuck(Collector):
        """Its first delivery blocks the watcher's thread until released: meanwhile the
        file events fill the inbox and the rest are dropped for a rescan."""

        def __init__(self) -> None:
            super().__init__()
            self.released = threading.Event()

        def deliver(self, source: TailSource, lines: Sequence[Line]) -> None:
            self.released.wait(30)
            super().deliver(source, lines)

    sink = Stuck()
    watcher = logs_only(checkout, sink, inbox_limit=16)
    try:
        append(checkout / "first.log", "first\n")  # the watcher's thread now waits in the sink
        for i in range(100):
            append(checkout / f"f{i:03d}.log", f"file {i}\n")
        wait_for(lambda: watcher._inbox.overflowed > 0, what="the inbox to overflow")
        overflowed = watcher._inbox.overflowed
        (checkout / "late").mkdir()  # its event finds no room in the inbox either
        wait_for(lambda: watcher._inbox.overflowed > overflowed, what="the directory's event dropped")
        sink.released.set()
        wait_for(lambda: len(sink) == 101, what="101 lines")
        wait_for(lambda: str(checkout / "late") in watcher._watches.tops, what="the new directory watched")
        append(checkout / "late" / "made.log", "made after the rescan\n")
        wait_for(lambda: "made after the rescan" in sink.texts(), what="its line before the end")
    finally:
        sink.released.set()
        watcher.stop(5)


@pytest.mark.parametrize("room", [1, 0])
def test_a_directory_the_kernel_refuses_to_watch_during_the_run_is_polled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, room: int
) -> None:
    """Past the inotify limit (fs.inotify.max_user_watches), watchdog only logs a new
    directory it cannot watch and leaves it unwatched: it is polled instead; past the
    bound of polled directories its files are read when the watcher stops."""
    from watchdog.observers import inotify_c

    add_callback = inotify_c.InotifyFD.add_callback

    def limited(self: object, path: bytes, *args: object, **kwargs: object) -> object:
        if os.path.basename(path) == b"refused":
            raise OSError(errno.ENOSPC, "No space left on device")  # what the kernel says at the limit
        return add_callback(self, path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(inotify_c.InotifyFD, "add_callback", limited)
    monkeypatch.setattr(observing, "MAX_POLLED_REFUSALS", room)
    root = tmp_path / "work"
    (root / "experiments").mkdir(parents=True)
    sink = Collector()
    watcher = logs_only(root, sink, poll_interval_s=0.1)
    try:
        (root / "experiments" / "refused").mkdir()
        watches = watcher._watches
        wait_for(lambda: watches.polled_refusals + watches.unwatched == 1, what="the refusal taken")
        append(root / "experiments" / "refused" / "x.log", "past the limit\n")
        if room:
            wait_for(lambda: len(sink) == 1, what="its line before the end")
        else:
            time.sleep(0.5)
            assert len(sink) == 0  # nothing watches it: the final sweep reads it
    finally:
        summary = watcher.stop(5)
    assert sink.texts() == ["past the limit"] and summary.complete
    assert (watches.polled_refusals, watches.unwatched) == (room, 1 - room)
