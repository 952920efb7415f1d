"""Reading collector-config/ the way its consumers do, for tests/test_collector_config.py.

- Collector configs: YAML files merged in command-line order as the collector's confmap
  does (maps merged key by key, every other value, lists included, replaced), with
  ``${env:NAME:-default}`` placeholders resolved to their defaults.
- Loki: how an OTLP log record becomes index labels and structured metadata (Loki 3.7's
  ``pkg/loghttp/push/otlp.go``): configured resource and log attributes become labels,
  every other attribute structured metadata, names through Prometheus' label namer
  (characters outside ``[a-zA-Z0-9]`` collapse to one ``_``), plus the fields Loki adds.
- Prometheus: how an OTLP metric is named by the OTLP receiver's default
  ``UnderscoreEscapingWithSuffixes`` translation (prometheus/otlptranslator): unit
  suffixes, ``_total`` for monotonic sums, ``_ratio`` for gauges of unit ``1``.
- Names used by LogQL and PromQL queries, by simple scanning (our queries keep to the
  shapes scanned here; a test fails on anything it cannot read).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "collector-config"
STACK_DIR = CONFIG_DIR / "stack"
COMPONENT_KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")


# --- collector configs -----------------------------------------------------------------
def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def config_sets() -> dict[str, list[str]]:
    """config-sets.txt: set name -> the files given as --config, in order."""
    sets: dict[str, list[str]] = {}
    for line in (CONFIG_DIR / "config-sets.txt").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, *files = line.split()
        sets[name] = files
    return sets


def merge(base: Any, overlay: Any) -> Any:
    """The collector's merge of two config files: maps merged, everything else replaced."""
    if isinstance(base, Mapping) and isinstance(overlay, Mapping):
        out = dict(base)
        for key, value in overlay.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    return overlay


_ENV = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}")


def env_placeholders(obj: Any) -> Iterator[tuple[str, str | None]]:
    """Every ``${env:NAME[:-default]}`` in a loaded config: (name, default or None)."""
    if isinstance(obj, Mapping):
        for value in obj.values():
            yield from env_placeholders(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from env_placeholders(value)
    elif isinstance(obj, str):
        for m in _ENV.finditer(obj):
            yield m.group(1), m.group(3) if m.group(2) else None


def resolve_env(obj: Any) -> Any:
    """Placeholders replaced by their defaults; a value that is one placeholder is typed
    the way the collector types it (YAML: ``true`` a bool, ``512`` an int)."""
    if isinstance(obj, Mapping):
        return {k: resolve_env(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [resolve_env(v) for v in obj]
    if isinstance(obj, str):
        whole = _ENV.fullmatch(obj)
        if whole:
            return yaml.safe_load(whole.group(3) or "") if whole.group(2) else ""
        return _ENV.sub(lambda m: m.group(3) or "", obj)
    return obj


def merged_set(files: Iterable[str]) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    for name in files:
        cfg = merge(cfg, load_yaml(CONFIG_DIR / name) or {})
    return cfg


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


@dataclass(frozen=True)
class PipelineRef:
    pipeline: str
    role: str  # receivers | processors | exporters
    component: str


def pipeline_refs(cfg: Mapping[str, Any]) -> Iterator[PipelineRef]:
    for pipeline, spec in (cfg.get("service", {}).get("pipelines") or {}).items():
        for role in ("receivers", "processors", "exporters"):
            for component in (spec or {}).get(role) or []:
                yield PipelineRef(pipeline, role, component)


def components_used(cfg: Mapping[str, Any]) -> dict[str, set[str]]:
    """kind -> component ids the service uses (connectors count in both directions)."""
    connectors = set(cfg.get("connectors") or {})
    used: dict[str, set[str]] = {kind: set() for kind in COMPONENT_KINDS}
    for ref in pipeline_refs(cfg):
        kind = "connectors" if ref.component in connectors and ref.role != "processors" else ref.role
        used[kind].add(ref.component)
    used["extensions"] = set(cfg.get("service", {}).get("extensions") or [])
    return used


def host_port(endpoint: str) -> tuple[str, int]:
    """'http://loki:3100/otlp' or 'jaeger:4317' -> ('loki', 3100)."""
    m = re.fullmatch(r"(?:[a-z]+://)?([^/:]+):(\d+)(?:/.*)?", endpoint)
    assert m, f"not host:port: {endpoint!r}"
    return m.group(1), int(m.group(2))


# --- Loki ------------------------------------------------------------------------------
def prom_label_name(name: str) -> str:
    """Prometheus' label namer (otlptranslator.LabelNamer, no UTF-8): what Loki and
    Prometheus make of an attribute name."""
    out = re.sub(r"[^a-zA-Z0-9]+", "_", name)
    if out[:1].isdigit():
        out = "key_" + out
    return out


LOKI_RECORD_FIELDS = (
    "observed_timestamp",
    "severity_number",
    "severity_text",
    "trace_id",
    "span_id",
    "flags",
)


@dataclass
class LokiEntry:
    labels: dict[str, str]
    metadata: dict[str, str]
    line: str


def loki_entry(record: Any, otlp_config: Mapping[str, Any]) -> LokiEntry:
    """One decoded LogRecordData as Loki stores it under ``otlp_config``."""

    def action(attr: str, rules: Iterable[Mapping[str, Any]]) -> str:
        for rule in rules:
            if attr in (rule.get("attributes") or []) or (
                rule.get("regex") and re.fullmatch(rule["regex"], attr)
            ):
                return str(rule.get("action", "structured_metadata"))
        return "structured_metadata"

    resource_rules = list((otlp_config.get("resource_attributes") or {}).get("attributes_config") or [])
    assert (otlp_config.get("resource_attributes") or {}).get("ignore_defaults"), (
        "this model only knows ignore_defaults: true"
    )
    log_rules = list(otlp_config.get("log_attributes") or [])
    labels: dict[str, str] = {}
    metadata: dict[str, str] = {}
    for source, rules in ((record.resource, resource_rules), (record.attributes, log_rules)):
        for key, value in source.items():
            verdict = action(key, rules)
            if verdict == "drop":
                continue
            target = labels if verdict == "index_label" else metadata
            target[prom_label_name(key)] = value if isinstance(value, str) else str(value)
    if record.scope:
        metadata["scope_name"] = record.scope
    if record.scope_version:
        metadata["scope_version"] = record.scope_version
    if record.severity_number:
        metadata["severity_number"] = str(record.severity_number)
    if record.severity_text:
        metadata["severity_text"] = record.severity_text
    if record.trace_id:
        metadata["trace_id"] = record.trace_id
    if record.span_id:
        metadata["span_id"] = record.span_id
    return LokiEntry(labels, metadata, str(record.body))


def structured_metadata_size(metadata: Mapping[str, str]) -> int:
    """Loki's StructuredMetadataSize: names and values, in bytes."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())


# --- Prometheus ------------------------------------------------------------------------
_UNITS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "1": "",
    "%": "percent",
}
_PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}


def _clean_unit(unit: str) -> str:
    return re.sub(r"_+", "_", re.sub(r"[^a-zA-Z0-9:]", "_", unit)).lstrip("_")


def prom_metric_name(name: str, unit: str, kind: str, monotonic: bool | None) -> str:
    """UnderscoreEscapingWithSuffixes: ``kind`` is the decoded MetricPoint kind (gauge,
    sum, histogram, exponential_histogram, summary)."""
    tokens = [t for t in re.split(r"[^a-zA-Z0-9:]+", name) if t]
    main, _, per = unit.partition("/")
    main_suffix = (
        "" if not main.strip() or re.search(r"[{}]", main) else _UNITS.get(main.strip(), main.strip())
    )
    per_suffix = ""
    if per.strip() and not re.search(r"[{}]", per):
        per_suffix = "per_" + _PER_UNITS.get(per.strip(), per.strip())
    main_suffix, per_suffix = _clean_unit(main_suffix), _clean_unit(per_suffix)
    if main_suffix and main_suffix not in tokens:
        tokens.append(main_suffix)
    if per_suffix and per_suffix != "per_" and per_suffix.rstrip("_") not in tokens:
        tokens.append(per_suffix.rstrip("_"))
    if kind == "sum" and monotonic:
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if unit == "1" and kind == "gauge":
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    out = "_".join(tokens)
    return "_" + out if out[:1].isdigit() else out


def prom_series_names(base: str, kind: str) -> set[str]:
    """The series names a metric becomes (classic histograms: _bucket, _sum, _count)."""
    if kind in ("histogram",):
        return {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    if kind == "summary":
        return {base, f"{base}_sum", f"{base}_count"}
    return {base}


# --- queries ---------------------------------------------------------------------------
_MATCHER = re.compile(r"\b([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*\"((?:\\.|[^\"\\])*)\"")
_BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_UNWRAP = re.compile(r"\|\s*unwrap\s+([a-zA-Z_][a-zA-Z0-9_]*)")
_LABEL_VALUES = re.compile(r"label_values\(\s*(?:\{[^}]*\}\s*,\s*)?([a-zA-Z_][a-zA-Z0-9_]*)\s*\)")
_METRIC = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")


def query_matchers(expr: str) -> list[tuple[str, str, str]]:
    """(label, operator, value) of every matcher and label filter in a LogQL/PromQL query."""
    return [(m.group(1), m.group(2), m.group(3)) for m in _MATCHER.finditer(expr)]


def query_label_names(expr: str) -> set[str]:
    names = {label for label, _, _ in query_matchers(expr)}
    for m in _BY.finditer(expr):
        names.update(n.strip() for n in m.group(1).split(",") if n.strip())
    names.update(m.group(1) for m in _UNWRAP.finditer(expr))
    names.update(m.group(1) for m in _LABEL_VALUES.finditer(expr))
    return names


def promql_metric_names(expr: str) -> set[str]:
    return {m.group(1) for m in _METRIC.finditer(expr)}
