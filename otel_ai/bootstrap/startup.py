"""Start-up of an instrumented Python child: post-import hooks, nothing heavier.

- ``concurrent.futures.process``: pool tasks carry the submitter's trace context and
  flush their telemetry before they return (:mod:`otel_ai.propagation`).
- ``ai_scientist``: AI-Scientist-v2's tree search is instrumented when it is imported
  (:mod:`otel_ai.instrumentation`), if that instrumentation is available.
- ``opentelemetry.trace`` (under ``otel-ai run``): a global tracer provider that
  configures otel_ai on the first span (:mod:`otel_ai.bootstrap.lazy`).

The post-import hooks are a small meta-path finder of our own rather than wrapt's
``register_post_import_hook``: importing wrapt costs 30-90 ms (it imports asyncio), and
every Python process the experiment starts pays the bootstrap. wrapt is used where the
patching happens, once the target is imported.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec

Hook = Callable[[ModuleType], None]

_started = False


def start() -> None:
    """Install the hooks (once per process). Never raises."""
    global _started
    if _started or os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return
    _started = True
    when_imported("concurrent.futures.process", _on_process_pool)
    when_imported("ai_scientist", _on_ai_scientist)
    if os.environ.get("OTEL_AI_CHANNEL"):
        when_imported("opentelemetry.trace", _on_opentelemetry_trace)
        when_imported("otel_ai.model.listeners", _on_model)


class _HookLoader:
    """The real loader, then the hook on the loaded module."""

    def __init__(self, loader: Any, hook: Hook) -> None:
        self._loader = loader
        self._hook = hook

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _run_hook(self._hook, module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _PostImportFinder:
    def __init__(self) -> None:
        self.hooks: dict[str, Hook] = {}
        self._local = threading.local()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        hook = self.hooks.get(fullname)
        if hook is None or getattr(self._local, "busy", False):
            return None
        self._local.busy = True
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._local.busy = False
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _HookLoader(spec.loader, hook)  # type: ignore[assignment]
        return spec


_finder = _PostImportFinder()


def when_imported(name: str, hook: Hook) -> None:
    """Call ``hook(module)`` once ``name`` is imported (at once if it already is)."""
    module = sys.modules.get(name)
    if module is not None:
        _run_hook(hook, module)
        return
    _finder.hooks[name] = hook
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def forget(name: str) -> None:
    """Drop the pending hook for ``name`` (tests)."""
    _finder.hooks.pop(name, None)


def _run_hook(hook: Hook, module: ModuleType) -> None:
    _finder.hooks.pop(module.__name__, None)
    try:
        hook(module)
    except Exception as exc:  # noqa: BLE001 - a hook must never break the import
        _debug(f"hook for {module.__name__} failed: {exc!r}")


def _on_process_pool(module: ModuleType) -> None:
    from ..propagation import instrument_process_pool

    instrument_process_pool(module)


def _on_opentelemetry_trace(module: ModuleType) -> None:
    from .lazy import install

    install()


def _on_model(module: ModuleType) -> None:
    from .channel import install  # the model's news to the wrapper (imports the model)

    install()


def instrument_ai_scientist_on_import() -> None:
    """Instrument AI-Scientist-v2 when ``ai_scientist`` is imported (at once if it is),
    unless OTEL_SDK_DISABLED is true. Never raises."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return
    when_imported("ai_scientist", _on_ai_scientist)


def _on_ai_scientist(module: ModuleType) -> None:
    try:
        from importlib import import_module

        instrumentation = import_module("otel_ai.instrumentation")
    except ImportError:
        return
    instrumentor = instrumentation.AIScientistInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:  # opentelemetry-instrument may have done it
        instrumentor.instrument()


def _debug(message: str) -> None:
    if os.environ.get("OTEL_AI_DEBUG"):
        sys.stderr.write(f"otel_ai bootstrap: {message}\n")
