"""Shared pytest fixtures."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Make helper modules in tests/ (e.g. otlp_receiver) importable whatever the
# pytest import mode or whether tests/ is a package.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from otlp_receiver import OTLPReceiver  # noqa: E402


@pytest.fixture
def otlp_receiver() -> Iterator[OTLPReceiver]:
    """A started in-process OTLP receiver (gRPC + HTTP on 127.0.0.1), stopped afterwards."""
    with OTLPReceiver() as receiver:
        yield receiver


import os  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import otel_ai  # noqa: E402
import otel_ai.testing  # noqa: E402
from otel_ai.read import LogRecordData, MetricPoint, SpanRecord  # noqa: E402

_OUR_PREFIXES = ("OTEL_", "RUNPOD_")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Every test starts with no OTel/otel_ai variables, a private data directory and no
    telemetry configured, and leaves none behind."""
    for name in list(os.environ):
        if name.startswith(_OUR_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_AI_DATA_DIR", str(tmp_path / "otel-ai-runs"))
    otel_ai.testing.reset()
    yield
    otel_ai.testing.reset()


@dataclass
class Wire:
    """otel_ai configured to export to an in-test OTLP receiver."""

    receiver: OTLPReceiver
    protocol: str

    def flush(self) -> None:
        assert otel_ai.force_flush(10.0)

    def spans(self) -> list[SpanRecord]:
        self.flush()
        return self.receiver.spans()

    def logs(self) -> list[LogRecordData]:
        self.flush()
        return self.receiver.logs()

    def metrics(self) -> list[MetricPoint]:
        self.flush()
        return self.receiver.metrics()

    def latest_metrics(self) -> list[MetricPoint]:
        """The latest point of each (metric, attributes) series: every flush exports
        cumulative metrics again."""
        latest: dict[tuple[str, tuple[tuple[str, object], ...]], MetricPoint] = {}
        for point in self.metrics():
            key = (point.name, tuple(sorted(point.attributes.items())))
            if key not in latest or point.time_ns >= latest[key].time_ns:
                latest[key] = point
        return list(latest.values())

    def events(self, name: str | None = None) -> list[LogRecordData]:
        """Log-based events (records with an event_name), optionally of one name."""
        return [r for r in self.logs() if r.event_name and (name is None or r.event_name == name)]

    def span(self, predicate: Callable[[SpanRecord], bool]) -> SpanRecord:
        found = [s for s in self.spans() if predicate(s)]
        assert len(found) == 1, f"expected one span, got {[s.name for s in found]}"
        return found[0]


@pytest.fixture(params=["http/protobuf", "grpc"])
def wire(request: pytest.FixtureRequest, otlp_receiver: OTLPReceiver) -> Iterator[Wire]:
    """otel_ai exporting over OTLP (both protocols) to an in-test receiver."""
    protocol = request.param
    endpoint = otlp_receiver.grpc_endpoint if protocol == "grpc" else otlp_receiver.http_endpoint
    otel_ai.configure(endpoint=endpoint, protocol=protocol)
    yield Wire(otlp_receiver, protocol)
    otel_ai.testing.reset()  # before the receiver stops, so the final flush has somewhere to go


@pytest.fixture
def http_wire(otlp_receiver: OTLPReceiver) -> Iterator[Wire]:
    """otel_ai exporting over OTLP/HTTP only (for tests where the protocol is irrelevant)."""
    otel_ai.configure(endpoint=otlp_receiver.http_endpoint, protocol="http/protobuf")
    yield Wire(otlp_receiver, "http/protobuf")
    otel_ai.testing.reset()
