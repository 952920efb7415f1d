"""What the run's dead processes left in the spool, delivered by ``otel-ai run``.

A process that cannot deliver over OTLP in time keeps what it has in its spool directory
(:mod:`otel_ai.export.spool`): a pool worker before each task's result goes back, any
process at its exit when the collector is slow or down. Once that process is gone its
directory is an orphan. The wrapper, which outlives them all, delivers orphans at its
start (what an earlier run left), every :data:`SCAN_EVERY_S` while the command runs (pool
workers killed at a stage's end) and once more when the command has ended, within the
wrapper's shutdown deadline; what is still undelivered then stays spooled for the next
run or ``otel-ai recover``. A pass stops at the collector's first refusal (down, 503...):
the next one, 10 s later, tries again, and the wrapper's end never waits out an outage.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ..config import SPOOL_DIR, Settings

# how often the wrapper looks for orphans while the command runs
SCAN_EVERY_S = 10.0
# how long one pass may go on delivering while the command runs
PASS_S = 30.0
# the pass at the wrapper's start: what earlier runs left may be much
FIRST_PASS_S = 300.0


class Orphans:
    """One delivery pass at a time, on a daemon thread; :meth:`finish` at the end."""

    def __init__(self, data_dir: Path, settings: Settings) -> None:
        self.data_dir = data_dir
        self.settings = settings
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._next = time.monotonic() + SCAN_EVERY_S

    def start(self) -> Orphans:
        self._deliver(time.monotonic() + FIRST_PASS_S)
        return self

    def tick(self, now: float) -> None:
        """Called while the command runs: a pass every :data:`SCAN_EVERY_S`, unless one
        is still going on."""
        if now >= self._next:
            self._next = now + SCAN_EVERY_S
            self._deliver(now + PASS_S)

    def finish(self, deadline: float) -> None:
        """After the command ended: one last pass, within ``deadline``."""
        with self._lock:
            running = self._thread
        if running is not None:
            running.join(max(deadline - time.monotonic(), 0.0))
            if running.is_alive():
                return  # a collector that is down: the files stay for the next run
        self._deliver(deadline)
        with self._lock:
            last = self._thread
        if last is not None:
            last.join(max(deadline - time.monotonic(), 0.0))

    def _deliver(self, deadline: float) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(
                target=_deliver_pass,
                args=(self.data_dir, self.settings, deadline),
                name="otel_ai-spool-recovery",
                daemon=True,
            )
            self._thread.start()


def _deliver_pass(data_dir: Path, settings: Settings, deadline: float) -> None:
    """One pass. Without a spool directory (what the embedded default's runs leave) there
    is nothing to deliver, and the OTLP delivery (transport, spool, protobuf: 30-40 ms of
    imports) is not loaded into the wrapper at all."""
    if not (data_dir / SPOOL_DIR).is_dir():
        return
    from ..export.spool import deliver_pending

    deliver_pending(data_dir, settings, deadline, patient=False)
