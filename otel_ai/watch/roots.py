"""The watched directories and which paths under them are the watcher's business.

A :class:`Root` is one watched directory (with the prefix its artifacts are reported
under when there are several); a :class:`Scope` holds the roots and the patterns, answers
"is this path ours, and as what" (on watchdog's thread too), and walks a tree for the
files it wants.

A walk notes each directory it lists: its modification time, taken before the listing,
and the wanted files it holds. The final sweep at the end of a run then lists again only
the directories whose time changed (an entry added, removed or renamed) and takes the
wanted files of the others from their listing (:meth:`Scope.walk_changed`): a tree of
300,000 files costs its stat calls per directory instead of a second full walk (1.3 s),
which ``otel-ai run`` would add to the wall time of every run after its command ended.

A Python environment found below a root (:func:`is_python_environment`) is skipped from
then on, walks and events alike.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..config import ConfigurationError
from .patterns import ArtifactRules, PathPatterns
from .state import WatchState

if TYPE_CHECKING:
    from .tailer import LogTailer

# file and directory times come from a coarse clock, up to a tick behind time_ns()
MTIME_TICK_NS = 20_000_000
# directories whose listing is remembered; past it, the final sweep walks the tree again
MAX_LISTINGS = 500_000
# what makes a directory a Python environment (venv, virtualenv; conda)
ENVIRONMENT_FILE = "pyvenv.cfg"
ENVIRONMENT_DIRECTORY = "conda-meta"


def is_python_environment(entries: Sequence[os.DirEntry[str]]) -> bool:
    """Is the directory so listed a Python environment, whatever its name (``venv/``,
    ``env/``, a conda environment)? Tens of thousands of installed files, none of them
    the experiment's logs or artifacts (a library's test image, a packaged ``.pt``)."""
    for entry in entries:
        name = entry.name
        try:
            if (name == ENVIRONMENT_FILE and entry.is_file()) or (
                name == ENVIRONMENT_DIRECTORY and entry.is_dir(follow_symlinks=False)
            ):
                return True
        except OSError:
            continue
    return False


class Root:
    """One watched directory."""

    def __init__(self, path: str, display_prefix: str) -> None:
        self.path = path
        self.prefix = path.rstrip(os.sep) + os.sep
        self.display_prefix = display_prefix
        self.state: WatchState | None = None
        self.scheduled = False
        self.resumed = False
        self.listed = False  # walked whole once: Scope.walk_changed may stand for a walk
        self.first_scan_cut = False  # the run ended first: the final sweep finishes it

    def holds(self, path: str) -> bool:
        return path == self.path or path.startswith(self.prefix)

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
        # directory -> (its mtime before it was listed, or -1: listed within the clock's
        # tick, to be listed again; the wanted files in it)
        self.listings: dict[str, tuple[int, tuple[str, ...]]] = {}
        self.cut = False  # a walk stopped early (deadline, stop): its listings are partial
        self.environments: list[str] = []  # Python environments found below a root, skipped

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

    def left_out(self, directory: str) -> bool:
        """Is this directory below a root none of the watcher's business: excluded by a
        pattern, our own data directory, or a Python environment (then noted as one)?"""
        found = self.root_of(directory)
        if found is None:
            return False
        if (directory + os.sep).startswith(self.excluded_prefixes) or self.exclude.match(found[1] + "/"):
            return True
        if os.path.isfile(os.path.join(directory, ENVIRONMENT_FILE)) or os.path.isdir(
            os.path.join(directory, ENVIRONMENT_DIRECTORY)
        ):
            self.skip_environment(directory)
            return True
        return False

    def skip_environment(self, directory: str) -> None:
        """Leave a Python environment below a root alone from now on: not walked, its
        files' events not looked at (as ``.venv`` is by the default exclusions)."""
        prefix = directory.rstrip(os.sep) + os.sep
        if prefix not in self.excluded_prefixes:
            self.excluded_prefixes = (*self.excluded_prefixes, prefix)
            self.environments.append(directory)
        for listed in [d for d in self.listings if d == directory or d.startswith(prefix)]:
            del self.listings[listed]

    def walk(
        self,
        root: Root,
        *,
        under: str | None = None,
        deadline: float | None = None,
        stopping: threading.Event | None = None,
        skip_listed: bool = False,
    ) -> Iterator[tuple[str, str, os.stat_result]]:
        """(path, relative path, stat) of every interesting file below ``under``; stops at
        ``deadline``, or (without one) once ``stopping`` is set. Each directory listed is
        noted in :attr:`listings`; with ``skip_listed``, subdirectories listed before are
        not entered."""
        stack = [under or root.path]
        listings = self.listings
        while stack:
            if (deadline is not None and time.monotonic() > deadline) or (
                deadline is None and stopping is not None and stopping.is_set()
            ):
                self.cut = True  # the final sweep walks it all again, within its deadline
                return
            directory = stack.pop()
            try:
                # before the listing: an entry added meanwhile changes it, and is seen again
                mtime = os.stat(directory).st_mtime_ns
                with os.scandir(directory) as listing:
                    entries = list(listing)
            except OSError:
                listings.pop(directory, None)
                continue
            listed_at = time.time_ns()
            if directory != root.path and is_python_environment(entries):
                self.skip_environment(directory)
                continue
            excluded_prefixes = self.excluded_prefixes
            wanted: list[str] = []
            for entry in entries:
                path = entry.path
                rel = root.relative(path)
                if rel is None:
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if (
                            not (path + os.sep).startswith(excluded_prefixes)
                            and not self.exclude.match(rel + "/")
                            and not (skip_listed and path in listings)
                        ):
                            stack.append(path)
                        continue
                    if not self.wanted(rel) or path.startswith(excluded_prefixes):
                        continue
                    st = entry.stat()  # follows a symlink: the escape check judges it
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    wanted.append(entry.name)
                    yield path, rel, st
            if len(listings) < MAX_LISTINGS or directory in listings:
                # changed within the clock's tick of the listing: its time may not move again
                racy = listed_at - mtime < MTIME_TICK_NS
                listings[directory] = (-1 if racy else mtime, tuple(wanted))
            else:
                self.cut = True  # too many to remember: the final sweep walks it all

    def walk_changed(self, root: Root, *, deadline: float) -> Iterator[tuple[str, str]]:
        """(path, relative path) of every wanted file below ``root``, as a full walk would
        find them, for a root walked whole before (:attr:`Root.listed`): directories whose
        time changed since they were listed are listed again (new subdirectories walked),
        the others' wanted files come from their listing (a file changed in place there
        is looked at again by its caller, as after a walk)."""
        for directory, (mtime, names) in list(self.listings.items()):
            if not root.holds(directory):
                continue
            if time.monotonic() > deadline:
                self.cut = True
                return
            try:
                now = os.stat(directory).st_mtime_ns
            except OSError:
                self.listings.pop(directory, None)  # gone, with its files
                continue
            if now == mtime:
                for name in names:
                    path = os.path.join(directory, name)
                    rel = root.relative(path)
                    if rel is not None:
                        yield path, rel
                continue
            for path, rel, _st in self.walk(root, under=directory, deadline=deadline, skip_listed=True):
                yield path, rel


def positions_marker(tailer: LogTailer | None, detector: Any) -> tuple[int, ...]:
    """Changes whenever positions or artifacts changed since the last save."""
    if tailer is None:
        return ()
    stats = tailer.stats
    dirty = int(bool(detector and detector.dirty))
    return (stats.lines, stats.files, stats.rotations, stats.partial, stats.empty, dirty)


def save_positions(roots: Sequence[Root], tailer: LogTailer, artifacts: dict[str, Any] | None) -> None:
    """Each root's tailing positions and artifacts that changed, to its state files;
    OSError when the data directory cannot be written (after trying every root: each
    journal keeps what it could not write for the next save)."""
    logs = tailer.take_changes()
    failed: OSError | None = None
    for root in roots:
        if root.state is None:
            continue
        if artifacts:
            prefix = root.display_prefix
            try:
                root.state.save_artifacts({k: v for k, v in artifacts.items() if k.startswith(prefix)})
            except OSError as exc:
                failed = failed or exc
        try:
            root.state.save_logs({relative: v for (under, relative), v in logs.items() if under == root.path})
        except OSError as exc:
            failed = failed or exc
    if failed is not None:
        raise failed


__all__ = ["Root", "Scope", "make_roots", "positions_marker", "save_positions"]
