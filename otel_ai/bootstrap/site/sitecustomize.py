# otel_ai bootstrap for Python children of `otel-ai run` (see otel_ai/bootstrap/__init__.py).
# It must never break the child: every failure is swallowed (shown with OTEL_AI_DEBUG=1).
# It runs in every child, under whatever Python the experiment uses: standard library
# only, nothing imported that the interpreter has not imported already, no syntax newer
# than the oldest Python a child may run (annotations are never evaluated).
from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType


def _otel_ai_debug(message: str) -> None:
    if os.environ.get("OTEL_AI_DEBUG"):
        sys.stderr.write(f"otel_ai bootstrap: {message}\n")


def _otel_ai_chain() -> None:
    # run the sitecustomize this one shadows, as Python would have without us
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


try:
    _otel_ai_chain()
except Exception as exc:  # noqa: BLE001
    _otel_ai_debug(f"the shadowed sitecustomize failed: {exc!r}")

# Most children (the interpreter's runs of generated code) never import what otel_ai
# hooks: they must not pay for importing otel_ai at all. This finder imports the real
# bootstrap (otel_ai.bootstrap.startup) only when one of those modules is first imported,
# and hands that import to it.
_OTEL_AI_WATCHED = frozenset(("concurrent.futures.process", "ai_scientist", "opentelemetry.trace"))


class _OtelAiTrigger:
    fired = False

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if self.fired or fullname not in _OTEL_AI_WATCHED:
            return None
        self.fired = True  # stays in sys.meta_path: removing it mid-import would skip a finder
        try:
            from otel_ai.bootstrap import startup

            startup.start()
            return startup.finder.find_spec(fullname, path, target)
        except Exception as exc:  # noqa: BLE001 - e.g. otel_ai not installed for this interpreter
            _otel_ai_debug(f"not started: {exc!r}")
            return None


if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true":
    if any(name in sys.modules for name in _OTEL_AI_WATCHED):
        try:
            from otel_ai.bootstrap.startup import start as _otel_ai_start

            _otel_ai_start()
        except Exception as exc:  # noqa: BLE001
            _otel_ai_debug(f"not started: {exc!r}")
    else:
        sys.meta_path.insert(0, _OtelAiTrigger())
