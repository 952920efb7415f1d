"""The runs of this process, by id: how the event front doors find their spans.

The EventEmitter and ``event_callback`` name runs, stages and nodes by id; the registry
maps those ids to the model's objects, keeps a few ended runs for late events, and knows
which runs are still open (ended as ``ai.run.outcome=abandoned`` at shutdown).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from ..export import handoff

if TYPE_CHECKING:
    from .run import Run

_KEEP_ENDED = 16


class RunRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: OrderedDict[str, Run] = OrderedDict()
        self._ended: OrderedDict[str, Run] = OrderedDict()

    def add(self, run: Run) -> None:
        with self._lock:
            self._ended.pop(run.run_id, None)
            self._open[run.run_id] = run
            self._open.move_to_end(run.run_id)

    def ended(self, run: Run) -> None:
        with self._lock:
            if self._open.get(run.run_id) is run:
                del self._open[run.run_id]
            self._ended[run.run_id] = run
            self._ended.move_to_end(run.run_id)
            while len(self._ended) > _KEEP_ENDED:
                self._ended.popitem(last=False)

    def get(self, run_id: str) -> Run | None:
        """The open run of that id, else the latest ended one (once the events handed off
        so far are recorded: what a caller sees is what it emitted)."""
        handoff.drain()
        return self.lookup(run_id)

    def lookup(self, run_id: str) -> Run | None:
        """:meth:`get` without waiting for the handoff: for callers holding a lock (drain
        first, then take the lock)."""
        with self._lock:
            return self._open.get(run_id) or self._ended.get(run_id)

    def current(self, *, drain: bool = True) -> Run | None:
        """The most recently started run still open: in this process, attached to the
        wrapper's, or inherited through fork (a forked worker's spans join its parent's
        run, which the parent ends). With ``drain``, once the events handed off so far
        are recorded."""
        if drain:
            handoff.drain()
        with self._lock:
            for run in reversed(self._open.values()):
                if not run.ended:
                    return run
            return None

    def open_runs(self) -> list[Run]:
        handoff.drain()
        with self._lock:
            return [run for run in self._open.values() if run.owned_here]

    def clear(self) -> None:
        with self._lock:
            self._open.clear()
            self._ended.clear()


registry = RunRegistry()


def _lock_after_fork() -> None:
    registry._lock = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_lock_after_fork)
