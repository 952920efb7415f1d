"""`otel-ai doctor` shows what each setting really is when nothing sets it: the derived
default, never ``None``, one aligned column per field (the real CLI, as a process)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from otel_ai.config import SETTINGS


def _configuration(tmp_path: Path, **env: str) -> dict[str, tuple[str, str]]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUNPOD_", "PYTEST_"))}
    clean.update(env)
    result = subprocess.run(
        [sys.executable, "-m", "otel_ai", "doctor", "--no-checks"],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("otel-ai configuration")
    rows = lines[1 : 1 + len(SETTINGS)]
    # the value column starts at the same place on every row, whatever the name's length
    starts = {len(row) - len(row[2:].split(" ", 1)[1].lstrip()) for row in rows}
    assert len(starts) == 1, rows
    table: dict[str, tuple[str, str]] = {}
    for row in rows:
        found = re.fullmatch(r"  (\S+) +(.+?) +\(([^()]+)\)", row)
        assert found is not None, row
        table[found.group(1)] = (found.group(2).strip(), found.group(3))
    return table


def test_every_setting_shows_its_real_default(tmp_path: Path) -> None:
    table = _configuration(tmp_path)
    assert list(table) == [s.name for s in SETTINGS]
    for name, (shown, source) in table.items():
        assert source == "default", name
        assert shown and "None" not in shown, f"{name}: {shown!r}"
    assert table["service_name"][0] == "ai-scientist"
    assert table["pod_id"][0] == f"{socket.gethostname()} (the host name)"
    assert table["metric_export_interval"][0] == "15000"
    assert table["queue_size"][0] == "131072"
    for signal in ("traces", "logs", "metrics"):
        assert table[f"{signal}_protocol"][0] == "http/protobuf"
        assert table[f"{signal}_endpoint"][0] == "(none: the embedded default's files)"
    assert table["endpoint"][0] == "(none: the embedded default's files)"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            {"traces_protocol": "grpc", "traces_endpoint": "http://127.0.0.1:4318", "protocol": "grpc"},
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
            {"logs_endpoint": "http://127.0.0.1:4318/v1/logs", "logs_protocol": "http/protobuf"},
        ),
        (
            {"OTEL_METRICS_EXPORTER": "none"},
            {"metrics_endpoint": "(not used: OTEL_METRICS_EXPORTER=none)"},
        ),
    ],
)
def test_a_signal_shows_what_it_inherits(
    tmp_path: Path, env: dict[str, str], expected: dict[str, str]
) -> None:
    table = _configuration(tmp_path, **env)
    assert {name: table[name][0] for name in expected} == expected
    assert all("None" not in shown for shown, _ in table.values()), table
