"""What Python children of ``otel-ai run`` load at start-up.

``otel-ai run`` puts ``otel_ai/bootstrap/site`` first on the child's PYTHONPATH. Its
``sitecustomize`` runs the one it shadows (if any), then installs a tiny finder that calls
:func:`otel_ai.bootstrap.startup.start` (post-import hooks only) when a module otel_ai
hooks is first imported: a child that imports none of them (the interpreter's runs of
generated code) never imports otel_ai, and the OpenTelemetry SDK is imported only when a
child first emits. Multiprocessing
workers, forked or spawned, inherit the environment and so the bootstrap.
"""

from __future__ import annotations

from pathlib import Path

SITE_DIR = Path(__file__).resolve().parent / "site"
