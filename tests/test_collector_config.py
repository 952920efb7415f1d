"""collector-config/: the collector pipelines and the Jaeger + Loki + Grafana stack.

There is no collector binary on CI machines, so these are structural checks of every
file, plus a run of otel_ai decoded from the wire to check that every name the configs,
Loki, Prometheus and the dashboard rely on is one our telemetry really carries. When
`otelcol-contrib` is on PATH, the collector's own `validate` runs too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from collector_support import (
    COMPONENT_KINDS,
    CONFIG_DIR,
    STACK_DIR,
    LokiEntry,
    component_type,
    components_used,
    config_sets,
    env_placeholders,
    host_port,
    load_yaml,
    loki_entry,
    merged_set,
    pipeline_refs,
    prom_label_name,
    prom_metric_name,
    prom_series_names,
    promql_metric_names,
    query_label_names,
    query_matchers,
    resolve_env,
    structured_metadata_size,
)
from conftest import Wire
from otlp_receiver import OTLPReceiver

import otel_ai
import otel_ai.testing
from otel_ai import semconv

COMPONENTS = load_yaml(CONFIG_DIR / "otelcol-contrib.components.yaml")
SETS = config_sets()
COMPOSE = load_yaml(CONFIG_DIR / "docker-compose.yaml")
LOKI = load_yaml(STACK_DIR / "loki.yaml")
PROMETHEUS = load_yaml(STACK_DIR / "prometheus.yaml")
JAEGER = resolve_env(load_yaml(STACK_DIR / "jaeger.yaml"))
DATASOURCES = load_yaml(STACK_DIR / "grafana" / "provisioning" / "datasources" / "datasources.yaml")
DASHBOARD_PROVIDERS = load_yaml(STACK_DIR / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml")
DASHBOARDS = {
    p.name: json.loads(p.read_text(encoding="utf-8"))
    for p in (STACK_DIR / "grafana" / "dashboards").glob("*.json")
}

SEMCONV_NAMES = {v for k, v in vars(semconv).items() if k.isupper() and isinstance(v, str)}
LOKI_LIMIT_BYTES = 64_000  # Loki's max_structured_metadata_size default, "64kb" (humanize: 1000)
LOKI_LIMIT_ENTRIES = 128


@pytest.fixture
def lab_wire(monkeypatch: pytest.MonkeyPatch, otlp_receiver: OTLPReceiver) -> Iterator[Wire]:
    """otel_ai over OTLP/HTTP to an in-test receiver, on a RunPod-like pod (the resource
    then carries ai.pod.id and cloud.region, as on a real pod)."""
    monkeypatch.setenv("RUNPOD_POD_ID", "pod-wire")
    monkeypatch.setenv("RUNPOD_DATACENTER", "EU-RO-1")
    otel_ai.configure(endpoint=otlp_receiver.http_endpoint, protocol="http/protobuf")
    yield Wire(otlp_receiver, "http/protobuf")
    otel_ai.testing.reset()


def merged(name: str) -> dict[str, Any]:
    return merged_set(SETS[name])


def collector_files() -> list[str]:
    return sorted({f for files in SETS.values() for f in files})


# --- every file is part of a command line, every command line is complete --------------
def test_every_collector_config_is_in_a_config_set() -> None:
    not_configs = {"otelcol-contrib.components.yaml", "otelcol-ai.manifest.yaml", "docker-compose.yaml"}
    yaml_files = {p.name for p in CONFIG_DIR.glob("*.yaml")} - not_configs
    assert yaml_files == set(collector_files())
    for files in SETS.values():
        for f in files:
            assert (CONFIG_DIR / f).is_file(), f


@pytest.mark.parametrize("set_name", sorted(SETS))
def test_pipelines_reference_defined_components(set_name: str) -> None:
    cfg = merged(set_name)
    pipelines = cfg["service"]["pipelines"]
    assert pipelines, "no pipelines"
    for ref in pipeline_refs(cfg):
        kinds = [ref.role] + (["connectors"] if ref.role != "processors" else [])
        assert any(ref.component in (cfg.get(kind) or {}) for kind in kinds), (ref, "not defined")
    for pipeline, spec in pipelines.items():
        assert spec.get("receivers") and spec.get("exporters"), pipeline
        assert component_type(pipeline) in ("traces", "logs", "metrics"), pipeline
    for ext in cfg["service"].get("extensions") or []:
        assert ext in (cfg.get("extensions") or {}), ext


@pytest.mark.parametrize("set_name", sorted(SETS))
def test_connectors_join_two_pipelines(set_name: str) -> None:
    cfg = merged(set_name)
    for connector in cfg.get("connectors") or {}:
        as_exporter = [
            r.pipeline for r in pipeline_refs(cfg) if r.component == connector and r.role == "exporters"
        ]
        as_receiver = [
            r.pipeline for r in pipeline_refs(cfg) if r.component == connector and r.role == "receivers"
        ]
        assert as_exporter and as_receiver, (connector, as_exporter, as_receiver)


def test_every_defined_component_is_used() -> None:
    """Each component a file defines is used by a command line that includes the file
    (an overlay may leave its base's components unused: agent-direct.yaml does)."""
    for f in collector_files():
        own = load_yaml(CONFIG_DIR / f)
        users = [name for name, files in SETS.items() if f in files]
        used: dict[str, set[str]] = {kind: set() for kind in COMPONENT_KINDS}
        for name in users:
            for kind, ids in components_used(merged(name)).items():
                used[kind] |= ids
        for kind in COMPONENT_KINDS:
            for component in own.get(kind) or {}:
                assert component in used[kind], f"{f}: {kind} {component} is never used"


@pytest.mark.parametrize("set_name", sorted(SETS))
def test_component_types_belong_to_the_pinned_distribution(set_name: str) -> None:
    cfg = merged(set_name)
    modules = {m for mods in COMPONENTS["modules"].values() for m in mods}
    for kind in COMPONENT_KINDS:
        for component in cfg.get(kind) or {}:
            kind_type = component_type(component)
            assert kind_type in COMPONENTS["types"][kind], (
                f"{kind} type {kind_type!r} is not in otelcol-contrib.components.yaml; check its "
                f"metadata.yaml at {COMPONENTS['version']} and add it"
            )
            assert COMPONENTS["types"][kind][kind_type] in COMPONENTS["modules"][kind]
            assert COMPONENTS["types"][kind][kind_type] in modules
            if kind != "receivers":  # `otlp` is still the receiver's name
                assert kind_type not in COMPONENTS["deprecated_types"], (component, "deprecated name")


def test_pinned_versions_agree() -> None:
    version = COMPONENTS["version"]
    assert COMPONENTS["image"] == f"otel/opentelemetry-collector-contrib:{version}"
    collectors = [s for s in COMPOSE["services"].values() if "opentelemetry-collector" in s.get("image", "")]
    assert collectors and all(s["image"] == COMPONENTS["image"] for s in collectors)


# --- what the issue asks of each role ---------------------------------------------------
def _first_processor(cfg: dict[str, Any], pipeline: str) -> str | None:
    procs = cfg["service"]["pipelines"][pipeline].get("processors") or []
    return procs[0] if procs else None


@pytest.mark.parametrize("set_name", sorted(SETS))
def test_memory_limiter_first_where_data_enters(set_name: str) -> None:
    cfg = merged(set_name)
    connectors = set(cfg.get("connectors") or {})
    for pipeline, spec in cfg["service"]["pipelines"].items():
        if set(spec["receivers"]) <= connectors:
            continue  # fed by another pipeline that already went through memory_limiter
        assert component_type(_first_processor(cfg, pipeline) or "") == "memory_limiter", pipeline
        # batching after any sampling, so that dropped data is not batched (and tail
        # sampling sees whole traces)
        procs = [component_type(p) for p in spec.get("processors") or []]
        if "tail_sampling" in procs:
            assert procs.index("batch") > procs.index("tail_sampling")


def _network_exporters(cfg: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    used = components_used(cfg)["exporters"]
    for name, spec in (cfg.get("exporters") or {}).items():
        if name in used and component_type(name) in ("otlp_grpc", "otlp_http"):
            yield name, spec or {}


@pytest.mark.parametrize("set_name", ["agent", "agent-secure", "agent-direct"])
def test_agent_queues_persist_and_retry_forever(set_name: str) -> None:
    cfg = resolve_env(merged(set_name))
    storages = {e for e in cfg["service"]["extensions"] if component_type(e) == "file_storage"}
    exporters = list(_network_exporters(cfg))
    assert exporters
    for name, spec in exporters:
        assert spec["sending_queue"]["enabled"] is True, name
        assert spec["sending_queue"]["storage"] in storages, name
        assert spec["retry_on_failure"]["enabled"] is True, name
        assert spec["retry_on_failure"]["max_elapsed_time"] == 0, name
    # the receivers take gRPC and HTTP
    assert set(cfg["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}


@pytest.mark.parametrize("set_name", ["agent-secure", "gateway-lb-secure"])
def test_secure_overlays_protect_every_protocol(set_name: str) -> None:
    cfg = merged(set_name)
    extensions = cfg["service"]["extensions"]
    base = merged(set_name.removesuffix("-secure"))
    assert set(base["service"]["extensions"]) <= set(extensions), "the overlay dropped a base extension"
    for proto, spec in cfg["receivers"]["otlp"]["protocols"].items():
        assert spec["tls"]["cert_file"] and spec["tls"]["key_file"], proto
        assert spec["auth"]["authenticator"] in extensions, proto
        assert component_type(spec["auth"]["authenticator"]) == "bearertokenauth"
    for name, spec in (cfg.get("exporters") or {}).items():
        if "auth" in spec:
            assert spec["tls"]["insecure"] is False and spec["auth"]["authenticator"] in extensions, name


def test_fleet_routes_traces_by_trace_id_to_the_sampling_tier() -> None:
    lb = resolve_env(merged("gateway-lb"))
    ((name, spec),) = [(n, s) for n, s in lb["exporters"].items() if component_type(n) == "load_balancing"]
    assert spec["routing_key"] == "traceID"
    assert lb["service"]["pipelines"]["traces"]["exporters"] == [name]
    sampling = resolve_env(merged("gateway-sampling"))
    host, port = spec["resolver"]["dns"]["hostname"], int(spec["resolver"]["dns"]["port"])
    assert port == host_port(sampling["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])[1]
    assert host in COMPOSE["services"]
    # span metrics see every span: computed in the pipeline before tail_sampling
    pipes = sampling["service"]["pipelines"]
    (before,) = [p for p, s in pipes.items() if "otlp" in s["receivers"]]
    assert not any(component_type(p) == "tail_sampling" for p in pipes[before].get("processors") or [])
    assert any(component_type(e) == "span_metrics" for e in pipes[before]["exporters"])
    sampled = [
        p
        for p, s in pipes.items()
        if any(component_type(x) == "tail_sampling" for x in s.get("processors") or [])
    ]
    assert sampled and all(
        any(component_type(e) == "otlp_grpc" for e in pipes[p]["exporters"]) for p in sampled
    )


def test_tail_sampling_policies_keep_failed_buggy_heavy_and_slow_runs() -> None:
    ts = resolve_env(merged("gateway-sampling"))["processors"]["tail_sampling"]
    policies = {p["type"]: p for p in ts["policies"]}
    failed = policies["string_attribute"]["string_attribute"]
    assert failed["key"] == semconv.RUN_OUTCOME
    assert set(failed["values"]) >= {semconv.OUTCOME_FAILED, semconv.OUTCOME_ABANDONED}
    assert "invert_match" not in failed
    (condition,) = policies["ottl_condition"]["ottl_condition"]["span"]
    assert semconv.STAGE_NODES_BUGGY in condition and semconv.STAGE_NODES_TOTAL in condition
    assert policies["latency"]["latency"]["threshold_ms"] > 0
    assert 0 < policies["probabilistic"]["probabilistic"]["sampling_percentage"] < 100
    # a run's spans wait for its root, which comes when the run ends (hours)
    assert ts["decision_wait_after_root_received"]
    hours = ts["decision_wait"]
    assert hours.endswith("h") and int(hours[:-1]) >= 24


def _defined_in(kind: str, name: str) -> dict[str, Any]:
    return {
        f: (load_yaml(CONFIG_DIR / f).get(kind) or {})[name]
        for f in collector_files()
        if name in (load_yaml(CONFIG_DIR / f).get(kind) or {})
    }


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("exporters", "otlp_grpc/jaeger"),
        ("exporters", "otlp_http/loki"),
        ("exporters", "otlp_http/prometheus"),
        ("processors", "transform/loki"),
        ("processors", "resource/spanmetrics"),
        ("connectors", "span_metrics"),
    ],
)
def test_shared_definitions_are_the_same_everywhere(kind: str, name: str) -> None:
    copies = _defined_in(kind, name)
    assert len(copies) >= 2, (name, list(copies))
    first = next(iter(copies.values()))
    for f, spec in copies.items():
        assert spec == first, f"{name} differs in {f}: keep the copies equal"


def test_env_placeholders_all_have_defaults() -> None:
    """Every setting has a default that works in the compose stack; `validate` needs no
    environment."""
    for f in collector_files():
        for name, default in env_placeholders(load_yaml(CONFIG_DIR / f)):
            assert default is not None and default != "", f"{f}: ${{env:{name}}} has no default"


# --- Loki stays within its limits ------------------------------------------------------
@dataclass
class _LokiShaping:
    resource_count: int
    resource_bytes: int
    log_count: int
    priority: list[str]
    long_keys: list[str]
    head: int
    tail: int
    threshold: int
    other_bytes: int
    long_cap: int


def _loki_shaping() -> _LokiShaping:
    groups = {
        g["context"]: g["statements"]
        for g in merged("agent-direct")["processors"]["transform/loki"]["log_statements"]
    }
    res = " ".join(groups["resource"])
    log = groups["log"]
    (rc, _resource_keys) = re.search(r"limit\(attributes, (\d+), \[([^\]]*)\]\)", res).groups()  # type: ignore[union-attr]
    (rb,) = re.search(r"truncate_all\(attributes, (\d+)\)", res).groups()  # type: ignore[union-attr]
    (lc, lkeys) = re.search(r"limit\(attributes, (\d+), \[([^\]]*)\]\)", " ".join(log)).groups()  # type: ignore[union-attr]
    head_tail = [s for s in log if s.startswith("set(attributes[") and "Substring" in s and "cache" not in s]
    long_keys = [re.match(r'set\(attributes\["([^"]+)"\]', s).group(1) for s in head_tail]  # type: ignore[union-attr]
    head, tail, threshold = (
        int(x)
        for x in re.search(r"Substring\([^,]+, 0, (\d+)\).*- (\d+), \2\).*> (\d+)", head_tail[0]).groups()
    )  # type: ignore[union-attr]
    (other,) = re.search(r"truncate_all\(attributes, (\d+)\)", " ".join(log)).groups()  # type: ignore[union-attr]
    (cap,) = re.search(r"truncate_all\(cache, (\d+)\)", " ".join(log)).groups()  # type: ignore[union-attr]
    parked = [re.match(r'set\(cache\["([^"]+)"\]', s).group(1) for s in log if s.startswith("set(cache[")]  # type: ignore[union-attr]
    assert parked == long_keys, "every long text is parked before truncate_all"
    return _LokiShaping(
        int(rc),
        int(rb),
        int(lc),
        re.findall(r'"([^"]+)"', lkeys),
        long_keys,
        head,
        tail,
        threshold,
        int(other),
        int(cap),
    )


def _shape(record: Any, s: _LokiShaping) -> Any:
    """What transform/loki does to a record (bytes semantics, as OTTL's Len/Substring)."""

    def cut(value: str, limit: int) -> str:
        return value.encode()[:limit].decode(errors="ignore")

    resource = dict(list(record.resource.items())[: s.resource_count])
    resource = {k: cut(v, s.resource_bytes) if isinstance(v, str) else v for k, v in resource.items()}
    attrs = dict(record.attributes)
    if len(attrs) > s.log_count:
        keep = [k for k in s.priority if k in attrs]
        keep += [k for k in attrs if k not in keep][: s.log_count - len(keep)]
        attrs = {k: attrs[k] for k in keep}
    for key in s.long_keys:
        value = attrs.get(key)
        if isinstance(value, str) and len(value.encode()) > s.threshold:
            raw = value.encode()
            attrs[key] = (raw[: s.head] + b" ...[cut]... " + raw[-s.tail :]).decode(errors="ignore")
    attrs = {
        k: (cut(v, s.long_cap if k in s.long_keys else s.other_bytes) if isinstance(v, str) else v)
        for k, v in attrs.items()
    }
    return replace(record, resource=resource, attributes=attrs)


def test_transform_loki_keeps_the_queried_names_and_every_record_under_loki_limits(lab_wire: Wire) -> None:
    s = _loki_shaping()
    assert {semconv.RUN_ID, semconv.EVENT_NAME, semconv.EVENT_SEQ, semconv.EXCEPTION_STACKTRACE} <= set(
        s.priority
    )
    assert len(s.priority) < s.log_count
    # worst case by arithmetic: every value at its cap, name lengths included
    worst = (
        s.resource_count * (s.resource_bytes + 64)
        + len(s.long_keys) * (s.long_cap + 32)
        + (s.log_count - len(s.long_keys)) * (s.other_bytes + 64)
        + 400  # trace_id, span_id, severity, scope, observed_timestamp
    )
    assert worst < LOKI_LIMIT_BYTES, worst
    assert s.resource_count + s.log_count + 8 <= LOKI_LIMIT_ENTRIES
    # and on a real failed run, blown up: 16 KiB stack trace of 3-byte characters and
    # forty 4 KiB attributes
    run = otel_ai.run("collector-loki-limits", gpu="NVIDIA H100")
    with pytest.raises(RuntimeError), run:
        run.event("custom.event", {f"custom.key{i}": "é" * 4096 for i in range(40)})
        raise RuntimeError("€" * 20000)
    otlp = LOKI["limits_config"]["otlp_config"]
    records = [r for r in lab_wire.logs() if r.attributes.get(semconv.RUN_ID) == "collector-loki-limits"]
    failed = [r for r in records if r.event_name == semconv.RUN_FAILED]
    assert failed and failed[0].attributes[semconv.EXCEPTION_STACKTRACE]
    blown = failed[0]
    blown = replace(blown, attributes={**blown.attributes, **{f"x.k{i}": "é" * 4096 for i in range(40)}})
    for record in [*records, blown]:
        entry = loki_entry(_shape(record, s), otlp)
        assert structured_metadata_size(entry.metadata) < LOKI_LIMIT_BYTES
        assert len(entry.metadata) <= LOKI_LIMIT_ENTRIES
        if record is blown:
            assert entry.metadata["exception_stacktrace"]
            assert entry.labels["ai_run_id"] == "collector-loki-limits"


# --- the stack: ports, images, healthchecks ----------------------------------------------
def _compose_collectors() -> dict[str, list[str]]:
    """compose service -> the config files its command line passes."""
    out = {}
    for name, svc in COMPOSE["services"].items():
        if "opentelemetry-collector" in svc.get("image", ""):
            files = [arg.split("=", 1)[1] for arg in svc["command"] if arg.startswith("--config=")]
            out[name] = [Path(f).name for f in files]
    return out


def _published(svc: dict[str, Any]) -> dict[int, int]:
    """container port -> host port."""
    out = {}
    for spec in svc.get("ports") or []:
        parts = resolve_env(spec.replace("${OTEL_STACK_BIND:-127.0.0.1}", "127.0.0.1")).split(":")
        out[int(parts[-1])] = int(parts[-2])
    return out


def _listening(service: str) -> set[int]:
    """Ports a compose service listens on, from its own config file."""
    if service in _compose_collectors():
        cfg = resolve_env(merged_set(_compose_collectors()[service]))
        ports = {
            host_port(p["endpoint"])[1]
            for p in cfg["receivers"].get("otlp", {}).get("protocols", {}).values()
        }
        ports.add(host_port(cfg["extensions"]["health_check"]["endpoint"])[1])
        ports.add(
            cfg["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]["port"]
        )
        return ports
    if service == "jaeger":
        ext = JAEGER["extensions"]
        ports = {host_port(p["endpoint"])[1] for p in JAEGER["receivers"]["otlp"]["protocols"].values()}
        ports |= {
            host_port(ext["jaeger_query"]["http"]["endpoint"])[1],
            host_port(ext["healthcheckv2"]["http"]["endpoint"])[1],
        }
        ports.add(
            JAEGER["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]["port"]
        )
        return ports
    if service == "loki":
        return {LOKI["server"]["http_listen_port"]}
    if service == "prometheus":
        assert "--web.enable-otlp-receiver" in COMPOSE["services"]["prometheus"]["command"]
        return {9090}
    if service == "grafana":
        return {3000}
    if service == "s3":
        return {8333}  # weed mini's S3 gateway
    raise AssertionError(f"no port knowledge for {service}")


def test_compose_runs_config_sets() -> None:
    collectors = _compose_collectors()
    assert "otelcol" in collectors
    for service, files in collectors.items():
        assert files in SETS.values(), (service, files)
        svc = COMPOSE["services"][service]
        assert all(arg.startswith("--config=/etc/otelcol/") for arg in svc["command"]), service
        assert "./:/etc/otelcol:ro" in svc["volumes"], service


def test_ports_agree_between_configs_and_compose() -> None:
    services = COMPOSE["services"]
    for name, svc in services.items():
        for container_port in _published(svc):
            assert container_port in _listening(name), (name, container_port)
    # every endpoint a collector exports to is a compose service listening there
    for service, files in _compose_collectors().items():
        cfg = resolve_env(merged_set(files))
        for exporter in components_used(cfg)["exporters"]:
            spec = cfg["exporters"][exporter]
            if "endpoint" in spec:
                host, port = host_port(spec["endpoint"])
                assert host in services and port in _listening(host), (service, exporter, host, port)
    # Grafana's data sources, Prometheus' scrape targets, the healthchecks
    for ds in DATASOURCES["datasources"]:
        host, port = host_port(ds["url"])
        assert port in _listening(host), ds["name"]
    for job in PROMETHEUS["scrape_configs"]:
        for static in job.get("static_configs") or []:
            for target in static["targets"]:
                host, port = host_port(target)
                assert host == "localhost" or port in _listening(host), target
        for dns in job.get("dns_sd_configs") or []:
            for host in dns["names"]:
                assert dns["port"] in _listening(host), host
    for name, svc in services.items():
        for arg in (svc.get("healthcheck") or {}).get("test", []):
            if arg.startswith("http://"):
                assert host_port(arg)[1] in _listening(name), (name, arg)


# What each pinned image has to run a healthcheck with, from its Dockerfile: the collector
# is FROM scratch (the binary only), Loki distroless (the binary only, which has -health),
# Jaeger, Grafana and SeaweedFS alpine (busybox wget), Prometheus busybox.
_IMAGE_TOOLS = {
    "otel/opentelemetry-collector-contrib": set(),
    "grafana/loki": {"/usr/bin/loki"},
    "jaegertracing/jaeger": {"wget"},
    "grafana/grafana": {"wget"},
    "chrislusf/seaweedfs": {"wget", "curl"},
    "prom/prometheus": {"wget"},
    "busybox": {"sh", "wget", "chown"},
}


def test_images_are_pinned_and_healthchecks_use_what_the_image_has() -> None:
    for name, svc in COMPOSE["services"].items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert tag and tag != "latest" and re.match(r"v?\d+\.\d+", tag), image
        tools = _IMAGE_TOOLS[repo]
        check = svc.get("healthcheck")
        if not tools:
            assert check is None, f"{name}: {image} has no shell or client to run a healthcheck"
            continue
        if name == "otelcol-init":
            continue
        assert check and check["test"][0] == "CMD", name
        assert check["test"][1] in tools, (name, check["test"][1])
    # services that wait for others wait for a healthcheck that exists
    for name, svc in COMPOSE["services"].items():
        depends = svc.get("depends_on") or {}
        for other, cond in depends.items() if isinstance(depends, dict) else []:
            if cond.get("condition") == "service_healthy":
                assert COMPOSE["services"][other].get("healthcheck"), (name, other)


def test_grafana_provisioning_links_traces_and_logs_both_ways() -> None:
    by_uid = {ds["uid"]: ds for ds in DATASOURCES["datasources"]}
    assert {"prometheus", "loki", "jaeger"} <= set(by_uid)
    (derived,) = by_uid["loki"]["jsonData"]["derivedFields"]
    assert derived["matcherType"] == "label" and derived["datasourceUid"] == "jaeger"
    assert derived["matcherRegex"] == "trace_id"  # Loki's structured metadata for the trace id
    assert derived["url"] == "$${__value.raw}"
    t2l = by_uid["jaeger"]["jsonData"]["tracesToLogsV2"]
    assert t2l["datasourceUid"] == "loki" and t2l["customQuery"] is True
    assert 'trace_id="$${__trace.traceId}"' in t2l["query"]
    (provider,) = DASHBOARD_PROVIDERS["providers"]
    mounts = COMPOSE["services"]["grafana"]["volumes"]
    assert any(m.startswith("./stack/grafana/dashboards:" + provider["options"]["path"]) for m in mounts)
    home = COMPOSE["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).name in DASHBOARDS


def _panels() -> Iterator[dict[str, Any]]:
    for dashboard in DASHBOARDS.values():
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                yield panel


def test_dashboard_covers_the_seed_run_page() -> None:
    titles = " | ".join(p["title"].lower() for p in _panels())
    for part in (
        "runs by outcome",
        "current activity",
        "progress by stage",
        "nodes good / buggy",
        "best metric",
        "stage timing",
        "live logs",
        "lifecycle events",
        "artifacts",
        "validation summary",
        "gpu",
        "memory",
        "errors",
        "trace of this run",
    ):
        assert part in titles, part
    uids = {ds["uid"] for ds in DATASOURCES["datasources"]}
    for panel in _panels():
        assert panel["datasource"]["uid"] in uids, panel["title"]
        assert panel["targets"] and all(
            t["datasource"]["uid"] == panel["datasource"]["uid"] for t in panel["targets"]
        )
    for dashboard in DASHBOARDS.values():
        for var in dashboard["templating"]["list"]:
            if var["type"] == "query":
                assert var["datasource"]["uid"] in uids


# --- the names everything relies on, checked against a run decoded from the wire --------
class FakeNvml:
    """One GPU through the calls otel_ai's GPU sampler makes of pynvml."""

    class NVMLError(Exception):
        def __init__(self, value: int = 3) -> None:
            super().__init__(value)
            self.value = value

    NVML_TEMPERATURE_GPU = 0
    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_ERROR_LIBRARY_NOT_FOUND = 12
    NVML_ERROR_GPU_IS_LOST = 15

    @dataclass
    class _Memory:
        total: int
        free: int
        used: int

    @dataclass
    class _Rates:
        gpu: int
        memory: int

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:
        return "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUUID(self, handle: int) -> bytes:
        return b"GPU-11111111-2222-3333-4444-555555555555"

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return self._Rates(42, 10)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return self._Memory(80 << 30, 50 << 30, 30 << 30)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        return 61

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return 300_000

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        return 9_000_000


@dataclass
class DecodedRun:
    spans: list[Any]
    logs: list[Any]
    metrics: list[Any]
    loki: list[LokiEntry]
    prom_series: dict[str, set[str]]  # Prometheus series name -> label names


def _decoded_run(wire: Wire) -> DecodedRun:
    """A small run with everything the dashboard shows, exported over OTLP and decoded."""
    import otel_ai.metrics
    from otel_ai.export.providers import get_pipeline

    otel_ai.metrics.start(get_pipeline().meter, nvml=FakeNvml(), min_interval_s=0.0)
    try:
        run = otel_ai.run("collector-wire-run", gpu="NVIDIA H100 80GB HBM3")
        with pytest.raises(RuntimeError), run:
            with run.stage("1_initial_implementation", description="first working code") as stage:
                for i in range(5):
                    with stage.node(
                        f"n{i}", kind="draft" if i == 0 else "debug", parent_id=None if i == 0 else "n0"
                    ) as node:
                        node.code_generated(f"print({i})")
                        with node.executing("experiment"):
                            pass
                        node.completed(
                            is_buggy=i >= 2,
                            metric=0.5 + i / 10 if i < 2 else None,
                            exec_time_s=1.0 + i,
                            exc_type="ValueError" if i >= 2 else None,
                            **{semconv.NODE_SUMMARY: json.dumps({"node": i})},
                        )
                    stage.progress(
                        iteration=i + 1,
                        max_iterations=5,
                        good_nodes=min(i + 1, 2),
                        buggy_nodes=max(0, i - 1),
                        total_nodes=i + 1,
                        best_metric=0.6,
                    )
                stage.metric("val_loss", 0.31)
                stage.selected_best("n1", 0.6)
            run.log("epoch 1 loss=0.4", level="info", source="experiment.log")
            run.log("CUDA out of memory", level="error", source="stderr")
            run.artifact_detected("figures/loss.png", type="plot", size_bytes=1234)
            run.artifact_registered(
                "runs/collector-wire-run/loss.png",
                size_bytes=1234,
                sha256="ab" * 32,
                content_type="image/png",
                kind="plot",
                uri="s3://ai-artifacts/runs/collector-wire-run/loss.png",
            )
            with run.paper() as paper:
                paper.generated("runs/collector-wire-run/paper.pdf")
            with run.validation("gpt-4o-2024-11-20") as review:
                review.completed("pass", {"overall": 0.7}, "clear and correct")
            raise RuntimeError("stage 2 diverged")
        wire.flush()
    finally:
        otel_ai.metrics.stop()
    otlp = LOKI["limits_config"]["otlp_config"]
    logs = [r for r in wire.logs()]
    metrics = wire.latest_metrics()
    promoted = set(PROMETHEUS["otlp"]["promote_resource_attributes"])
    series: dict[str, set[str]] = {}
    for point in metrics:
        base = prom_metric_name(point.name, point.unit, point.kind, point.is_monotonic)
        labels = {prom_label_name(k) for k in point.attributes} | {"job", "instance"}
        labels |= {prom_label_name(k) for k in point.resource if k in promoted}
        if point.kind == "histogram":
            labels.add("le")
        for name in prom_series_names(base, point.kind):
            series.setdefault(name, set()).update(labels)
    return DecodedRun(wire.spans(), logs, metrics, [loki_entry(r, otlp) for r in logs], series)


def _span_metrics_series() -> dict[str, set[str]]:
    """What the span_metrics connector sends Prometheus: {namespace}.calls (counter) and
    {namespace}.duration (histogram in the configured unit), labelled by span name, kind,
    status and the configured dimensions; service.name (job) and the collector (instance)
    on the resource."""
    spec = merged("agent-direct")["connectors"]["span_metrics"]
    namespace = spec.get("namespace", "traces.span.metrics")
    labels = {"job", "instance", "span_name", "span_kind", "status_code"}
    labels |= {prom_label_name(d["name"]) for d in spec.get("dimensions") or []}
    calls = prom_metric_name(f"{namespace}.calls", "{call}", "sum", True)
    duration = prom_metric_name(f"{namespace}.duration", spec["histogram"]["unit"], "histogram", None)
    out = {calls: labels}
    for name in prom_series_names(duration, "histogram"):
        out[name] = labels | {"le"}
    return out


def test_configs_read_only_otel_ai_names_that_the_wire_carries(lab_wire: Wire) -> None:
    run = _decoded_run(lab_wire)
    span_keys = {k for s in run.spans for k in (*s.attributes, *s.resource)}
    log_keys = {k for r in run.logs for k in r.attributes}
    resource_keys = {k for r in run.logs for k in r.resource}
    # tail sampling and span metrics read span attributes
    sampling = merged("gateway-sampling")
    ts = sampling["processors"]["tail_sampling"]
    read = {p["string_attribute"]["key"] for p in ts["policies"] if p["type"] == "string_attribute"}
    for p in ts["policies"]:
        if p["type"] == "ottl_condition":
            read |= set(re.findall(r'attributes\["([^"]+)"\]', " ".join(p["ottl_condition"]["span"])))
    read |= {d["name"] for d in sampling["connectors"]["span_metrics"]["dimensions"]}
    assert read <= SEMCONV_NAMES, read - SEMCONV_NAMES
    assert read <= span_keys, read - span_keys
    # transform/loki reads log and resource attributes
    groups = {
        g["context"]: " ".join(g["statements"])
        for g in merged("agent-direct")["processors"]["transform/loki"]["log_statements"]
    }
    log_read = set(re.findall(r'"([a-z][a-z0-9_.]+)"', groups["log"])) - {""}
    log_read = {k for k in log_read if "." in k and not k.startswith(" ")}
    assert log_read <= SEMCONV_NAMES, log_read - SEMCONV_NAMES
    assert log_read <= log_keys, log_read - log_keys
    res_read = set(re.findall(r'"([a-z][a-z0-9_.]+)"', groups["resource"]))
    assert res_read <= SEMCONV_NAMES and res_read <= resource_keys, res_read - resource_keys
    # Loki's labels and Prometheus' promoted attributes
    otlp = LOKI["limits_config"]["otlp_config"]
    loki_res = {a for rule in otlp["resource_attributes"]["attributes_config"] for a in rule["attributes"]}
    loki_log = {a for rule in otlp["log_attributes"] for a in rule["attributes"]}
    assert loki_res <= SEMCONV_NAMES and loki_res <= resource_keys, loki_res - resource_keys
    assert loki_log <= SEMCONV_NAMES and loki_log <= log_keys, loki_log - log_keys
    promoted = set(PROMETHEUS["otlp"]["promote_resource_attributes"])
    metric_resource_keys = {k for p in run.metrics for k in p.resource}
    assert promoted <= SEMCONV_NAMES and promoted <= metric_resource_keys, promoted - metric_resource_keys
    # every record carries the labels the dashboard selects runs by
    for entry in run.loki:
        assert {"service_name", "ai_pod_id", "ai_run_id"} <= set(entry.labels), entry.labels
        assert "trace_id" in entry.metadata


def _loki_queries() -> Iterator[tuple[str, str]]:
    for panel in _panels():
        if panel["datasource"]["uid"] == "loki":
            for t in panel["targets"]:
                yield panel["title"], t["expr"]
    for dashboard in DASHBOARDS.values():
        for var in dashboard["templating"]["list"]:
            if var["type"] == "query" and var["datasource"]["uid"] == "loki":
                yield var["name"], var["query"]
    for ds in DATASOURCES["datasources"]:
        t2l = (ds.get("jsonData") or {}).get("tracesToLogsV2")
        if t2l:
            yield ds["name"], t2l["query"].replace("$$", "$")


def test_dashboard_logql_uses_labels_and_metadata_loki_really_has(lab_wire: Wire) -> None:
    run = _decoded_run(lab_wire)
    labels = {k for e in run.loki for k in e.labels}
    metadata = {k for e in run.loki for k in e.metadata}
    event_names = {e.metadata["event_name"] for e in run.loki if "event_name" in e.metadata}
    queries = list(_loki_queries())
    assert queries
    for where, expr in queries:
        for name in query_label_names(expr):
            assert name in labels | metadata, (
                f"{where}: {name!r} is neither a Loki label nor metadata of our records"
            )
        # stream selectors may only use index labels
        for selector in re.findall(r"\{([^}]*)\}", expr.replace("${__trace.traceId}", "")):
            for name, _, _ in query_matchers("{" + selector + "}"):
                assert name in labels, f"{where}: {name!r} in a stream selector is not an index label"
        for name, op, value in query_matchers(expr):
            if name != "event_name" or not value:
                continue
            if op in ("=", "!="):
                assert value in SEMCONV_NAMES, (where, value)
            else:
                pattern = re.compile(value)
                assert any(pattern.fullmatch(e) for e in event_names), (where, value)
    # table panels pick structured metadata by name
    for panel in _panels():
        for transform in panel.get("transformations") or []:
            if transform["id"] == "filterFieldsByName":
                pattern = transform["options"]["include"]["pattern"]
                for alt in pattern.strip("^$()").split("|"):
                    if alt == "Time":
                        continue
                    rx = re.compile(alt)
                    assert any(rx.fullmatch(m) for m in metadata | labels), (panel["title"], alt)


def test_dashboard_promql_uses_metric_and_label_names_prometheus_really_has(lab_wire: Wire) -> None:
    run = _decoded_run(lab_wire)
    series = dict(run.prom_series)
    for name, labels in _span_metrics_series().items():
        series.setdefault(name, set()).update(labels)
    # the names of SPEC section 4 as Prometheus stores them
    assert {
        "ai_nodes_total",
        "ai_stage_progress_ratio",
        "ai_stage_best_metric_ratio",
        "ai_node_exec_time_seconds_bucket",
        "ai_node_duration_seconds_bucket",
    } <= set(series)
    found = 0
    for panel in _panels():
        if panel["datasource"]["uid"] != "prometheus":
            continue
        for target in panel["targets"]:
            expr = target["expr"]
            metrics = promql_metric_names(expr)
            assert metrics, (panel["title"], expr)
            for metric in metrics:
                assert metric in series, f"{panel['title']}: {metric} is not a series our telemetry produces"
                used = (
                    query_label_names(expr) - {"le"}
                    if not metric.endswith("_bucket")
                    else query_label_names(expr)
                )
                missing = used - series[metric]
                assert not missing, f"{panel['title']}: {metric} has no label {missing}"
                found += 1
    assert found >= 8


# --- the collector's own verdict, when it is here ----------------------------------------
def test_validate_script_runs_every_config_set(tmp_path: Path) -> None:
    fake = tmp_path / "otelcol-contrib"
    log = tmp_path / "calls"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\n', encoding="utf-8")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    env.pop("OTELCOL_BIN", None)
    done = subprocess.run(
        ["bash", str(CONFIG_DIR / "validate.sh")],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    calls = log.read_text(encoding="utf-8").splitlines()
    expected = ["validate " + " ".join(f"--config={f}" for f in files) for files in SETS.values()]
    assert calls == expected


@pytest.mark.skipif(shutil.which("otelcol-contrib") is None, reason="otelcol-contrib is not on PATH")
def test_otelcol_contrib_validate_accepts_every_config_set() -> None:
    done = subprocess.run(
        ["bash", str(CONFIG_DIR / "validate.sh")], check=False, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_docs_and_comments_use_current_component_names() -> None:
    """Comments and docs too: an operator copies from them."""
    deprecated = set(COMPONENTS["deprecated_types"]) - {"otlp"}
    docs = [CONFIG_DIR / f for f in collector_files()] + [CONFIG_DIR.parent / "docs" / "operations.md"]
    for path in docs:
        text = path.read_text(encoding="utf-8")
        for old in deprecated:
            as_key = re.search(rf"(?m)^\s*{old}(?:/[\w.-]+)?:", text)
            in_list = re.search(rf"[\[,]\s*{old}(?:/[\w.-]+)?\s*[,\]]", text)
            assert not (as_key or in_list), (path.name, old)
