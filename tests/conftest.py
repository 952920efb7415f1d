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
