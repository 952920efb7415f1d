"""The configs for a fleet beyond one machine (docs/operations.md, "Scaling out"):
Jaeger v2 on Elasticsearch, OpenSearch or Cassandra, and Kafka between the sampling
gateways and the storage (a Jaeger collector writing to Kafka, ingesters reading it). Each
passes the real Jaeger binary's ``validate`` (built by collector-config/build.sh; skipped,
with the reason, where it is not), and a config that is wrong fails it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from real_pipeline import CONFIG_DIR, binaries

STACK = CONFIG_DIR / "stack"
STORAGES = ("elasticsearch", "opensearch", "cassandra")


@pytest.fixture(scope="module")
def jaeger_bin() -> Path:
    found = binaries("jaeger")
    if isinstance(found, str):
        pytest.skip(found)
    return found.jaeger


def validate(jaeger_bin: Path, tmp_path: Path, *configs: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(jaeger_bin), "validate", *(f"--config={c}" for c in configs)],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("storage", STORAGES)
def test_jaeger_on_each_fleet_storage_passes_validate(jaeger_bin: Path, tmp_path: Path, storage: str) -> None:
    overlay = STACK / f"jaeger-storage-{storage}.yaml"
    for base in ("jaeger.yaml", "jaeger-ingester.yaml"):
        done = validate(jaeger_bin, tmp_path, STACK / base, overlay)
        assert done.returncode == 0, (base, done.stdout + done.stderr)


def test_the_kafka_collector_role_passes_validate(jaeger_bin: Path, tmp_path: Path) -> None:
    done = validate(jaeger_bin, tmp_path, STACK / "jaeger-collector-kafka.yaml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_validate_catches_a_wrong_config(jaeger_bin: Path, tmp_path: Path) -> None:
    # the ingester alone has no storage; a misspelt storage key is refused
    alone = validate(jaeger_bin, tmp_path, STACK / "jaeger-ingester.yaml")
    assert alone.returncode != 0 and "empty backend configuration" in alone.stdout + alone.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (STACK / "jaeger-storage-elasticsearch.yaml").read_text().replace("server_urls", "server_urlz")
    )
    done = validate(jaeger_bin, tmp_path, STACK / "jaeger.yaml", bad)
    assert done.returncode != 0 and "server_urlz" in done.stdout + done.stderr
