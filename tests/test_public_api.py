"""The public surface of otel_ai: ``__all__`` is locked, every name resolves, and the
program answers ``--version`` both as ``python -m otel_ai`` and as the ``otel-ai`` script."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

import otel_ai

# Change this list only together with the public API (and its docs): it is the contract.
EXPECTED_ALL = [
    "BatchEventEmitter",
    "ConfigurationError",
    "EventEmitter",
    "Execution",
    "Node",
    "Paper",
    "Run",
    "Settings",
    "Stage",
    "Validation",
    "__version__",
    "configure",
    "event_callback",
    "force_flush",
    "run",
    "shutdown",
]


def test_all_is_locked() -> None:
    assert otel_ai.__all__ == EXPECTED_ALL


def test_all_is_sorted_and_unique() -> None:
    assert otel_ai.__all__ == sorted(otel_ai.__all__)
    assert len(set(otel_ai.__all__)) == len(otel_ai.__all__)


@pytest.mark.parametrize("name", EXPECTED_ALL)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(otel_ai, name)
    assert value is not None
    # star-import gives exactly the same objects
    namespace: dict[str, object] = {}
    exec("from otel_ai import *", namespace)  # noqa: S102
    assert namespace[name] is value


def test_public_callables_and_classes_have_docstrings() -> None:
    for name in EXPECTED_ALL:
        if name == "__version__":
            continue
        assert (getattr(otel_ai, name).__doc__ or "").strip(), f"otel_ai.{name} has no docstring"


def test_configuration_error_is_a_value_error() -> None:
    assert issubclass(otel_ai.ConfigurationError, ValueError)


def test_version_matches_installed_distribution() -> None:
    assert otel_ai.__version__ == importlib.metadata.version("otel-ai")


def test_package_ships_py_typed() -> None:
    assert (Path(otel_ai.__file__).parent / "py.typed").is_file()


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60, env=dict(os.environ))


def test_python_dash_m_version() -> None:
    result = _run([sys.executable, "-m", "otel_ai", "--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"otel-ai {otel_ai.__version__}"


def test_console_script_version() -> None:
    script = Path(sys.executable).parent / "otel-ai"
    assert script.is_file(), f"console script not installed next to {sys.executable}"
    result = _run([str(script), "--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"otel-ai {otel_ai.__version__}"


def test_no_command_prints_help_and_exits_2() -> None:
    result = _run([sys.executable, "-m", "otel_ai"])
    assert result.returncode == 2
    assert "usage: otel-ai" in result.stderr
