"""Post-import hooks: call a function when a module is first imported.

A leaf module (the standard library only): the child start-up
(:mod:`otel_ai.bootstrap.startup`) and the instrumentation both register hooks here
without importing each other.

A small meta-path finder of our own rather than wrapt's ``register_post_import_hook``:
importing wrapt costs 30-90 ms (it imports asyncio), and every Python process the
experiment starts pays the bootstrap. wrapt is used where the patching happens, once the
target is imported.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

Hook = Callable[[ModuleType], None]


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


class PostImportFinder:
    """Hands the import of a hooked module to the other finders, then wraps its loader."""

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


finder = PostImportFinder()


def when_imported(name: str, hook: Hook) -> None:
    """Call ``hook(module)`` once ``name`` is imported (at once if it already is)."""
    module = sys.modules.get(name)
    if module is not None:
        _run_hook(hook, module)
        return
    finder.hooks[name] = hook
    if finder not in sys.meta_path:
        sys.meta_path.insert(0, finder)


def forget(name: str) -> None:
    """Drop the pending hook for ``name`` (tests)."""
    finder.hooks.pop(name, None)


def _run_hook(hook: Hook, module: ModuleType) -> None:
    finder.hooks.pop(module.__name__, None)
    try:
        hook(module)
    except Exception as exc:  # noqa: BLE001 - a hook must never break the import
        debug(f"hook for {module.__name__} failed: {exc!r}")


def debug(message: str) -> None:
    """A line on stderr with OTEL_AI_DEBUG set (the start-up has no logging configured)."""
    if os.environ.get("OTEL_AI_DEBUG"):
        sys.stderr.write(f"otel_ai bootstrap: {message}\n")
