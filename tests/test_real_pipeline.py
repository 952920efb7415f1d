"""Every shipped pipeline, run for real: otelcol-ai (our collector distribution, built by
collector-config/build.sh from the Go module proxy) and Jaeger v2, as processes on
127.0.0.1, fed by otel_ai under ``otel-ai run``.

- every config set passes the collector's own ``validate``;
- the fleet (agent -> gateway-lb -> two gateway-sampling instances, static resolver,
  routing by trace id -> Jaeger) delivers a simulated AI-Scientist search as one complete
  trace, span for span what otel_ai sent (the agent's file exporter keeps a copy of what it
  received), and ``otel-ai show/report --jaeger`` read it back;
- tail sampling keeps every failed run and follows the documented policy for the rest;
- agent-direct shows a live run in Jaeger within seconds;
- the agent SIGKILLed and restarted, and the gateway down for 30 s, lose and duplicate
  nothing;
- the Loki pipeline (transform/loki) holds every record within Loki's limits, and span
  metrics come out as the series our docs and dashboard promise.

Loki and Prometheus are AGPL or not built here: the collectors' Loki and Prometheus
exporters send to an OTLP receiver of the test in their place.
Skipped, with the reason, where the binaries are not built (see collector-config/build.sh).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from collector_support import config_sets
from otlp_receiver import OTLPReceiver
from real_pipeline import CONFIG_DIR, Binaries, Collector, Jaeger, binaries, collector, jaeger, wait_until

from otel_ai import semconv
from otel_ai.read import SpanRecord, Telemetry, load_path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "simulated_bfts.py"
OTEL_AI = [sys.executable, "-m", "otel_ai"]
LOKI_LIMIT_BYTES = 64_000  # Loki's max_structured_metadata_size ("64kb", humanize: 1000)
LOKI_LIMIT_ENTRIES = 128  # Loki's max_structured_metadata_entries_count

# replay-files.yaml reads files with the otlp_json_file receiver, which the Go module proxy
# does not serve at our collector release: that one set needs the upstream contrib image.
NOT_IN_OTELCOL_AI = {
    "replay-files": "its otlp_json_file receiver is not served by the Go module proxy at v0.161.0"
}


@pytest.fixture(scope="session")
def bins() -> Binaries:
    """The collector (and where Jaeger would be: ``jaeger_server`` checks it)."""
    found = binaries("collector")
    if isinstance(found, str):
        pytest.skip(found)
    return found


@pytest.fixture(scope="session")
def jaeger_bin(bins: Binaries) -> Path:
    found = binaries("jaeger")
    if isinstance(found, str):
        pytest.skip(found)
    return found.jaeger


@pytest.fixture(scope="session")
def jaeger_server(jaeger_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jaeger]:
    server = jaeger(jaeger_bin, tmp_path_factory.mktemp("jaeger")).start(timeout=120)
    yield server
    server.stop()


@pytest.fixture
def backend() -> Iterator[OTLPReceiver]:
    """In Loki's and Prometheus' place: what the collectors send them."""
    with OTLPReceiver() as receiver:
        yield receiver


# --- 0. the manifest names exactly what the configs use (no binary needed) -------------------
def test_the_manifest_builds_exactly_the_components_the_configs_use() -> None:
    from collector_support import COMPONENT_KINDS, component_type, load_yaml, merged_set

    manifest = load_yaml(CONFIG_DIR / "otelcol-ai.manifest.yaml")
    known = load_yaml(CONFIG_DIR / "otelcol-contrib.components.yaml")["types"]
    versions = set()
    built: dict[str, set[str]] = {}
    for kind in COMPONENT_KINDS:
        modules = {}
        for entry in manifest.get(kind) or []:
            module, version = entry["gomod"].split()
            modules[module] = version
            versions.add(version)
        built[kind] = set(modules)
    assert versions == {manifest["dist"]["version"].join(("v", ""))}, "one release for every module"
    used: dict[str, set[str]] = {kind: set() for kind in COMPONENT_KINDS}
    for name, files in config_sets().items():
        cfg = merged_set(files)
        for kind in COMPONENT_KINDS:
            for component in cfg.get(kind) or {}:
                if name in NOT_IN_OTELCOL_AI and component_type(component) == "otlp_json_file":
                    continue
                used[kind].add(known[kind][component_type(component)])
    extra = {"exporters": {"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter"}}
    for kind in COMPONENT_KINDS:
        assert built[kind] == used[kind] | extra.get(kind, set()), kind


# --- 1. validate ---------------------------------------------------------------------------
@pytest.mark.parametrize("set_name", sorted(config_sets()))
def test_every_config_set_passes_otelcol_ai_validate(bins: Binaries, set_name: str, tmp_path: Path) -> None:
    if set_name in NOT_IN_OTELCOL_AI:
        pytest.skip(NOT_IN_OTELCOL_AI[set_name])
    files = config_sets()[set_name]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    if any("secure" in f for f in files):
        # the secure overlays read certificates and tokens from files the docs name
        env.update(_secure_env(tmp_path))
    done = subprocess.run(
        [str(bins.otelcol), "validate", *(f"--config={CONFIG_DIR / f}" for f in files)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_stack_jaeger_config_passes_jaeger_validate(jaeger_bin: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(jaeger_bin), "validate", f"--config={CONFIG_DIR / 'stack' / 'jaeger.yaml'}"],
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "JAEGER_BADGER_DIR": str(tmp_path / "badger"),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _secure_env(tmp_path: Path) -> dict[str, str]:
    names: set[str] = set()
    for f in ("agent-secure.yaml", "gateway-lb-secure.yaml"):
        names |= set(re.findall(r"\$\{env:([A-Z_]+)", (CONFIG_DIR / f).read_text(encoding="utf-8")))
    env = {}
    for name in sorted(names):
        path = tmp_path / name.lower()
        path.write_text("secret-token\n", encoding="utf-8")
        env[name] = str(path)
    return env


# --- the topologies -----------------------------------------------------------------------
@dataclass
class Pipeline:
    """otel_ai's way in (``endpoint``), the collectors, Jaeger, and the agent's copy."""

    endpoint: str
    agent: Collector
    copy_dir: Path
    jaeger: Jaeger
    backend: OTLPReceiver
    collectors: list[Collector] = field(default_factory=list)
    workdir: Path = Path()

    def stop(self) -> None:
        for c in reversed(self.collectors):
            c.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {c.name}\n{c.tail(3000)}" for c in self.collectors)


def _overlay(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _copy_overlay(
    workdir: Path, copy_dir: Path, traces_exporters: list[str], logs_exporters: list[str]
) -> Path:
    """The agent also writes the traces and logs it received to files (the collector's file
    exporter, in OTLP/JSON lines as otel_ai's embedded default): the run's reference copy."""
    copy_dir.mkdir(parents=True, exist_ok=True)
    return _overlay(
        workdir / "agent-copy.yaml",
        {
            "exporters": {"file/copy": {"path": str(copy_dir / "copy.jsonl"), "flush_interval": "100ms"}},
            "service": {
                "pipelines": {
                    "traces": {"exporters": [*traces_exporters, "file/copy"]},
                    "logs": {"exporters": [*logs_exporters, "file/copy"]},
                }
            },
        },
    )


def start_fleet(
    bins: Binaries, jaeger_server: Jaeger, backend: OTLPReceiver, workdir: Path, sample_percent: int
) -> Pipeline:
    backend_url = backend.http_endpoint
    sampling = [
        collector(
            bins.otelcol,
            f"sampling-{i}",
            ["gateway-sampling.yaml"],
            workdir,
            {
                "JAEGER_OTLP_ENDPOINT": jaeger_server.otlp_grpc_endpoint,
                "PROMETHEUS_OTLP_ENDPOINT": backend_url,
                "OTELCOL_SAMPLE_PERCENT": str(sample_percent),
                "OTELCOL_ROOT_DECISION_WAIT": "3s",
            },
        )
        for i in (1, 2)
    ]
    hosts = "[" + ", ".join(s.grpc_endpoint for s in sampling) + "]"
    lb = collector(
        bins.otelcol,
        "gateway-lb",
        ["gateway-lb.yaml", "gateway-lb-static.yaml"],
        workdir,
        {
            "OTELCOL_SAMPLING_TIER_HOSTS": hosts,
            "LOKI_OTLP_ENDPOINT": backend_url,
            "PROMETHEUS_OTLP_ENDPOINT": backend_url,
        },
    )
    copy_dir = workdir / "agent-copy"
    agent = collector(
        bins.otelcol,
        "agent",
        ["agent.yaml", _copy_overlay(workdir, copy_dir, ["otlp_grpc/upstream"], ["otlp_grpc/upstream"])],
        workdir,
        {
            "OTELCOL_UPSTREAM_ENDPOINT": lb.grpc_endpoint,
        },
    )
    pipeline = Pipeline(
        agent.http_endpoint, agent, copy_dir, jaeger_server, backend, [*sampling, lb, agent], workdir
    )
    try:
        for c in pipeline.collectors:
            c.start()
    except BaseException:
        pipeline.stop()
        raise
    return pipeline


def start_direct(bins: Binaries, jaeger_server: Jaeger, backend: OTLPReceiver, workdir: Path) -> Pipeline:
    copy_dir = workdir / "agent-copy"
    overlay = _copy_overlay(workdir, copy_dir, ["otlp_grpc/jaeger", "span_metrics"], ["otlp_http/loki"])
    agent = collector(
        bins.otelcol,
        "agent",
        ["agent.yaml", "agent-direct.yaml", overlay],
        workdir,
        {
            "JAEGER_OTLP_ENDPOINT": jaeger_server.otlp_grpc_endpoint,
            "LOKI_OTLP_ENDPOINT": backend.http_endpoint,
            "PROMETHEUS_OTLP_ENDPOINT": backend.http_endpoint,
        },
    )
    pipeline = Pipeline(agent.http_endpoint, agent, copy_dir, jaeger_server, backend, [agent], workdir)
    agent.start()
    return pipeline


@pytest.fixture
def fleet(bins: Binaries, jaeger_server: Jaeger, backend: OTLPReceiver, tmp_path: Path) -> Iterator[Pipeline]:
    pipeline = start_fleet(bins, jaeger_server, backend, tmp_path, sample_percent=100)
    yield pipeline
    pipeline.stop()


@pytest.fixture
def direct(
    bins: Binaries, jaeger_server: Jaeger, backend: OTLPReceiver, tmp_path: Path
) -> Iterator[Pipeline]:
    pipeline = start_direct(bins, jaeger_server, backend, tmp_path)
    yield pipeline
    pipeline.stop()


def otel_ai_env(pipeline: Pipeline, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "TRACEPARENT", "TRACESTATE", "PYTEST_", "RUNPOD_"))
    }
    env.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": pipeline.endpoint,
            "OTEL_AI_DATA_DIR": str(data_dir),
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
            **extra,
        }
    )
    return env


def simulated_search(
    pipeline: Pipeline, run_id: str, *extra: str, wait: bool = True
) -> subprocess.Popen[str]:
    work = pipeline.workdir / f"run-{run_id}"
    work.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            *OTEL_AI,
            "run",
            "--run-id",
            run_id,
            "--no-status",
            "--",
            sys.executable,
            str(EXAMPLE),
            "--workdir",
            str(work / "work"),
            *extra,
        ],
        cwd=work,
        env=otel_ai_env(pipeline, work / "runs"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if wait:
        out, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err[-4000:]
    return proc


def copy_spans(pipeline: Pipeline, run_id: str) -> list[SpanRecord]:
    """The run's spans in the agent's copy (the trace of its ai.run span)."""
    spans = load_path(pipeline.copy_dir).spans
    trace_ids = {s.trace_id for s in spans if s.attributes.get(semconv.RUN_ID) == run_id}
    assert len(trace_ids) == 1, (run_id, trace_ids)
    return [s for s in spans if s.trace_id in trace_ids]


def jaeger_spans(server: Jaeger, trace_id: str) -> list[SpanRecord]:
    answer = server.trace(trace_id)
    if answer is None:
        return []
    return Telemetry.from_requests([answer.get("result", answer)]).spans


def wait_for_trace(server: Jaeger, trace_id: str, count: int, timeout: float = 90) -> list[SpanRecord]:
    def probe() -> list[SpanRecord] | None:
        spans = jaeger_spans(server, trace_id)
        return spans if len(spans) >= count else None

    try:
        return wait_until(f"{count} spans of trace {trace_id} in Jaeger", probe, timeout, interval=1.0)
    except AssertionError:
        raise AssertionError(
            f"Jaeger has {len(jaeger_spans(server, trace_id))} of {count} spans of {trace_id}"
        ) from None


def _as_jaeger_stores(attributes: dict[str, Any]) -> dict[str, Any]:
    """Jaeger's storage model has no array type: an array attribute comes back as the
    JSON text of the array (documented; the only change Jaeger makes to our spans)."""
    return {
        k: json.dumps(v, separators=(",", ":")) if isinstance(v, list) else v for k, v in attributes.items()
    }


def comparable(span: SpanRecord) -> dict[str, Any]:
    """What Jaeger must keep of a span, as otel_ai sent it."""
    return {
        "trace_id": span.trace_id,
        "parent": span.parent_span_id or None,
        "name": span.name,
        "kind": span.kind,
        "start": span.start_ns,
        "end": span.end_ns,
        "status": span.status_code,
        "attributes": _as_jaeger_stores(span.attributes),
        # Jaeger returns a span's events in an order of its own: compare them by time
        "events": sorted(
            ((e.time_ns, e.name, _as_jaeger_stores(e.attributes)) for e in span.events), key=lambda e: e[:2]
        ),
        "links": sorted((link.trace_id, link.span_id) for link in span.links),
        "resource": _as_jaeger_stores(span.resource),
        "scope": span.scope,
    }


def assert_same_spans(sent: list[SpanRecord], stored: list[SpanRecord]) -> None:
    dupes = [span_id for span_id, n in Counter(s.span_id for s in stored).items() if n > 1]
    assert not dupes, f"{len(dupes)} spans twice in Jaeger"
    sent_by_id = {s.span_id: s for s in sent}
    stored_by_id = {s.span_id: s for s in stored}
    assert len(sent_by_id) == len(sent), "otel_ai sent a span twice"
    missing = set(sent_by_id) - set(stored_by_id)
    assert not missing, (
        f"{len(missing)} of {len(sent)} spans missing in Jaeger: {sorted(sent_by_id[i].name for i in missing)[:10]}"
    )
    assert set(stored_by_id) == set(sent_by_id), "Jaeger has spans otel_ai did not send"
    differing = {}
    for span_id, span in sent_by_id.items():
        got, want = comparable(stored_by_id[span_id]), comparable(span)
        if got != want:
            differing[f"{span.name} {span_id}"] = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    assert not differing, (
        f"{len(differing)} spans differ: {list(differing.items())[:3]} keys {Counter(k for d in differing.values() for k in d)}"
    )


def assert_one_complete_trace(spans: list[SpanRecord]) -> SpanRecord:
    by_id = {s.span_id: s for s in spans}
    (run,) = [s for s in spans if s.name == semconv.SPAN_RUN]
    assert {s.trace_id for s in spans} == {run.trace_id}
    assert [s.name for s in spans if s.parent_span_id and s.parent_span_id not in by_id] == [], (
        "a parent is missing"
    )
    links = [(s.name, link.span_id) for s in spans for link in s.links]
    assert links, "a search has links between nodes"
    assert [name for name, target in links if target not in by_id] == [], "a link points nowhere"
    return run


# --- 2. the fleet: one complete trace ----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fleet_delivers_a_search_as_one_complete_trace(fleet: Pipeline, tmp_path: Path) -> None:
    run_id = "fleet-search"
    simulated_search(fleet, run_id)
    sent = wait_until(
        "the run's root span in the agent's copy",
        lambda: (s := copy_spans_or_none(fleet, run_id)) and any(x.name == semconv.SPAN_RUN for x in s) and s,
        60,
    )
    time.sleep(2)  # the last batches behind the root
    sent = copy_spans(fleet, run_id)
    run = assert_one_complete_trace(sent)
    assert len(sent) > 50
    stored = wait_for_trace(fleet.jaeger, run.trace_id, len(sent), timeout=120)
    assert_same_spans(sent, stored)
    assert_one_complete_trace(stored)

    # routed by trace id: one sampling instance had every span of the run, the other none
    sampling = [c for c in fleet.collectors if c.name.startswith("sampling-")]
    received = sorted(c.metric("otelcol_receiver_accepted_spans") for c in sampling)
    assert received == [0, len(sent)], received

    # otel-ai show and report read it back from Jaeger as they read the copy's traces
    traces_only = tmp_path / "copy-traces"
    traces_only.mkdir()
    (traces_only / "copy.jsonl").write_text(
        "".join(
            line
            for line in (fleet.copy_dir / "copy.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
            if line.startswith('{"resourceSpans"')
        ),
        encoding="utf-8",
    )
    from_files = subprocess.run(
        [*OTEL_AI, "show", run_id, "--data-dir", str(traces_only), "--color", "never"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=_cli_env(),
        cwd=tmp_path,
    )
    from_jaeger = subprocess.run(
        [*OTEL_AI, "show", run_id, "--jaeger", fleet.jaeger.url, "--color", "never"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=_cli_env(),
        cwd=tmp_path,
    )
    assert from_files.returncode == 0, from_files.stderr
    assert from_jaeger.returncode == 0, from_jaeger.stderr
    import difflib

    diff = list(
        difflib.unified_diff(
            from_files.stdout.splitlines(),
            from_jaeger.stdout.splitlines()[:-1],
            "files",
            "jaeger",
            lineterm="",
            n=1,
        )
    )
    assert not diff, "\n".join(diff)
    assert from_jaeger.stdout.splitlines()[-1] == f"Jaeger: {fleet.jaeger.url}/trace/{run.trace_id}"
    page = tmp_path / "report.html"
    report = subprocess.run(
        [*OTEL_AI, "report", run_id, "--jaeger", fleet.jaeger.url, "-o", str(page)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=_cli_env(),
        cwd=tmp_path,
    )
    assert report.returncode == 0, report.stderr
    data = json.loads(
        re.search(
            r'<script type="application/json" id="report-data">(.*?)</script>', page.read_text(), re.S
        ).group(1)
    )  # type: ignore[union-attr]
    assert data["run"]["id"] == run_id
    nodes = {
        (s.attributes[semconv.STAGE_NAME], s.attributes[semconv.NODE_ID])
        for s in sent
        if s.name.startswith(semconv.SPAN_NODE + " ")
    }
    assert {(stage["name"], node["id"]) for stage in data["stages"] for node in stage["nodes"]} == nodes


def copy_spans_or_none(pipeline: Pipeline, run_id: str) -> list[SpanRecord] | None:
    try:
        return copy_spans(pipeline, run_id)
    except (AssertionError, OSError, ValueError):
        return None


def _cli_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTEST_"))}


def wrapped(pipeline: Pipeline, run_id: str, code: str, *, wait: bool = True) -> subprocess.Popen[str]:
    """``otel-ai run -- python -c CODE`` sending to the pipeline."""
    work = pipeline.workdir / f"run-{run_id}"
    work.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [*OTEL_AI, "run", "--run-id", run_id, "--no-status", "--", sys.executable, "-c", code],
        cwd=work,
        env=otel_ai_env(pipeline, work / "runs"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if wait:
        proc.communicate(timeout=120)
    return proc


def stub_calls(stdout: str) -> int:
    match = re.search(r"llm stub: (\d+) calls", stdout)
    assert match, stdout[-2000:]
    return int(match.group(1))


# --- 3. tail sampling ------------------------------------------------------------------------
BUGGY_STAGE = """
import otel_ai
otel_ai.configure()
with otel_ai.run("{run_id}") as run:
    with run.stage("1_initial_implementation") as stage:
        for i in range(4):
            with stage.node(f"n{{i}}", kind="draft") as node:
                node.completed(True, None, 0.01, exc_type="ValueError")
otel_ai.shutdown()
"""


def run_buggy_stage(pipeline: Pipeline, work: Path, run_id: str) -> None:
    """BUGGY_STAGE (a stage most of whose nodes are buggy) as run ``run_id``, sent to ``pipeline``."""
    work.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", BUGGY_STAGE.format(run_id=run_id)],
        cwd=work,
        env=otel_ai_env(pipeline, work / "runs"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tail_sampling_keeps_failed_runs_and_follows_the_policy_for_the_rest(
    bins: Binaries,
    jaeger_server: Jaeger,
    backend: OTLPReceiver,
    tmp_path: Path,
) -> None:
    """With OTELCOL_SAMPLE_PERCENT=0 only the policies keep a run: a failed run and a run
    with a buggy-heavy stage are in Jaeger, a plain completed run is not."""
    fleet = start_fleet(bins, jaeger_server, backend, tmp_path, sample_percent=0)
    try:
        failed = wrapped(fleet, "policy-failed", "import sys; print('about to fail'); sys.exit(3)")
        assert failed.returncode == 3
        completed = wrapped(fleet, "policy-completed", "print('all good')")
        assert completed.returncode == 0
        run_buggy_stage(fleet, tmp_path / "buggy", "policy-buggy")
        traces = {}
        for run_id in ("policy-failed", "policy-completed", "policy-buggy"):
            spans = wait_until(
                f"{run_id} in the agent's copy", lambda r=run_id: copy_spans_or_none(fleet, r), 60
            )
            traces[run_id] = spans[0].trace_id
        for run_id in ("policy-failed", "policy-buggy"):
            sent = copy_spans(fleet, run_id)
            assert_same_spans(sent, wait_for_trace(fleet.jaeger, traces[run_id], len(sent), timeout=90))
        # every decision is made (the three runs' roots came together): the completed run
        # was dropped, not delayed
        sampling = [c for c in fleet.collectors if c.name.startswith("sampling-")]
        wait_until(
            "three tail-sampling decisions",
            lambda: (
                sum(c.metric("otelcol_processor_tail_sampling_global_count_traces_sampled") for c in sampling)
                >= 3
            ),
            60,
        )
        time.sleep(3)
        assert jaeger_spans(fleet.jaeger, traces["policy-completed"]) == []
    finally:
        fleet.stop()


# --- 4. live run ------------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_a_live_run_is_in_jaeger_within_10_s_of_its_start(direct: Pipeline) -> None:
    from otel_ai.read.jaeger import JaegerError, load_from_jaeger

    started = time.monotonic()
    proc = wrapped(direct, "live-run", "import time; time.sleep(40)", wait=False)
    try:

        def live() -> list[SpanRecord] | None:
            try:
                spans = load_from_jaeger(direct.jaeger.url, "live-run", timeout_s=5).spans
            except JaegerError:
                return None
            return [s for s in spans if s.name == semconv.SPAN_RUN_LIVE] or None

        (marker,) = wait_until("the ai.run.live marker in Jaeger", live, 30, interval=0.5)
        seen_after = time.monotonic() - started
        assert marker.attributes[semconv.RUN_ID] == "live-run"
        assert seen_after < 10, f"visible after {seen_after:.1f} s"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


# --- 5. Loki's limits, through the real transform/loki -----------------------------------------
def _kv(key: str, value: str) -> Any:
    from opentelemetry.proto.common.v1 import common_pb2

    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))


def _huge_log_request(run_id: str, trace_id: str, span_id: str) -> bytes:
    """One log record as a wild producer may send it: a 1 MB stack trace, a 200 KB
    message, 200 attributes of 1 KB, 40 resource attributes."""
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.logs.v1 import logs_pb2
    from opentelemetry.proto.resource.v1 import resource_pb2

    frames = "".join(
        f'  File "/workspace/experiments/train_{i}.py", line {i}, in step\n    loss = model(batch)\n'
        for i in range(12_000)
    )
    stack = (
        "Traceback (most recent call last):\n"
        + frames[:1_000_000]
        + "\ntorch.OutOfMemoryError: CUDA out of memory (the real cause)"
    )
    attributes = [
        _kv(semconv.RUN_ID, run_id),
        _kv(semconv.EVENT_NAME, "ai.run.failed"),
        _kv(semconv.EXCEPTION_TYPE, "torch.OutOfMemoryError"),
        _kv(semconv.EXCEPTION_STACKTRACE, stack),
        _kv(semconv.EXCEPTION_MESSAGE, "m" * 200_000),
    ]
    attributes += [
        _kv(f"experiment.param_{i:03d}", f"{i}:" + "v" * 1000) for i in range(200 - len(attributes))
    ]
    resource = [_kv(semconv.SERVICE_NAME, "ai-scientist"), _kv("ai.pod.id", "pod-loki")]
    resource += [_kv(f"host.label_{i:02d}", "r" * 1000) for i in range(38)]
    record = logs_pb2.LogRecord(
        time_unix_nano=time.time_ns(),
        severity_number=17,
        severity_text="ERROR",
        body=common_pb2.AnyValue(string_value="run failed: CUDA out of memory"),
        attributes=attributes,
        trace_id=bytes.fromhex(trace_id),
        span_id=bytes.fromhex(span_id),
    )
    request = logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=resource_pb2.Resource(attributes=resource),
                scope_logs=[
                    logs_pb2.ScopeLogs(
                        scope=common_pb2.InstrumentationScope(name="wild"), log_records=[record]
                    )
                ],
            )
        ]
    )
    return request.SerializeToString()


@pytest.mark.timeout(300)
def test_loki_pipeline_keeps_every_record_within_loki_limits(direct: Pipeline) -> None:
    import urllib.request

    from collector_support import STACK_DIR, load_yaml, loki_entry, structured_metadata_size

    otlp_config = load_yaml(STACK_DIR / "loki.yaml")["limits_config"]["otlp_config"]
    trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    body = _huge_log_request("loki-huge", trace_id, span_id)
    assert len(body) > 1_400_000
    request = urllib.request.Request(
        f"{direct.endpoint}/v1/logs", data=body, headers={"Content-Type": "application/x-protobuf"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - 127.0.0.1
        assert response.status == 200
    # and a failed run of otel_ai, every record of it
    wrapped(direct, "loki-failed", "import sys\nprint('x' * 5000)\nraise RuntimeError('boom ' * 3000)")

    def arrived(r: OTLPReceiver) -> bool:
        runs = {str(rec.attributes.get(semconv.RUN_ID)) for rec in r.logs()}
        return {"loki-huge", "loki-failed"} <= runs and any(
            rec.attributes.get(semconv.EVENT_NAME) == "ai.run.failed"
            and rec.attributes.get(semconv.RUN_ID) == "loki-failed"
            for rec in r.logs()
        )

    assert direct.backend.wait_for(arrived, timeout=60), direct.logs()
    records = [
        rec
        for rec in direct.backend.logs()
        if rec.attributes.get(semconv.RUN_ID) in ("loki-huge", "loki-failed")
    ]
    for rec in records:
        entry = loki_entry(rec, otlp_config)
        assert len(entry.metadata) <= LOKI_LIMIT_ENTRIES, (
            rec.attributes.get(semconv.EVENT_NAME),
            len(entry.metadata),
        )
        size = structured_metadata_size(entry.metadata)
        assert size <= LOKI_LIMIT_BYTES, (rec.attributes.get(semconv.EVENT_NAME), size)
        assert entry.labels["ai_run_id"] == rec.attributes[semconv.RUN_ID]
        assert len(str(rec.body).encode()) <= 256_000
    (huge,) = [rec for rec in records if rec.attributes[semconv.RUN_ID] == "loki-huge"]
    entry = loki_entry(huge, otlp_config)
    # the Grafana trace <-> logs links
    assert (entry.metadata["trace_id"], entry.metadata["span_id"]) == (trace_id, span_id)
    assert entry.labels == {"service_name": "ai-scientist", "ai_pod_id": "pod-loki", "ai_run_id": "loki-huge"}
    stack = entry.metadata["exception_stacktrace"]
    assert stack.startswith("Traceback (most recent call last):")
    assert stack.endswith("torch.OutOfMemoryError: CUDA out of memory (the real cause)"), (
        "the tail of a traceback is kept"
    )
    assert entry.metadata["event_name"] == "ai.run.failed"
    failed = [
        rec
        for rec in records
        if rec.attributes.get(semconv.EVENT_NAME) == "ai.run.failed"
        and rec.attributes[semconv.RUN_ID] == "loki-failed"
    ]
    assert failed and failed[0].trace_id and failed[0].span_id


# --- 6. span metrics --------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_span_metrics_come_out_as_the_series_the_docs_promise(
    bins: Binaries, jaeger_server: Jaeger, backend: OTLPReceiver, tmp_path: Path
) -> None:
    from collector_support import prom_label_name, prom_metric_name

    overlay = _copy_overlay(
        tmp_path, tmp_path / "agent-copy", ["otlp_grpc/jaeger", "span_metrics"], ["otlp_http/loki"]
    )
    agent = collector(
        bins.otelcol,
        "agent",
        ["agent.yaml", "agent-direct.yaml", overlay],
        tmp_path,
        {
            "JAEGER_OTLP_ENDPOINT": jaeger_server.otlp_grpc_endpoint,
            "LOKI_OTLP_ENDPOINT": backend.http_endpoint,
            "PROMETHEUS_OTLP_ENDPOINT": backend.http_endpoint,
            "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "1s",
        },
    ).start()
    try:
        pipeline = Pipeline(
            agent.http_endpoint, agent, tmp_path / "agent-copy", jaeger_server, backend, [agent], tmp_path
        )
        run_buggy_stage(pipeline, tmp_path / "buggy", "metrics-run")

        def span_metrics(r: OTLPReceiver) -> list[Any]:
            return [m for m in r.metrics() if m.name.startswith("traces.span.metrics.")]

        assert backend.wait_for(
            lambda r: any(m.attributes.get("span.name") == semconv.SPAN_RUN for m in span_metrics(r)),
            timeout=60,
        ), agent.tail()
        points = span_metrics(backend)
        names = {prom_metric_name(m.name, m.unit, m.kind, True if m.kind == "sum" else None) for m in points}
        assert {"traces_span_metrics_calls_total", "traces_span_metrics_duration_seconds"} <= names, names
        labels = {prom_label_name(k) for m in points for k in m.attributes}
        assert {"span_name", "status_code", "ai_run_outcome", "ai_stage_name"} <= labels, labels
        calls = {m.attributes["span.name"]: m.value for m in points if m.name == "traces.span.metrics.calls"}
        assert calls[semconv.SPAN_RUN] >= 1 and calls[f"{semconv.SPAN_NODE} draft"] >= 4
    finally:
        agent.stop()


# --- 7. faults: nothing lost, nothing twice ---------------------------------------------------
def assert_search_whole_in_jaeger(
    pipeline: Pipeline, run_id: str, stdout: str, *, timeout: float = 180
) -> list[SpanRecord]:
    """The run's trace in Jaeger is complete: every parent and link target there, no span
    twice, every LLM call the stub answered a span (an independent count of what happened)."""
    from otel_ai.read.jaeger import JaegerError, load_from_jaeger

    calls = stub_calls(stdout)

    def whole() -> list[SpanRecord] | None:
        try:
            spans = load_from_jaeger(pipeline.jaeger.url, run_id, timeout_s=10).spans
        except JaegerError:
            return None
        llm = [s for s in spans if s.attributes.get(semconv.GEN_AI_OPERATION_NAME) == "chat"]
        return spans if any(s.name == semconv.SPAN_RUN for s in spans) and len(llm) >= calls else None

    try:
        spans = wait_until(f"run {run_id} whole in Jaeger", whole, timeout, interval=2)
    except AssertionError:
        try:
            found = load_from_jaeger(pipeline.jaeger.url, run_id, timeout_s=10).spans
        except JaegerError as exc:
            found, why = [], str(exc)
        else:
            why = ""
        llm = [s for s in found if s.attributes.get(semconv.GEN_AI_OPERATION_NAME) == "chat"]
        spool = sorted(
            str(p.relative_to(pipeline.workdir))
            for p in pipeline.workdir.glob(f"run-{run_id}/runs/**/*")
            if p.is_file()
        )
        raise AssertionError(
            f"Jaeger has {len(found)} spans {why}, {len(llm)} of {calls} LLM calls, "
            f"run span: {any(s.name == semconv.SPAN_RUN for s in found)}; left in otel_ai's data dir: {spool[:20]}\n"
            + pipeline.logs()[-3000:]
        ) from None
    time.sleep(3)  # anything late, duplicates included, has arrived
    spans = load_from_jaeger(pipeline.jaeger.url, run_id).spans
    dupes = [n for n in Counter(s.span_id for s in spans).values() if n > 1]
    assert not dupes, f"{len(dupes)} spans twice"
    assert_one_complete_trace(spans)
    llm = [s for s in spans if s.attributes.get(semconv.GEN_AI_OPERATION_NAME) == "chat"]
    assert len(llm) == calls
    return spans


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_agent_killed_and_restarted_mid_run_loses_and_duplicates_nothing(direct: Pipeline) -> None:
    proc = simulated_search(direct, "agent-killed", "--max-iters", "6", wait=False)
    # mid-run: the first spans are through the agent
    wait_until(
        "the first spans in the agent's copy",
        lambda: (
            (direct.copy_dir / "copy.jsonl").is_file() and (direct.copy_dir / "copy.jsonl").stat().st_size > 0
        ),
        120,
    )
    direct.agent.kill()
    time.sleep(5)
    direct.agent.start()
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-4000:]
    # pool workers that ended while the agent was down left their data in otel_ai's spool:
    # `otel-ai recover` (or the next `otel-ai run` on this data directory) delivers it
    work = direct.workdir / "run-agent-killed"
    recover = subprocess.run(
        [*OTEL_AI, "recover"],
        cwd=work,
        env=otel_ai_env(direct, work / "runs"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert recover.returncode == 0, recover.stdout + recover.stderr
    assert_search_whole_in_jaeger(direct, "agent-killed", out)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_gateway_down_30_s_mid_run_loses_and_duplicates_nothing(fleet: Pipeline) -> None:
    proc = simulated_search(fleet, "gateway-down", "--max-iters", "6", wait=False)
    wait_until(
        "the first spans in the agent's copy",
        lambda: (
            (fleet.copy_dir / "copy.jsonl").is_file() and (fleet.copy_dir / "copy.jsonl").stat().st_size > 0
        ),
        120,
    )
    (lb,) = [c for c in fleet.collectors if c.name == "gateway-lb"]
    lb.stop()
    time.sleep(30)
    lb.start()
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-4000:]
    spans = assert_search_whole_in_jaeger(fleet, "gateway-down", out, timeout=240)
    # span for span what the agent received
    assert_same_spans(copy_spans(fleet, "gateway-down"), spans)


@pytest.mark.timeout(300)
def test_what_the_agent_acknowledged_survives_a_sigkill(
    bins: Binaries, backend: OTLPReceiver, tmp_path: Path
) -> None:
    """An acknowledged request is on disk: killed at once after the acks, the restarted
    agent delivers every span (a batch processor in front of the queue lost them all)."""
    import urllib.request

    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2

    agent = collector(
        bins.otelcol,
        "agent",
        ["agent.yaml", "agent-direct.yaml"],
        tmp_path,
        {
            "JAEGER_OTLP_ENDPOINT": backend.grpc_endpoint.removeprefix("http://"),
            "LOKI_OTLP_ENDPOINT": backend.http_endpoint,
            "PROMETHEUS_OTLP_ENDPOINT": backend.http_endpoint,
        },
    ).start()
    sent = set()
    try:
        for _ in range(20):
            spans = [
                trace_pb2.Span(
                    trace_id=os.urandom(16),
                    span_id=os.urandom(8),
                    name="acked",
                    start_time_unix_nano=1,
                    end_time_unix_nano=2,
                )
                for _ in range(50)
            ]
            sent |= {s.span_id.hex() for s in spans}
            request = trace_service_pb2.ExportTraceServiceRequest(
                resource_spans=[trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=spans)])]
            )
            post = urllib.request.Request(
                f"{agent.http_endpoint}/v1/traces",
                data=request.SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"},
            )
            with urllib.request.urlopen(post, timeout=10) as response:  # noqa: S310 - 127.0.0.1
                assert response.status == 200
        agent.kill()
        agent.start()
        assert backend.wait_for(lambda r: {s.span_id for s in r.spans()} >= sent, timeout=60), (
            f"{len(sent - {s.span_id for s in backend.spans()})} of {len(sent)} acknowledged spans lost"
        )
        time.sleep(2)
        assert len(backend.spans()) == len(sent), "no span twice"
    finally:
        agent.stop()
