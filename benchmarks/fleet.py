"""A fleet on one machine: simulated pods -> agents -> gateway-lb (2+) -> gateway-sampling
(2) -> Jaeger v2 (Badger), every one a real process on 127.0.0.1, run for a fixed time
under load, with an optional fault, then checked and measured.

The fleet
    ``--pods`` pods (default 40) each run simulated AI-Scientist searches
    (examples/simulated_bfts.py under ``otel-ai run``) one after the other until
    ``--duration`` seconds have passed; every ``--fail-every``-th run exits 3 (a failed
    run). ``--agents`` shared agents (agent.yaml, one per node as docs/operations.md
    recommends; default one per 10 pods, at least 2): agent i sends to gateway-lb i mod
    ``--lbs``. A pod's wrapper (its root span, heartbeats, output as log records) sends
    to one agent and its search processes to the next one, so every run's spans cross
    two agents and both first-tier gateways, as a multi-node job's would. The gateway-lb
    instances route traces by trace id (static resolver) to two sampling gateways
    (gateway-sampling.yaml, ``OTELCOL_SAMPLE_PERCENT`` as documented, 10), which send to
    Jaeger. Logs and metrics go to an OTLP receiver of ours in Loki's and Prometheus'
    place; each sampling gateway's span metrics go to a receiver of its own.

Checks (printed; ``check()`` raises on a violation)
    - every run's trace in Jaeger, when kept, is ONE complete trace: span for span what
      the agents received (their file exporters keep a copy), nothing twice;
    - every failed run and every run with a buggy-heavy stage is kept; the kept fraction
      of the other completed runs is measured against the sample percent;
    - span metrics count every run (``ai.run`` calls over both sampling gateways).

Faults (``--fault``, at ``--fault-at`` seconds into the load)
    sampling-kill   sampling-2 SIGKILLed, restarted 5 s later on its storage
    sampling-restart  the same with SIGTERM (a rolling restart)
    upstream-cut    gateway-lb-2 stopped for ``--cut-for`` seconds (60): the upstream of
                    every agent sending to it is gone; their disk queues hold
    jaeger-restart  Jaeger stopped for 20 s and started again on the same Badger files

Numbers: spans/s and log records/s accepted by the first tier, CPU seconds and peak RSS
of every component over the run, event -> Jaeger latency (a failed run's last event, its
root span's end, until that span is in Jaeger; includes the sampler's wait after the root,
``--root-wait``).

    python benchmarks/fleet.py                          # 40 pods, 5 minutes of load
    python benchmarks/fleet.py --pods 8 --duration 120 --fault sampling-kill

Needs the binaries of collector-config/build.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from otlp_receiver import OTLPReceiver  # noqa: E402
from real_pipeline import Binaries, Collector, Jaeger, Process, binaries, collector, jaeger, wait_until  # noqa: E402

from otel_ai import semconv  # noqa: E402
from otel_ai.read import (  # noqa: E402
    SpanRecord,
    Telemetry,
    load_path,  # noqa: E402
)

EXAMPLE = ROOT / "examples" / "simulated_bfts.py"
FAULTS = ("none", "sampling-kill", "sampling-restart", "upstream-cut", "jaeger-restart")
_TRACE = re.compile(r"otel-ai run: run \S+ started, trace ([0-9a-f]{32})")


@dataclass
class Options:
    pods: int = 40
    duration: float = 300.0
    agents: int = 0  # 0: one per 10 pods, at least 2
    lbs: int = 2
    sample_percent: int = 10
    fail_every: int = 4
    max_iters: int = 2
    workers: int = 2
    root_wait: str = "5s"
    fault: str = "none"
    fault_at: float = 30.0
    cut_for: float = 60.0
    settle: float = 240.0  # how long to wait for the last runs to be in Jaeger

    def agent_count(self) -> int:
        return self.agents or max(2, (self.pods + 9) // 10)


@dataclass
class RunResult:
    run_id: str
    pod: int
    want_failed: bool
    start: float
    end: float = 0.0
    returncode: int | None = None
    trace_id: str | None = None
    seen_in_jaeger: float | None = None  # when its root span was first there (failed runs)
    stderr_tail: str = ""


@dataclass
class Usage:
    cpu_s: float = 0.0
    rss_peak_mib: float = 0.0


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _rss_peak_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def _overlay(path: Path, text: dict[str, Any]) -> Path:
    path.write_text(json.dumps(text), encoding="utf-8")  # JSON is YAML
    return path


@dataclass
class Fleet:
    bins: Binaries
    workdir: Path
    options: Options
    jaeger: Jaeger | None = None
    sampling: list[Collector] = field(default_factory=list)
    lbs: list[Collector] = field(default_factory=list)
    agents: list[Collector] = field(default_factory=list)
    backend: OTLPReceiver | None = None
    metric_backends: list[OTLPReceiver] = field(default_factory=list)
    runs: list[RunResult] = field(default_factory=list)
    faults: list[tuple[str, float, float]] = field(default_factory=list)  # (what, from, to)
    usage: dict[str, Usage] = field(default_factory=dict)
    load_start: float = 0.0
    load_end: float = 0.0
    _cpu_at_start: dict[str, float] = field(default_factory=dict)
    _pods: set[subprocess.Popen[str]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    # --- start and stop --------------------------------------------------------------------
    def components(self) -> list[Process]:
        return [c for c in [self.jaeger, *self.sampling, *self.lbs, *self.agents] if c is not None]

    def start(self) -> Fleet:
        o = self.options
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.backend = OTLPReceiver().start()
            self.metric_backends = [OTLPReceiver().start() for _ in range(2)]
            self.jaeger = jaeger(self.bins.jaeger, self.workdir).start(timeout=120)
            for i, receiver in enumerate(self.metric_backends, 1):
                self.sampling.append(
                    collector(
                        self.bins.otelcol,
                        f"sampling-{i}",
                        ["gateway-sampling.yaml"],
                        self.workdir,
                        {
                            "JAEGER_OTLP_ENDPOINT": self.jaeger.otlp_grpc_endpoint,
                            "PROMETHEUS_OTLP_ENDPOINT": receiver.http_endpoint,
                            "OTELCOL_SAMPLE_PERCENT": str(o.sample_percent),
                            "OTELCOL_ROOT_DECISION_WAIT": o.root_wait,
                            "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "2s",
                        },
                    ).start()
                )
            hosts = "[" + ", ".join(s.grpc_endpoint for s in self.sampling) + "]"
            for i in range(1, o.lbs + 1):
                self.lbs.append(
                    collector(
                        self.bins.otelcol,
                        f"gateway-lb-{i}",
                        ["gateway-lb.yaml", "gateway-lb-static.yaml"],
                        self.workdir,
                        {
                            "OTELCOL_SAMPLING_TIER_HOSTS": hosts,
                            "LOKI_OTLP_ENDPOINT": self.backend.http_endpoint,
                            "PROMETHEUS_OTLP_ENDPOINT": self.backend.http_endpoint,
                        },
                    ).start()
                )
            for i in range(o.agent_count()):
                copy = self.workdir / f"agent-{i}" / "copy"
                copy.mkdir(parents=True, exist_ok=True)
                overlay = _overlay(
                    self.workdir / f"agent-{i}-copy.yaml",
                    {
                        "exporters": {
                            "file/copy": {"path": str(copy / "copy.jsonl"), "flush_interval": "100ms"}
                        },
                        "service": {
                            "pipelines": {"traces": {"exporters": ["otlp_grpc/upstream", "file/copy"]}}
                        },
                    },
                )
                self.agents.append(
                    collector(
                        self.bins.otelcol,
                        f"agent-{i}",
                        ["agent.yaml", overlay],
                        self.workdir,
                        {
                            "OTELCOL_UPSTREAM_ENDPOINT": self.lbs[i % o.lbs].grpc_endpoint,
                        },
                    ).start()
                )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            pods = list(self._pods)
        for proc in pods:  # a pod still running when the fleet is stopped early
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
        # upstream last: what the agents still hold drains on their way down
        for c in [*self.agents, *self.lbs, *self.sampling]:
            c.stop()
        if self.jaeger is not None:
            self.jaeger.stop()
        for r in [self.backend, *self.metric_backends]:
            if r is not None:
                r.stop()

    # --- load ------------------------------------------------------------------------------
    def _pod_command(self, pod: int, run_id: str, fail: bool) -> tuple[list[str], dict[str, str], Path]:
        o = self.options
        wrapper_agent = self.agents[pod % len(self.agents)]
        search_agent = self.agents[(pod + 1) % len(self.agents)]
        work = self.workdir / "pods" / f"pod-{pod}" / run_id
        work.mkdir(parents=True, exist_ok=True)
        search = [
            sys.executable,
            str(EXAMPLE),
            "--workdir",
            str(work / "work"),
            "--max-iters",
            str(o.max_iters),
            "--workers",
            str(o.workers),
            "--seed",
            str(pod),
        ]
        # the search's processes export to another agent than the wrapper
        script = f'OTEL_EXPORTER_OTLP_ENDPOINT={shlex.quote(search_agent.http_endpoint)}; export OTEL_EXPORTER_OTLP_ENDPOINT; "$@"'
        script += "; exit 3" if fail else ""
        argv = [
            sys.executable,
            "-m",
            "otel_ai",
            "run",
            "--run-id",
            run_id,
            "--no-status",
            "--heartbeat",
            "5",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            *search,
        ]
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OTEL_", "TRACEPARENT", "TRACESTATE", "PYTEST_", "RUNPOD_"))
        }
        env.update(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": wrapper_agent.http_endpoint,
                "OTEL_AI_DATA_DIR": str(work / "runs"),
                "OTEL_AI_JAEGER_URL": self.jaeger.url if self.jaeger else "",
                "OTEL_METRIC_EXPORT_INTERVAL": "5000",
                "OTEL_RESOURCE_ATTRIBUTES": f"ai.pod.id=pod-{pod}",
            }
        )
        return argv, env, work

    def _pod(self, pod: int, until: float) -> None:
        n = 0
        while not self._stop.is_set() and time.monotonic() < until:
            n += 1
            run_id = f"fleet-pod{pod}-run{n}"
            with self._lock:
                index = len(self.runs)
            fail = (
                self.options.fail_every > 0
                and (index % self.options.fail_every) == self.options.fail_every - 1
            )
            result = RunResult(run_id, pod, fail, time.time())
            with self._lock:
                self.runs.append(result)
            argv, env, work = self._pod_command(pod, run_id, fail)
            with (work / "stdout.txt").open("wb") as out:
                proc = subprocess.Popen(
                    argv,
                    cwd=work,
                    env=env,
                    stdout=out,
                    stderr=subprocess.PIPE,
                    text=True,
                    start_new_session=True,
                )
                with self._lock:
                    self._pods.add(proc)
                try:
                    _, err = proc.communicate(timeout=900)
                finally:
                    with self._lock:
                        self._pods.discard(proc)
            result.end = time.time()
            result.returncode = proc.returncode
            result.stderr_tail = err[-2000:]
            match = _TRACE.search(err)
            result.trace_id = match.group(1) if match else None

    def _watch_latency(self) -> None:
        """Polls Jaeger for the root span of every ended failed run (always kept)."""
        while not self._stop.is_set():
            with self._lock:
                pending = [
                    r
                    for r in self.runs
                    if r.want_failed
                    and r.end
                    and r.trace_id
                    and r.seen_in_jaeger is None
                    and time.time() - r.end < 300
                ]
            for r in pending:
                if self.jaeger is not None and any(
                    s.name == semconv.SPAN_RUN for s in _jaeger_spans(self.jaeger, r.trace_id or "")
                ):
                    r.seen_in_jaeger = time.time()
            time.sleep(0.5)

    def _fault(self, at: float) -> None:
        o = self.options
        if o.fault == "none" or self._stop.wait(max(0.0, at - time.monotonic())):
            return
        began = time.time()
        if o.fault in ("sampling-kill", "sampling-restart"):
            victim: Process = self.sampling[-1]
            victim.stop(signal.SIGKILL if o.fault == "sampling-kill" else signal.SIGTERM)
            time.sleep(5)
            victim.start()
        elif o.fault == "upstream-cut":
            victim = self.lbs[-1]
            victim.stop()
            time.sleep(o.cut_for)
            victim.start()
        elif o.fault == "jaeger-restart":
            assert self.jaeger is not None
            victim = self.jaeger
            victim.stop()
            time.sleep(20)
            victim.start(timeout=120)
        self.faults.append((o.fault, began, time.time()))

    def load(self) -> None:
        """Runs the pods for the duration (each finishes the run it is in), with the fault."""
        o = self.options
        self.load_start = time.time()
        self._cpu_at_start = {c.name: _cpu_seconds(c.proc.pid) for c in self.components() if c.proc}
        until = time.monotonic() + o.duration
        threads = [threading.Thread(target=self._pod, args=(p, until), daemon=True) for p in range(o.pods)]
        watcher = threading.Thread(target=self._watch_latency, daemon=True)
        fault = threading.Thread(target=self._fault, args=(time.monotonic() + o.fault_at,), daemon=True)
        for t in [*threads, watcher, fault]:
            t.start()
        for t in threads:
            t.join()
        fault.join()
        self.load_end = time.time()
        self._measure_usage()
        # the last failed runs' roots reach Jaeger after the sampler's wait
        deadline = time.time() + 120
        while time.time() < deadline and any(
            r.want_failed and r.trace_id and r.seen_in_jaeger is None for r in self.runs
        ):
            time.sleep(1)
        self._stop.set()
        watcher.join(10)

    def _measure_usage(self) -> None:
        for c in self.components():
            if c.proc is None:
                continue
            # a restarted process counts from its new start
            base = (
                0.0
                if any(c.name in _victims(f[0]) for f in self.faults)
                else self._cpu_at_start.get(c.name, 0.0)
            )
            self.usage[c.name] = Usage(_cpu_seconds(c.proc.pid) - base, _rss_peak_mib(c.proc.pid))

    # --- checks ----------------------------------------------------------------------------
    def sent_spans(self) -> dict[str, list[SpanRecord]]:
        """What the agents received, by trace id (their file exporters' copies)."""
        by_trace: dict[str, list[SpanRecord]] = {}
        for agent in self.agents:
            for span in load_path(self.workdir / agent.name / "copy").spans:
                by_trace.setdefault(span.trace_id, []).append(span)
        return by_trace

    def span_metric_runs(self) -> float:
        """``ai.run`` calls counted by the sampling gateways' span metrics (every series'
        last cumulative value; a restarted gateway's new series count on their own)."""
        last: dict[tuple[Any, ...], float] = {}
        for i, receiver in enumerate(self.metric_backends):
            for m in receiver.metrics():
                if m.name != "traces.span.metrics.calls" or m.attributes.get("span.name") != semconv.SPAN_RUN:
                    continue
                key = (
                    i,
                    m.start_time_ns,
                    tuple(sorted(m.resource.items())),
                    tuple(sorted(m.attributes.items())),
                )
                last[key] = max(last.get(key, 0.0), float(m.value or 0))
        return sum(last.values())


def _seconds(duration: str) -> float:
    """A collector duration ("5s", "2m") in seconds."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    match = re.fullmatch(r"([0-9.]+)(ms|s|m|h)", duration.strip())
    return float(match.group(1)) * units[match.group(2)] if match else 0.0


def _victims(fault: str) -> tuple[str, ...]:
    return {
        "sampling-kill": ("sampling-2",),
        "sampling-restart": ("sampling-2",),
        "upstream-cut": ("gateway-lb-2",),
        "jaeger-restart": ("jaeger",),
    }.get(fault, ())


def _jaeger_spans(server: Jaeger, trace_id: str) -> list[SpanRecord]:
    try:
        answer = server.trace(trace_id)
    except (AssertionError, OSError, ValueError):
        return []
    if answer is None:
        return []
    return Telemetry.from_requests([answer.get("result", answer)]).spans


def _buggy_heavy(spans: Iterable[SpanRecord]) -> bool:
    for s in spans:
        buggy, total = (
            s.attributes.get(semconv.STAGE_NODES_BUGGY),
            s.attributes.get(semconv.STAGE_NODES_TOTAL),
        )
        if isinstance(buggy, int) and isinstance(total, int) and buggy >= 3 and buggy * 2 >= total:
            return True
    return False


@dataclass
class Verdict:
    runs: int = 0
    failed: int = 0
    failed_kept: int = 0
    policy_kept: int = 0  # buggy-heavy completed runs (kept by policy)
    policy_runs: int = 0
    plain_runs: int = 0  # completed, not buggy-heavy: sampled at the sample percent
    plain_kept: int = 0
    complete: int = 0
    incomplete: list[str] = field(default_factory=list)  # "run: n of m spans"
    missing_root: list[str] = field(default_factory=list)
    not_whole_runs: list[str] = field(default_factory=list)  # a run the wrapper did not finish cleanly
    damaged: list[str] = field(default_factory=list)  # run ids: kept incomplete, or to be kept and absent
    spans_sent: int = 0
    span_metric_runs: float = 0.0
    problems: list[str] = field(default_factory=list)


def verify(fleet: Fleet, wait: float = 180.0) -> Verdict:
    """Compares Jaeger with what the agents received, run by run."""
    v = Verdict()
    runs = [r for r in fleet.runs if r.end]
    v.runs = len(runs)
    for r in runs:
        expected = 3 if r.want_failed else 0
        if r.returncode != expected or not r.trace_id:
            v.not_whole_runs.append(
                f"{r.run_id}: exit {r.returncode}, trace {r.trace_id}: {r.stderr_tail[-300:]}"
            )
    # everything the agents took in is in their copies within seconds, and the last runs
    # are decided (the sampler's wait after the root, then the way to Jaeger)
    last_end = max((r.end for r in runs), default=0.0)
    time.sleep(max(3.0, last_end + _seconds(fleet.options.root_wait) + 15 - time.time()))
    sent = fleet.sent_spans()
    assert fleet.jaeger is not None
    must_keep: dict[str, RunResult] = {}
    others: dict[str, RunResult] = {}
    for r in runs:
        if not r.trace_id:
            continue
        spans = sent.get(r.trace_id, [])
        v.spans_sent += len(spans)
        root = [s for s in spans if s.name == semconv.SPAN_RUN]
        if not root:
            v.missing_root.append(r.run_id)
            continue
        outcome = root[0].attributes.get(semconv.RUN_OUTCOME)
        if outcome in ("failed", "abandoned"):
            v.failed += 1
            must_keep[r.trace_id] = r
        elif _buggy_heavy(spans):
            v.policy_runs += 1
            must_keep[r.trace_id] = r
        else:
            v.plain_runs += 1
            others[r.trace_id] = r

    def whole(trace_id: str) -> tuple[int, int, bool]:
        want = {s.span_id for s in sent[trace_id]}
        got = _jaeger_spans(fleet.jaeger, trace_id)  # type: ignore[arg-type]
        ids = [s.span_id for s in got]
        return len(set(ids) & want), len(want), len(ids) == len(set(ids)) and set(ids) == want

    deadline = time.time() + wait
    pending = dict(must_keep)
    while pending and time.time() < deadline:
        for trace_id in list(pending):
            if whole(trace_id)[2]:
                del pending[trace_id]
        if pending:
            time.sleep(2)
    for trace_id, r in must_keep.items():
        have, want, ok = whole(trace_id)
        if ok:
            v.complete += 1
        else:
            v.incomplete.append(f"{r.run_id} ({trace_id}): {have} of {want} spans")
            v.damaged.append(r.run_id)
        if have:
            if (
                r.want_failed
                or sent[trace_id]
                and any(s.attributes.get(semconv.RUN_OUTCOME) == "failed" for s in sent[trace_id])
            ):
                v.failed_kept += 1
            else:
                v.policy_kept += 1
    for trace_id, r in others.items():
        have, want, ok = whole(trace_id)
        if have:
            v.plain_kept += 1
            if ok:
                v.complete += 1
            else:
                v.incomplete.append(f"{r.run_id} ({trace_id}): {have} of {want} spans")
                v.damaged.append(r.run_id)
        elif fleet.options.sample_percent >= 100:  # every run is to be kept
            v.incomplete.append(f"{r.run_id} ({trace_id}): 0 of {want} spans")
            v.damaged.append(r.run_id)
    # span metrics: every run's root counted, sampled or not
    roots = v.failed + v.policy_runs + v.plain_runs
    try:
        wait_until("span metrics of every run", lambda: fleet.span_metric_runs() >= roots, 30, interval=1.0)
    except AssertionError:
        pass
    v.span_metric_runs = fleet.span_metric_runs()
    if v.not_whole_runs:
        v.problems.append(f"{len(v.not_whole_runs)} runs did not end as intended: {v.not_whole_runs[:3]}")
    if v.missing_root:
        v.problems.append(
            f"{len(v.missing_root)} runs have no root span in the agents' copies: {v.missing_root[:5]}"
        )
    if v.failed_kept != v.failed:
        v.problems.append(f"{v.failed - v.failed_kept} of {v.failed} failed runs not kept")
    if v.policy_kept != v.policy_runs:
        v.problems.append(f"{v.policy_runs - v.policy_kept} of {v.policy_runs} buggy-heavy runs not kept")
    if v.incomplete:
        v.problems.append(f"{len(v.incomplete)} kept runs incomplete: {v.incomplete[:5]}")
    if v.span_metric_runs != roots:
        v.problems.append(f"span metrics count {v.span_metric_runs:.0f} runs, {roots} ended")
    return v


# --- the benchmark --------------------------------------------------------------------------
def _counter(c: Collector, name: str) -> float:
    """A counter of the collector's own metrics (named with or without ``_total``, as
    collector releases differ)."""
    if c.proc is None or c.proc.poll() is not None:
        return 0.0
    return c.metric(name) + c.metric(name + "_total")


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def report(fleet: Fleet, v: Verdict) -> str:
    o = fleet.options
    elapsed = max(1e-9, fleet.load_end - fleet.load_start)
    lb_spans = sum(_counter(c, "otelcol_receiver_accepted_spans") for c in fleet.lbs)
    lb_logs = sum(_counter(c, "otelcol_receiver_accepted_log_records") for c in fleet.lbs)
    latency = [r.seen_in_jaeger - r.end for r in fleet.runs if r.seen_in_jaeger and r.end]
    lines = [
        f"fleet: {o.pods} pods, {len(fleet.agents)} agents, {len(fleet.lbs)} gateway-lb, {len(fleet.sampling)} gateway-sampling, "
        f"Jaeger (Badger); {elapsed:.0f} s of load; sample percent {o.sample_percent}; root wait {o.root_wait}; fault: {o.fault}",
        f"machine: {platform.node()} {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"runs                 {v.runs} ({v.failed} failed, {v.policy_runs} buggy-heavy, {v.plain_runs} other completed)",
        f"spans sent           {v.spans_sent}   ({v.spans_sent / elapsed:.0f}/s over the load)",
        f"first tier accepted  {lb_spans:.0f} spans ({lb_spans / elapsed:.0f}/s), {lb_logs:.0f} log records ({lb_logs / elapsed:.0f}/s)"
        + ("  [a restarted gateway-lb counts from its restart]" if o.fault == "upstream-cut" else ""),
        f"failed runs kept     {v.failed_kept}/{v.failed}",
        f"buggy-heavy kept     {v.policy_kept}/{v.policy_runs}",
        f"other runs kept      {v.plain_kept}/{v.plain_runs} ({100 * v.plain_kept / max(1, v.plain_runs):.0f} %, policy {o.sample_percent} %)",
        f"kept runs complete   {v.complete}/{v.failed_kept + v.policy_kept + v.plain_kept}",
        f"span metrics runs    {v.span_metric_runs:.0f}/{v.failed + v.policy_runs + v.plain_runs}",
        f"event -> Jaeger      p50 {_pct(latency, 50):.1f} s, p95 {_pct(latency, 95):.1f} s over {len(latency)} failed runs' root spans",
        "",
        f"{'component':<16}{'CPU s':>8}{'CPU %':>8}{'peak RSS MiB':>14}",
    ]
    for name, u in fleet.usage.items():
        lines.append(f"{name:<16}{u.cpu_s:>8.1f}{100 * u.cpu_s / elapsed:>8.1f}{u.rss_peak_mib:>14.0f}")
    for what, began, ended in fleet.faults:
        lines.append(
            f"fault {what}: {ended - began:.0f} s, from {began - fleet.load_start:.0f} s into the load"
        )
    if v.incomplete:
        lines.append("incomplete kept runs: " + "; ".join(v.incomplete[:10]))
    lines.append("problems: " + ("; ".join(v.problems) if v.problems else "none"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = Options()
    parser.add_argument("--pods", type=int, default=d.pods)
    parser.add_argument(
        "--duration", type=float, default=d.duration, help="seconds of load (each pod ends the run it is in)"
    )
    parser.add_argument(
        "--agents", type=int, default=d.agents, help="shared agents (default: one per 10 pods, at least 2)"
    )
    parser.add_argument("--lbs", type=int, default=d.lbs, help="gateway-lb instances (2+)")
    parser.add_argument("--sample-percent", type=int, default=d.sample_percent)
    parser.add_argument("--fail-every", type=int, default=d.fail_every)
    parser.add_argument("--max-iters", type=int, default=d.max_iters, help="nodes per stage of each search")
    parser.add_argument("--root-wait", default=d.root_wait, help="the sampler's wait after a run's root span")
    parser.add_argument("--fault", choices=FAULTS, default=d.fault)
    parser.add_argument("--fault-at", type=float, default=d.fault_at)
    parser.add_argument("--cut-for", type=float, default=d.cut_for)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    found = binaries("all")
    if isinstance(found, str):
        print(f"fleet: {found}", file=sys.stderr)
        return 2
    options = Options(
        pods=args.pods,
        duration=args.duration,
        agents=args.agents,
        lbs=args.lbs,
        sample_percent=args.sample_percent,
        fail_every=args.fail_every,
        max_iters=args.max_iters,
        root_wait=args.root_wait,
        fault=args.fault,
        fault_at=args.fault_at,
        cut_for=args.cut_for,
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="otel-ai-fleet-"))
    fleet = Fleet(found, workdir, options)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        fleet.start()
        fleet.load()
        verdict = verify(fleet)
        text = report(fleet, verdict)
    finally:
        fleet.stop()
    print(text)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "options": options.__dict__,
                    "verdict": verdict.__dict__,
                    "usage": {k: u.__dict__ for k, u in fleet.usage.items()},
                    "faults": fleet.faults,
                    "report": text,
                },
                indent=2,
                default=str,
            )
        )
    print(f"work directory (logs of every process): {workdir}", file=sys.stderr)
    return 1 if verdict.problems else 0


if __name__ == "__main__":
    sys.exit(main())
