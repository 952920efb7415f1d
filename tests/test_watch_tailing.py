"""Lossless log tailing: rotation both ways, truncation, partial lines, a million lines
written while tailing, restarts, deletion, lost events. Lines are collected by a real
line sink (what the tailer hands over); tests/test_watch_wire.py checks the same path
through otel_ai to an OTLP receiver."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from watch_helpers import Collector, append, logs_only, wait_for

from otel_ai.config import ConfigurationError
from otel_ai.watch import Line, PathPatterns, TailSource, Watcher, detect_level
from otel_ai.watch.tailer import DEFAULT_MAX_LINE_BYTES


def test_lines_of_files_created_while_watching_arrive_in_order(tmp_path: Path) -> None:
    sink = Collector()
    watcher = logs_only(tmp_path, sink)
    (tmp_path / "logs" / "0-run" / "stage_1").mkdir(parents=True)
    append(tmp_path / "train.log", "".join(f"train {i}\n" for i in range(50)))
    append(tmp_path / "logs" / "0-run" / "stage_1" / "node.txt", "node says hi\r\n")
    append(tmp_path / "notes.txt", "not a log: not under logs/\n")
    wait_for(lambda: len(sink) == 51, what="51 lines")
    summary = watcher.stop(5)
    assert sink.texts("train.log") == [f"train {i}" for i in range(50)]
    node = [d for r, d, _c, _p in sink.records if r == "logs/0-run/stage_1/node.txt"]
    assert node == [b"node says hi\r"]  # the sink strips the \r of CRLF
    assert summary.lines == 51 and summary.files_tailed == 2 and summary.complete


def test_rotation_by_rename_loses_nothing_even_from_a_writer_still_holding_the_old_file(
    tmp_path: Path,
) -> None:
    sink = Collector()
    watcher = logs_only(tmp_path, sink)
    log = tmp_path / "app.log"
    old = open(log, "a", buffering=1)  # noqa: SIM115 - the writer keeps it open across the rename
    old.writelines(f"line {i}\n" for i in range(100))
    wait_for(lambda: len(sink) >= 1)
    os.rename(log, tmp_path / "app.log.1")
    old.writelines(f"line {i}\n" for i in range(100, 150))  # still to the old (renamed) file
    with open(log, "a", buffering=1) as new:
        new.writelines(f"line {i}\n" for i in range(150, 300))
    old.write("line 300\n")
    old.close()
    wait_for(lambda: len(sink) == 301, what="301 lines")
    summary = watcher.stop(5)
    texts = sink.texts()
    assert sorted(texts, key=lambda t: int(t.split()[1])) == [f"line {i}" for i in range(301)]
    old_file = [t for t in texts if int(t.split()[1]) < 150 or t == "line 300"]
    assert old_file == [f"line {i}" for i in range(150)] + ["line 300"]
    # (whether the rename is counted in summary.rotations depends on which file event
    # arrives first; what matters, every line once and in order per file, holds either way)
    assert summary.complete


def test_a_tailed_file_renamed_to_another_tailed_name_keeps_its_position(tmp_path: Path) -> None:
    sink = Collector()
    watcher = logs_only(tmp_path, sink)
    append(tmp_path / "a.log", "one\ntwo\n")
    wait_for(lambda: len(sink) == 2)
    os.rename(tmp_path / "a.log", tmp_path / "b.log")
    append(tmp_path / "b.log", "three\n")
    wait_for(lambda: len(sink) == 3)
    watcher.stop(5)
    assert [(r, d) for r, d, _, _ in sink.records] == [
        ("a.log", b"one"),
        ("a.log", b"two"),
        ("b.log", b"three"),
    ]


def test_copy_truncate_restarts_at_the_beginning(tmp_path: Path) -> None:
    sink = Collector()
    watcher = logs_only(tmp_path, sink)
    log = tmp_path / "train.log"
    with open(log, "a", buffering=1) as writer:  # O_APPEND, as logging's FileHandler opens
        writer.writelines(f"before {i}\n" for i in range(100))
        wait_for(lambda: len(sink) == 100)
        shutil.copy(log, tmp_path / "train.log.1")
        os.truncate(log, 0)
        writer.writelines(f"after {i}\n" for i in range(30))
        wait_for(lambda: len(sink) == 130, what="130 lines")
    summary = watcher.stop(5)
    assert sink.texts() == [f"before {i}" for i in range(100)] + [f"after {i}" for i in range(30)]
    assert summary.rotations == 1


def test_partial_lines_wait_for_their_newline_or_the_flush_timeout(tmp_path: Path) -> None:
    sink = Collector()
    watcher = logs_only(tmp_path, sink, flush_timeout_s=1.5)
    log = tmp_path / "p.log"
    append(log, "abc")
    time.sleep(0.3)
    assert len(sink) == 0
    append(log, "def\nxyz")
    wait_for(lambda: len(sink) == 1)
    assert sink.records[0][1:] == (b"abcdef", 0, False)
    wait_for(lambda: len(sink) == 2, timeout=5, what="the partial line after its timeout")
    assert sink.records[1][1:] == (b"xyz", 0, True)
    append(log, "last words, no newline")
    watcher.stop(5)  # the final sweep delivers what a dying process wrote last
    assert sink.records[2][1:] == (b"last words, no newline", 0, True)


def test_a_huge_line_keeps_its_head_and_counts_the_rest(tmp_path: Path) -> None:
    sink = Collector()
    watcher = logs_only(tmp_path, sink)
    huge = b"x" * (3 * DEFAULT_MAX_LINE_BYTES + 7)
    with open(tmp_path / "big.log", "ab") as handle:
        handle.write(b"before\n")
        for start in range(0, len(huge), 10_000):  # arrives in pieces, across reads
            handle.write(huge[start : start + 10_000])
            handle.flush()
        handle.write(b"\nafter\n")
    wait_for(lambda: len(sink) == 3)
    summary = watcher.stop(5)
    (_, first, *_), (_, data, cut, partial), (_, last, *_) = sink.records
    assert (first, last) == (b"before", b"after")
    assert len(data) < DEFAULT_MAX_LINE_BYTES and data == huge[: len(data)]
    assert len(data) + cut == len(huge) and not partial
    assert summary.lines_truncated == 1


def test_non_utf8_bytes_are_delivered_as_they_are(tmp_path: Path) -> None:
    sink = Collector()
    watcher = logs_only(tmp_path, sink)
    append(tmp_path / "bin.log", b"caf\xe9 \xff\xfe\x00 ok\nnext\n")
    wait_for(lambda: len(sink) == 2)
    watcher.stop(5)
    assert sink.records[0][1] == b"caf\xe9 \xff\xfe\x00 ok"  # decoding (with replacement) is the sink's


def test_a_million_lines_written_while_tailing_arrive_once_each_in_order(tmp_path: Path) -> None:
    total = 1_000_000

    class Checking:
        """Checks each line as it arrives instead of keeping a million of them."""

        def __init__(self) -> None:
            self.count = 0
            self.wrong: list[tuple[int, bytes]] = []

        def room(self) -> int:
            return 1 << 30

        def deliver(self, source: TailSource, lines: Sequence[Line]) -> None:
            n = self.count
            for line in lines:
                if line.data != b"line %07d" % n and len(self.wrong) < 10:
                    self.wrong.append((n, line.data))
                n += 1
            self.count = n

    sink = Checking()
    watcher = Watcher(None, [tmp_path], line_sink=sink, artifact_patterns=()).start()
    log = tmp_path / "flood.log"

    def write() -> None:
        with open(log, "ab", buffering=0) as handle:
            for start in range(0, total, 20_000):
                block = b"".join(b"line %07d\n" % i for i in range(start, start + 20_000))
                # in pieces that cut lines across writes
                handle.writelines(block[piece : piece + 65_521] for piece in range(0, len(block), 65_521))

    writer = threading.Thread(target=write)
    writer.start()
    writer.join()
    summary = watcher.stop(30)
    assert sink.wrong == []
    assert sink.count == total
    assert summary.lines == total and summary.bytes_undelivered == 0 and summary.complete


def test_deleted_files_deliver_what_was_written_before(tmp_path: Path) -> None:
    sink = Collector()
    watcher = logs_only(tmp_path, sink)
    log = tmp_path / "short-lived.log"
    append(log, "first\n")
    wait_for(lambda: len(sink) == 1)
    append(log, "second\nthird\n")
    log.unlink()
    wait_for(lambda: len(sink) == 3)
    watcher.stop(5)
    assert sink.texts() == ["first", "second", "third"]


def test_existing_files_start_at_their_end_unless_told_otherwise(tmp_path: Path) -> None:
    log = tmp_path / "old.log"
    append(log, "old 1\nold 2\nhalf-")
    sink = Collector()
    watcher = logs_only(tmp_path, sink)
    append(log, "written\nnew 1\n")
    wait_for(lambda: len(sink) == 2)
    watcher.stop(5)
    assert sink.texts() == ["half-written", "new 1"]  # the line in progress at start, whole

    sink = Collector()
    watcher = logs_only(tmp_path, sink, from_beginning=True, state_dir=tmp_path / "elsewhere")
    wait_for(lambda: len(sink) == 4)
    watcher.stop(5)
    assert sink.texts() == ["old 1", "old 2", "half-written", "new 1"]


def test_a_restarted_watcher_neither_repeats_nor_skips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_AI_RUN_ID", "resume-1")
    root = tmp_path / "exp"
    root.mkdir()
    sink = Collector()
    watcher = logs_only(root, sink)
    append(root / "a.log", "".join(f"a {i}\n" for i in range(100)))
    append(root / "b.log", "b 0\nb 1\n")
    append(root / "c.log", "".join(f"c {i}\n" for i in range(10)))
    wait_for(lambda: len(sink) == 112)
    watcher.stop(5)
    # while nobody watches: more lines, a new file, b.log rotated, c.log truncated and rewritten longer
    append(root / "a.log", "".join(f"a {i}\n" for i in range(100, 150)) + "a partial")
    append(root / "b.log", "b 2\n")
    os.rename(root / "b.log", root / "b.log.1")
    append(root / "b.log", "b 3\n")
    append(root / "new.log", "new 0\n")
    (root / "c.log").write_text("".join(f"C {i}\n" for i in range(20)))

    sink2 = Collector()
    watcher = logs_only(root, sink2, flush_timeout_s=30)
    wait_for(lambda: len(sink2) == 73, what="73 lines")
    append(root / "a.log", " completed\n")
    wait_for(lambda: len(sink2) == 74)
    watcher.stop(5)
    assert sink2.texts("a.log") == [f"a {i}" for i in range(100, 150)] + ["a partial completed"]
    assert sink2.texts("b.log") == ["b 2", "b 3"]
    assert sink2.texts("new.log") == ["new 0"]
    assert sink2.texts("c.log") == [f"C {i}" for i in range(20)]


def test_a_sink_that_cannot_keep_up_costs_latency_not_lines(tmp_path: Path) -> None:
    class Slow(Collector):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def room(self) -> int:
            self.calls += 1
            return 0 if self.calls % 3 else 7  # full two times out of three, then 7 lines

    sink = Slow()
    watcher = logs_only(tmp_path, sink)
    append(tmp_path / "x.log", "".join(f"x {i}\n" for i in range(500)))
    wait_for(lambda: len(sink) == 500, timeout=20)
    watcher.stop(5)
    assert sink.texts() == [f"x {i}" for i in range(500)]


def test_an_overflowing_event_inbox_is_replaced_by_a_rescan(tmp_path: Path) -> None:
    class Held(Collector):
        """Full until released: the watcher waits for it while the files' events pile up
        (however fast this machine is, the inbox overflows)."""

        def __init__(self) -> None:
            super().__init__()
            self.released = threading.Event()

        def room(self) -> int:
            return super().room() if self.released.is_set() else 0

    sink = Held()
    watcher = logs_only(tmp_path, sink, inbox_limit=16)
    append(tmp_path / "first.log", "first\n")  # the watcher now waits for room
    for i in range(200):
        append(tmp_path / f"f{i:03d}.log", f"file {i}\n")
    wait_for(lambda: watcher._inbox.overflowed > 0, what="the inbox to overflow")
    sink.released.set()
    wait_for(lambda: len(sink) == 201, what="201 lines")
    summary = watcher.stop(5)
    assert sorted(sink.texts()) == sorted(["first"] + [f"file {i}" for i in range(200)])
    assert summary.events_overflowed > 0


def test_polling_observer_works_the_same(tmp_path: Path) -> None:
    sink = Collector()
    watcher = logs_only(tmp_path, sink, polling=True, poll_interval_s=0.1)
    assert watcher.observer_kind == "polling"
    (tmp_path / "deep" / "er").mkdir(parents=True)
    append(tmp_path / "deep" / "er" / "x.log", "polled\n")
    wait_for(lambda: len(sink) == 1)
    watcher.stop(5)
    assert sink.texts() == ["polled"]


def test_a_root_that_appears_later_is_watched_from_then(tmp_path: Path) -> None:
    root = tmp_path / "experiments"
    sink = Collector()
    watcher = logs_only(root, sink, poll_interval_s=0.1)
    (root / "run").mkdir(parents=True)
    append(root / "run" / "x.log", "early\n")
    wait_for(lambda: len(sink) == 1)
    append(root / "run" / "x.log", "late\n")
    wait_for(lambda: len(sink) == 2)
    watcher.stop(5)
    assert sink.texts() == ["early", "late"]


def test_log_files_resolving_outside_the_root_are_not_tailed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.log"
    append(outside, "secret\n")
    root = tmp_path / "exp"
    root.mkdir()
    (root / "evil.log").symlink_to(outside)
    sink = Collector()
    watcher = logs_only(root, sink, from_beginning=True)
    append(root / "fine.log", "fine\n")
    wait_for(lambda: len(sink) == 1)
    summary = watcher.stop(5)
    assert sink.texts() == ["fine"]
    assert summary.paths_refused == 1


def test_patterns_follow_glob_rules() -> None:
    logs = PathPatterns(["**/*.log", "**/logs/**/*.txt"])
    assert logs.match("a.log") and logs.match("x/y/a.LOG")
    assert logs.match("logs/0-run/stage_1/out.txt") and logs.match("exp/1/logs/x.txt")
    assert not logs.match("notes.txt") and not logs.match("a.log.1") and not logs.match("logsx/a.txt")
    plots = PathPatterns(["*plot*.pdf", "figs/?.png", "data/[!t]*.npy"])
    assert plots.match("deep/loss_plot_1.pdf") and plots.match("figs/a.png")
    assert not plots.match("figs/ab.png") and plots.match("data/x.npy") and not plots.match("data/t.npy")


_PATTERN_TEXT = st.text(alphabet="ab.Ks/*?[]!-^&~|\u017f\u212a", min_size=1, max_size=12).filter(
    lambda text: text.strip().replace("\\", "/").lstrip("./")
)
_PATH_TEXT = st.text(alphabet="abAB.kKsS/\u017f\u212a\u00e9", min_size=1, max_size=16)


@settings(max_examples=400, deadline=None)
@given(patterns=st.lists(_PATTERN_TEXT, min_size=1, max_size=4), paths=st.lists(_PATH_TEXT, max_size=8))
def test_the_quick_refusal_of_a_path_never_differs_from_the_patterns_own_answer(
    patterns: list[str], paths: list[str]
) -> None:
    """A path refused by its ending alone is one the full expression refuses too, in any
    case, with characters that fold to ASCII ones (the long s, the Kelvin sign) or not;
    a pattern re cannot take (a range such as ``[b-a]``) is a configuration error."""
    try:
        quick = PathPatterns(patterns)
    except ConfigurationError as exc:
        assert "is not valid" in str(exc)
        return
    for path in [*paths, "x.log", "A/B.LOG", "s.\u017fvg"]:
        assert quick.match(path) == (quick._regex is not None and quick._regex.match(path) is not None), path


def test_a_tree_of_unwanted_files_is_refused_by_its_endings() -> None:
    from otel_ai.watch.patterns import DEFAULT_ARTIFACT_PATTERNS, DEFAULT_LOG_PATTERNS, ArtifactRules

    rules = ArtifactRules(DEFAULT_ARTIFACT_PATTERNS)
    logs = PathPatterns(DEFAULT_LOG_PATTERNS)
    assert rules.type_of("exp/1/figures/Loss_Curve.PNG") == "plot"
    assert (
        rules.type_of("a/b/c/best_solution_3.py") == "code" and rules.type_of("a/b/c/solution_3.py") is None
    )
    assert logs.match("x/logs/0-run/stage_1/out.TXT") and not logs.match("x/notes/out.txt")
    assert rules._any._tails is not None and logs._tails is not None  # the quick refusal is on
    assert PathPatterns(["**/.git/**"])._tails is None  # nothing to go by: the expression decides


@pytest.mark.parametrize(
    ("pattern", "matches", "refuses"),
    [
        ("[[]", ["["], ["[[]", "a"]),
        ("[!]]", ["a", "!"], ["]"]),
        ("[!]", ["[!]"], ["!"]),
        ("x[a&&b]", ["x&", "xa"], ["x&&"]),
        ("[^a]", ["b", "^"], ["a"]),
        ("[a^]", ["^", "a"], ["b"]),
    ],
)
def test_a_character_class_means_what_it_means_in_bash(
    pattern: str, matches: list[str], refuses: list[str]
) -> None:
    patterns = PathPatterns([pattern])  # no FutureWarning from re (the tests make warnings errors)
    assert all(patterns.match(path) for path in matches) and not any(patterns.match(path) for path in refuses)


def test_a_pattern_that_is_no_glob_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match=r"path pattern '\[z-a\]\.log' is not valid"):
        PathPatterns(["[z-a].log"])


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("2026-11-29 10:00:01,123 - ERROR - CUDA out of memory", "error"),
        ("WARNING:root:learning rate too high", "warning"),
        ("[debug] batch 3", "debug"),
        ('{"level": "warn", "msg": "slow"}', "warning"),
        ("level=error msg=boom", "error"),
        ("Traceback (most recent call last):", "error"),
        ('  File "runfile.py", line 12, in <module>', "error"),
        ("ValueError: shapes (3,) and (4,) not aligned", "error"),
        ("torch.cuda.OutOfMemoryError: CUDA out of memory.", "error"),
        ("/x/y.py:3: UserWarning: deprecated thing", "warning"),
        ("CRITICAL: disk full", "critical"),
        ("epoch 3 val_error=0.31 train_loss 0.2", "info"),
        ("0 errors, 2 failed nodes retried", "info"),
        ("Epoch 1/10 | INFO | loss 0.3", "info"),
        ("", "info"),
    ],
)
def test_severity_is_read_from_the_text(line: str, level: str) -> None:
    assert detect_level(line) == level


def test_nothing_is_watched_when_telemetry_is_disabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    sink = Collector()
    watcher = logs_only(tmp_path, sink)
    append(tmp_path / "x.log", "nobody listens\n")
    time.sleep(0.3)
    assert watcher.stop(1).lines == 0 and len(sink) == 0
