"""The watched directories and which paths under them are the watcher's business.

A :class:`Root` is one watched directory (with the prefix its artifacts are reported
under when there are several); a :class:`Scope` holds the roots and the patterns, answers
"is this path ours, and as what" (on watchdog's thread too), and walks a tree for the
files it wants.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator, Sequence

from ..config import ConfigurationError
from .patterns import ArtifactRules, PathPatterns
from .state import WatchState


class Root:
    """One watched directory."""

    def __init__(self, path: str, display_prefix: str) -> None:
        self.path = path
        self.prefix = path.rstrip(os.sep) + os.sep
        self.display_prefix = display_prefix
        self.state: WatchState | None = None
        self.scheduled = False
        self.resumed = False

    def relative(self, path: str) -> str | None:
        if not path.startswith(self.prefix):
            return None
        rel = path[len(self.prefix) :]
        return rel.replace(os.sep, "/") if os.sep != "/" else rel

    def display(self, rel: str) -> str:
        return self.display_prefix + rel


def make_roots(roots: Sequence[str | os.PathLike[str]]) -> list[Root]:
    paths: list[str] = []
    for raw in roots:
        path = os.path.abspath(os.fspath(raw))
        if os.path.exists(path) and not os.path.isdir(path):
            raise ConfigurationError(f"cannot watch {path}: not a directory")
        if path not in paths:
            paths.append(path)
    # a root inside another is already watched by it
    kept = [p for p in paths if not any(p != q and p.startswith(q.rstrip(os.sep) + os.sep) for q in paths)]
    if len(kept) == 1:
        return [Root(kept[0], "")]
    names: dict[str, int] = {}
    made = []
    for path in kept:
        name = os.path.basename(path.rstrip(os.sep)) or "root"
        names[name] = names.get(name, 0) + 1
        made.append(Root(path, f"{name}/" if names[name] == 1 else f"{name}-{names[name]}/"))
    return made


class Scope:
    """The roots, the log and artifact patterns, the exclusions."""

    def __init__(
        self, roots: list[Root], logs: PathPatterns, rules: ArtifactRules, exclude: PathPatterns
    ) -> None:
        self.roots = roots
        self.logs = logs
        self.rules = rules
        self.exclude = exclude
        # our own data and state directories, when they lie under a root
        self.excluded_prefixes: tuple[str, ...] = ()

    def wanted(self, rel: str) -> bool:
        return (self.logs.match(rel) or self.rules.type_of(rel) is not None) and not self.exclude.match(rel)

    def interesting(self, path: str) -> bool:
        """On watchdog's thread: is this path one of ours?"""
        if path.startswith(self.excluded_prefixes):
            return False
        for root in self.roots:
            rel = root.relative(path)
            if rel is not None:
                return self.wanted(rel)
        return False

    def root_of(self, path: str) -> tuple[Root, str] | None:
        for root in self.roots:
            rel = root.relative(path)
            if rel is not None:
                return root, rel
        return None

    def excluded(self, path: str, rel: str) -> bool:
        return path.startswith(self.excluded_prefixes) or self.exclude.match(rel)

    def walk(
        self,
        root: Root,
        *,
        under: str | None = None,
        deadline: float | None = None,
        stopping: threading.Event | None = None,
    ) -> Iterator[tuple[str, str, os.stat_result]]:
        """(path, relative path, stat) of every interesting file below ``under``; stops at
        ``deadline``, or (without one) once ``stopping`` is set."""
        stack = [under or root.path]
        excluded_prefixes = self.excluded_prefixes
        while stack:
            if deadline is not None and time.monotonic() > deadline:
                return
            if deadline is None and stopping is not None and stopping.is_set():
                return  # the final sweep scans again, within its deadline
            directory = stack.pop()
            try:
                entries = os.scandir(directory)
            except OSError:
                continue
            with entries:
                for entry in entries:
                    path = entry.path
                    rel = root.relative(path)
                    if rel is None:
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if not (path + os.sep).startswith(excluded_prefixes) and not self.exclude.match(
                                rel + "/"
                            ):
                                stack.append(path)
                            continue
                        if not self.wanted(rel) or path.startswith(excluded_prefixes):
                            continue
                        st = entry.stat()  # follows a symlink: the escape check judges it
                    except OSError:
                        continue
                    if stat.S_ISREG(st.st_mode):
                        yield path, rel, st


__all__ = ["Root", "Scope", "make_roots"]
