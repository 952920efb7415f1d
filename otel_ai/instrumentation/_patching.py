"""Hooks: what to patch where, applied when the target module is imported, undone exactly.

Every hook is optional. A module not imported yet is patched at its import (a post-import
hook, :func:`otel_ai.bootstrap.importhook.when_imported`); a class or method missing in this
version of the target is skipped and reported (``otel-ai doctor``).
"""

from __future__ import annotations

import functools
import importlib
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import wrapt

from ..bootstrap.importhook import when_imported

Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]

PATCHED = "patched"
MISSING = "missing"
PENDING = "not imported"
UNAVAILABLE = "unavailable"
_ABSENT = object()


@dataclass(frozen=True)
class Hook:
    """Patch ``module``'s ``path`` (``Class.method`` or ``function``) with ``wrapper``
    (wrapt's signature: ``wrapper(wrapped, instance, args, kwargs)``).

    ``picklable``: replace a function (or staticmethod) by a plain function of the same
    module and qualified name instead of a wrapt proxy, so a process pool can still
    pickle it by reference (a wrapt proxy cannot be pickled); the worker resolves the
    name to its own patched function, or to the original where nothing is instrumented.
    """

    module: str
    path: str
    wrapper: Wrapper
    picklable: bool = False

    @property
    def target(self) -> str:
        return f"{self.module}:{self.path}"


@dataclass(frozen=True)
class HookStatus:
    """One hook of :func:`otel_ai.instrumentation.hook_report`."""

    target: str
    status: str  # patched | missing | not imported | unavailable
    detail: str = ""


class Patcher:
    """Applies hooks module by module and restores every original object."""

    def __init__(self, hooks: Sequence[Hook]) -> None:
        self.hooks = tuple(hooks)
        self._lock = threading.Lock()
        self._active = False
        self._status: dict[str, HookStatus] = {}
        self._originals: list[tuple[Any, str, Any]] = []  # (owner, name, raw attribute or _ABSENT)

    @property
    def modules(self) -> list[str]:
        return list(dict.fromkeys(hook.module for hook in self.hooks))

    def start(self) -> None:
        with self._lock:
            self._active = True
        for name in self.modules:
            when_imported(name, self._on_import)

    def _on_import(self, module: ModuleType) -> None:
        with self._lock:
            if not self._active:
                return
            for hook in self.hooks:
                if hook.module == module.__name__ and hook.target not in self._status:
                    self._status[hook.target] = self._apply(hook, module)

    def _apply(self, hook: Hook, module: ModuleType) -> HookStatus:
        owner: Any = module
        *parents, name = hook.path.split(".")
        for part in parents:
            owner = getattr(owner, part, None)
            if owner is None:
                return HookStatus(hook.target, MISSING, f"no {part}")
        if not hasattr(owner, name):
            return HookStatus(hook.target, MISSING, f"no {name}")
        raw = vars(owner).get(name, _ABSENT) if hasattr(owner, "__dict__") else _ABSENT
        try:
            if hook.picklable:
                _replace_picklable(owner, name, raw, hook.wrapper)
            else:
                wrapt.wrap_function_wrapper(owner, name, hook.wrapper)
        except Exception as exc:  # noqa: BLE001 - an odd target version: skip it, say why
            return HookStatus(hook.target, MISSING, f"not patchable: {exc}")
        self._originals.append((owner, name, raw))
        return HookStatus(hook.target, PATCHED)

    def stop(self) -> None:
        """Put every original object back; hooks of modules not imported yet stay idle."""
        with self._lock:
            self._active = False
            originals, self._originals = self._originals, []
            self._status.clear()
        for owner, name, raw in reversed(originals):
            if raw is _ABSENT:
                try:
                    delattr(owner, name)  # it was inherited: the patch shadowed it
                except AttributeError:
                    pass
            else:
                setattr(owner, name, raw)

    def report(self, probe: bool = False) -> list[HookStatus]:
        """Where each hook stands; ``probe`` imports target modules not imported yet and
        checks their attributes without patching (for ``otel-ai doctor``)."""
        result = []
        for hook in self.hooks:
            status = self._status.get(hook.target)
            if status is None:
                module = sys.modules.get(hook.module)
                if module is None and probe:
                    try:
                        module = importlib.import_module(hook.module)
                    except Exception as exc:  # noqa: BLE001 - not installed, or broken
                        result.append(
                            HookStatus(hook.target, UNAVAILABLE, f"{type(exc).__name__}: {exc}"[:200])
                        )
                        continue
                if module is None:
                    status = HookStatus(hook.target, PENDING)
                else:
                    found = _resolve(module, hook.path)
                    status = HookStatus(
                        hook.target, "found" if found else MISSING, "" if found else "not in this version"
                    )
            result.append(status)
        return result


def _resolve(module: ModuleType, path: str) -> bool:
    owner: Any = module
    for part in path.split("."):
        owner = getattr(owner, part, None)
        if owner is None:
            return False
    return True


def _replace_picklable(owner: Any, name: str, raw: Any, wrapper: Wrapper) -> None:
    is_static = isinstance(raw, staticmethod)
    function = raw.__func__ if is_static else getattr(owner, name)
    if not callable(function) or isinstance(raw, classmethod):
        raise TypeError(f"{name} is not a function or staticmethod")

    def replacement(*args: Any, **kwargs: Any) -> Any:
        return wrapper(function, None, args, kwargs)

    functools.update_wrapper(replacement, function)  # same __module__ and __qualname__: pickles by reference
    setattr(owner, name, staticmethod(replacement) if is_static else replacement)
