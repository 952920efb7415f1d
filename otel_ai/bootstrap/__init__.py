"""What Python children of ``otel-ai run`` load at start-up.

``otel-ai run`` puts ``otel_ai/bootstrap/site`` first on the child's PYTHONPATH. Its
``sitecustomize`` runs the one it shadows (if any), then :func:`otel_ai.bootstrap.startup.start`,
which only installs post-import hooks: the OpenTelemetry SDK is imported when the child
first emits, so a child that emits nothing pays a few milliseconds. Multiprocessing
workers, forked or spawned, inherit the environment and so the bootstrap.
"""

from __future__ import annotations

from pathlib import Path

SITE_DIR = Path(__file__).resolve().parent / "site"
