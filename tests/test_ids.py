"""Trace and span ids come from the operating system, never from Python's `random`, which
experiments seed: two seeded runs share no id, in every process otel_ai configures."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry.sdk._configuration import _import_id_generator
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from otlp_receiver import OTLPReceiver

import otel_ai
from otel_ai.config import ConfigurationError
from otel_ai.export.ids import OsRandomIdGenerator
from otel_ai.export.providers import get_pipeline
from otel_ai.read import SpanRecord, load_directory

OTEL_AI = [sys.executable, "-m", "otel_ai"]

# Seeds `random` as experiments do, then makes spans: our run and stage, a plain-API span,
# and spans in process-pool workers (fork and spawn) that seed `random` again.
SEEDED = textwrap.dedent(
    """
    import concurrent.futures, multiprocessing, random, sys
    import otel_ai
    from opentelemetry import trace

    def work(method):
        random.seed(0)
        otel_ai.configure()  # a spawned worker of a process that is not wrapped starts bare
        with trace.get_tracer("experiment").start_as_current_span("task " + method):
            pass
        otel_ai.force_flush()  # without `otel-ai run`, nothing flushes a pool worker for us
        return method

    if __name__ == "__main__":
        random.seed(0)
        with otel_ai.run() as run:
            with run.stage("1_initial_implementation") as stage:
                with trace.get_tracer("experiment").start_as_current_span("plain"):
                    pass
                for method in ("fork", "spawn"):
                    context = multiprocessing.get_context(method)
                    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                        assert list(pool.map(work, [method])) == [method]
    """
)
CHILD_SPANS = {"ai.stage 1_initial_implementation", "plain", "task fork", "task spawn"}


def clean_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "TRACEPARENT", "TRACESTATE", "PYTEST_"))
    }
    env["OTEL_AI_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def run_script(tmp_path: Path, name: str, *, wrapped: bool, **env: str) -> None:
    script = tmp_path / "seeded.py"
    script.write_text(SEEDED)
    command = [sys.executable, str(script)]
    if wrapped:
        command = [*OTEL_AI, "run", "--no-status", "--no-watch", "--run-id", name, "--", *command]
    result = subprocess.run(
        command,
        cwd=tmp_path,
        env=clean_env(tmp_path / name, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def by_name(spans: list[SpanRecord]) -> dict[str, SpanRecord]:
    named = {s.name: s for s in spans if s.name in CHILD_SPANS | {"ai.run"}}
    assert set(named) == CHILD_SPANS | {"ai.run"}, sorted(s.name for s in spans)
    return named


def shared_ids(first: list[SpanRecord], second: list[SpanRecord]) -> tuple[set[str], set[str]]:
    return (
        {s.trace_id for s in first} & {s.trace_id for s in second},
        {s.span_id for s in first} & {s.span_id for s in second},
    )


# ------------------------------------------------------------------------------ the generator
def test_seeding_random_does_not_change_the_id_sequence() -> None:
    def ids(generator: object) -> list[int]:
        random.seed(0)
        return [generator.generate_trace_id() for _ in range(5)] + [
            generator.generate_span_id() for _ in range(5)
        ]  # type: ignore[attr-defined]

    sdk_default = RandomIdGenerator()
    assert ids(sdk_default) == ids(sdk_default), "the SDK's default repeats itself after random.seed"
    ours = OsRandomIdGenerator()
    first, second = ids(ours), ids(ours)
    assert not set(first) & set(second)
    assert all(0 < i < 1 << 128 for i in first[:5]) and all(0 < i < 1 << 64 for i in first[5:])
    assert ours.is_trace_id_random()


def test_the_pipeline_uses_it_and_an_explicit_choice_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(get_pipeline().tracer_provider.id_generator, OsRandomIdGenerator)  # type: ignore[union-attr]
    otel_ai.testing.reset()
    monkeypatch.setenv("OTEL_PYTHON_ID_GENERATOR", "random")
    assert type(get_pipeline().tracer_provider.id_generator) is RandomIdGenerator  # type: ignore[union-attr]
    otel_ai.testing.reset()
    monkeypatch.setenv("OTEL_PYTHON_ID_GENERATOR", "otel_ai")
    assert isinstance(get_pipeline().tracer_provider.id_generator, OsRandomIdGenerator)  # type: ignore[union-attr]
    otel_ai.testing.reset()
    monkeypatch.setenv("OTEL_PYTHON_ID_GENERATOR", "no-such-generator")
    with pytest.raises(
        ConfigurationError, match="OTEL_PYTHON_ID_GENERATOR='no-such-generator'.*otel_ai.*random"
    ):
        otel_ai.configure()


def test_opentelemetry_instrument_finds_it_by_name() -> None:
    """The SDK's configurator (opentelemetry-instrument with a distro) loads
    OTEL_PYTHON_ID_GENERATOR through the same function."""
    assert isinstance(_import_id_generator("otel_ai"), OsRandomIdGenerator)


# ------------------------------------------------------------------------------ real runs
def test_two_seeded_runs_of_the_front_door_share_no_id(tmp_path: Path) -> None:
    """``otel_ai.run()`` in the process itself, fork and spawn workers; embedded-default files."""
    runs = []
    for name in ("first", "second"):
        run_script(tmp_path, name, wrapped=False)
        runs.append(load_directory(tmp_path / name).spans)
    for spans in runs:
        named = by_name(spans)
        assert {
            named["task fork"].resource["process.pid"],
            named["task spawn"].resource["process.pid"],
        }.isdisjoint({named["ai.run"].resource["process.pid"]})
    shared_traces, shared_spans = shared_ids(*runs)
    assert not shared_traces and not shared_spans


def test_an_explicit_random_generator_is_honoured_and_repeats(tmp_path: Path) -> None:
    """The same two runs with OTEL_PYTHON_ID_GENERATOR=random: what the test above guards
    against happens (so that test can fail), and the user's choice reaches every process."""
    runs = []
    for name in ("first", "second"):
        run_script(tmp_path, name, wrapped=False, OTEL_PYTHON_ID_GENERATOR="random")
        runs.append(by_name(load_directory(tmp_path / name).spans))
    first, second = runs
    assert first["ai.run"].trace_id == second["ai.run"].trace_id
    for name in CHILD_SPANS:
        assert first[name].span_id == second[name].span_id, name


def test_two_seeded_runs_under_otel_ai_run_share_no_id(tmp_path: Path) -> None:
    """The command's process (lazy bootstrap) and its fork and spawn workers, over OTLP."""
    with OTLPReceiver() as receiver:
        runs: list[list[SpanRecord]] = []
        for name in ("first", "second"):
            receiver.clear()
            run_script(tmp_path, name, wrapped=True, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.http_endpoint)
            runs.append(receiver.spans())
    for spans in runs:
        named = by_name(spans)
        assert {s.trace_id for s in spans} == {named["ai.run"].trace_id}, (
            "the command's spans join the wrapper's run"
        )
        assert named["plain"].resource["process.pid"] != named["ai.run"].resource["process.pid"]
    shared_traces, shared_spans = shared_ids(*runs)
    assert not shared_traces and not shared_spans
