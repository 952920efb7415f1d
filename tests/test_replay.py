"""``otel-ai replay``: embedded-default files to a collector, in order, once."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from otlp_receiver import OTLPReceiver

import otel_ai
import otel_ai.testing
from otel_ai import semconv
from otel_ai.cli import main
from otel_ai.config import resolve
from otel_ai.export.replay import MARK_SUFFIX, ReplayError, replay
from otel_ai.read import Telemetry, load_directory

ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ["OTEL_AI_DATA_DIR"])


def make_run(tag: str) -> None:
    with otel_ai.run(f"run-{tag}", gpu="A100") as run:
        with run.stage("1_initial_implementation") as stage:
            for i in range(3):
                with stage.node(f"n{i}", kind="draft") as node:
                    node.completed(is_buggy=i == 1, metric=math.nan if i == 2 else 0.5 + i)
        run.log(f"done {tag}", "warning")


def written() -> Telemetry:
    otel_ai.force_flush(5.0)
    return load_directory(data_dir())


def endpoint(receiver: OTLPReceiver, protocol: str) -> str:
    return receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint


def assert_same(receiver: OTLPReceiver, files: Telemetry) -> None:
    spans = receiver.spans()
    assert sorted((s.span_id, s.name, s.parent_span_id) for s in spans) == sorted(
        (s.span_id, s.name, s.parent_span_id) for s in files.spans
    )
    assert Counter(s.span_id for s in spans).most_common(1)[0][1] == 1, "each span once"
    assert {s.span_id: s.attributes for s in spans} == {
        s.span_id: s.attributes for s in files.spans
    } or _equal_with_nan(spans, files)
    assert sorted(r.attributes[semconv.EVENT_SEQ] for r in receiver.logs()) == sorted(
        r.attributes[semconv.EVENT_SEQ] for r in files.logs
    )
    assert len(receiver.metrics()) == len(files.metrics)
    assert {s.resource["ai.gpu.name"] for s in spans} == {"unknown"}


def _equal_with_nan(spans: list, files: Telemetry) -> bool:  # type: ignore[type-arg]
    mine = {s.span_id: s.attributes for s in files.spans}
    for span in spans:
        for key, value in span.attributes.items():
            other = mine[span.span_id][key]
            if isinstance(value, float) and math.isnan(value):
                assert isinstance(other, float) and math.isnan(other)
            else:
                assert value == other, key
    return True


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_replay_sends_every_file_once_and_marks_it(protocol: str, otlp_receiver: OTLPReceiver) -> None:
    make_run("a")
    make_run("b")
    files = written()
    assert files.spans and files.logs and files.metrics
    report = replay(data_dir(), resolve(), endpoint=endpoint(otlp_receiver, protocol), protocol=protocol)
    assert report.complete and report.files == 3
    assert report.items["traces"] == len(files.spans)
    assert report.items["logs"] == len(files.logs)
    assert_same(otlp_receiver, files)
    marks = sorted(p.name for p in data_dir().glob(f"*{MARK_SUFFIX}"))
    assert len(marks) == 3
    mark = json.loads((data_dir() / marks[0]).read_text())
    assert mark["offset"] > 0

    again = replay(data_dir(), resolve(), endpoint=endpoint(otlp_receiver, protocol), protocol=protocol)
    assert sum(again.requests.values()) == 0 and again.up_to_date == 3
    assert_same(otlp_receiver, files)


def test_only_what_was_appended_since_is_sent(otlp_receiver: OTLPReceiver) -> None:
    make_run("first")
    written()
    replay(data_dir(), resolve(), endpoint=otlp_receiver.http_endpoint)
    before = {s.span_id for s in otlp_receiver.spans()}
    make_run("second")  # the same process appends to the same files
    files = written()
    report = replay(data_dir(), resolve(), endpoint=otlp_receiver.http_endpoint)
    assert report.complete
    new = [s for s in files.spans if s.span_id not in before]
    assert new and report.items["traces"] == len(new)
    assert_same(otlp_receiver, files)


def test_force_sends_again(otlp_receiver: OTLPReceiver) -> None:
    make_run("f")
    files = written()
    replay(data_dir(), resolve(), endpoint=otlp_receiver.http_endpoint)
    replay(data_dir(), resolve(), endpoint=otlp_receiver.http_endpoint, force=True)
    assert len(otlp_receiver.spans()) == 2 * len(files.spans)


def test_collector_down_then_up_resumes_where_it_stopped(otlp_receiver: OTLPReceiver) -> None:
    make_run("down")
    files = written()
    otlp_receiver.mode = "unavailable"
    report = replay(data_dir(), resolve(), endpoint=otlp_receiver.http_endpoint, timeout=1.0)
    assert not report.complete and sum(report.requests.values()) == 0
    assert "503" in " ".join(report.errors.values())
    otlp_receiver.mode = "ok"
    report = replay(data_dir(), resolve(), endpoint=otlp_receiver.http_endpoint)
    assert report.complete
    assert_same(otlp_receiver, files)


def test_bad_and_unfinished_lines(otlp_receiver: OTLPReceiver) -> None:
    make_run("bad")
    files = written()
    otel_ai.testing.reset()
    traces = next(data_dir().glob("traces-*.jsonl"))
    lines = traces.read_bytes().splitlines(keepends=True)
    half = b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "ab'
    traces.write_bytes(lines[0] + b"not json at all\n" + b'{"other": 1}\n' + b"".join(lines[1:]) + half)
    report = replay(data_dir(), resolve(), endpoint=otlp_receiver.http_endpoint)
    assert report.complete
    assert report.skipped_lines == 2
    assert sorted(s.span_id for s in otlp_receiver.spans()) == sorted(s.span_id for s in files.spans)
    mark = json.loads(traces.with_name(traces.name + MARK_SUFFIX).read_text())
    assert mark["offset"] == traces.stat().st_size - len(half), "the unfinished line is not marked"
    with traces.open("ab") as handle:  # the writer finishes its line later: sent then
        handle.write(b'"}]}]}]}\n')
    report = replay(data_dir(), resolve(), endpoint=otlp_receiver.http_endpoint)
    assert report.requests["traces"] == 1 and report.skipped_lines == 0
    assert report.complete


def test_no_endpoint_and_no_files_are_clear_errors(tmp_path: Path) -> None:
    make_run("x")
    written()
    with pytest.raises(ReplayError, match="--endpoint"):
        replay(data_dir(), resolve())
    with pytest.raises(ReplayError, match="no such file"):
        replay(tmp_path / "nowhere", resolve(), endpoint="http://127.0.0.1:9")


def test_cli_in_process_and_as_a_real_process(
    otlp_receiver: OTLPReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    make_run("cli")
    files = written()
    otel_ai.testing.reset()
    assert (
        main(["replay", str(data_dir()), "--endpoint", otlp_receiver.grpc_endpoint, "--protocol", "grpc"])
        == 0
    )
    assert "replayed" in capsys.readouterr().out
    assert len(otlp_receiver.spans()) == len(files.spans)
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.http_endpoint}
    done = subprocess.run(
        [sys.executable, "-m", "otel_ai", "replay"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "3 already delivered" in done.stdout
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "otel_ai",
            "replay",
            "--force",
            "--timeout",
            "1",
            "--endpoint",
            "http://127.0.0.1:9",
        ],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 1
    assert "not fully delivered" in done.stdout


def test_replay_redacts_what_older_files_kept(otlp_receiver: OTLPReceiver) -> None:
    """A file written by an older otel_ai (or another tool) with a secret in it: replay
    redacts every string before sending, so the secret does not leave the machine."""
    make_run("old")
    written()
    token = "sk-proj-" + "Q1w2E3r4T5" * 4
    (path,) = sorted(data_dir().glob("logs-*.jsonl"))
    text = path.read_text()
    assert "done old" in text
    path.write_text(text.replace("done old", f"done old {token}"))
    report = replay(data_dir(), resolve(), endpoint=otlp_receiver.http_endpoint, protocol="http/protobuf")
    assert report.complete
    received = repr([(r.body, r.attributes) for r in otlp_receiver.logs()])
    assert otlp_receiver.logs() and token not in received and "[REDACTED]" in received
