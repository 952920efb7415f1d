"""A live status line on the terminal: stage, progress, nodes, best metric, elapsed.

Drawn on stderr with rich, only when stderr is a terminal (rich is imported then: a run
whose stderr is a file or a pipe does without it). It never corrupts the command's output:
it is cleared before any of the command's bytes reach the same terminal and redrawn only
when that output ends a line.
"""

from __future__ import annotations

import io
import os
import shutil
import threading
import time
from dataclasses import dataclass, field

_CLEAR = b"\r\x1b[2K"


@dataclass
class Status:
    """What the line shows; updated from the channel's messages."""

    run_id: str
    started: float = field(default_factory=time.monotonic)
    stage: str | None = None
    progress: float | None = None
    good: int | None = None
    buggy: int | None = None
    total: int | None = None
    best: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0


def render(status: Status, width: int) -> str:
    """The status as one line of ANSI text, at most ``width`` columns."""
    from rich.console import Console
    from rich.text import Text

    text = Text()
    text.append(" otel-ai ", style="bold white on blue")
    text.append(f" {status.run_id}", style="bold")
    if status.stage:
        text.append(f"  {status.stage}", style="cyan")
    if status.progress is not None:
        filled = int(round(max(0.0, min(status.progress, 1.0)) * 10))
        text.append(f"  {'█' * filled}{'░' * (10 - filled)} {status.progress:4.0%}", style="blue")
    if status.total is not None:
        text.append(f"  nodes {status.total}")
        if status.good is not None:
            text.append(f" {status.good}✓", style="green")
        if status.buggy:
            text.append(f" {status.buggy}✗", style="red")
    if status.best is not None:
        text.append(f"  best {status.best[:16]}", style="green")
    if status.input_tokens or status.output_tokens:
        text.append(f"  tokens {status.input_tokens}/{status.output_tokens}", style="dim")
    elapsed = int(time.monotonic() - status.started)
    text.append(f"  {elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}", style="dim")
    text.truncate(max(width - 1, 10))
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=True, width=width, color_system="standard", highlight=False).print(
        text, end="", no_wrap=True, overflow="crop"
    )
    return buffer.getvalue()


class StatusLine:
    """Draws :class:`Status` on a terminal fd, stepping aside for the command's output."""

    INTERVAL_S = 0.5

    def __init__(self, status: Status, fd: int) -> None:
        self.status = status
        self._fd = fd
        self._shown = False
        # whether the command's last byte on this terminal ended a line (per our fd)
        self._at_line_start: dict[int, bool] = {}
        self._lock = threading.RLock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="otel_ai-status", daemon=True)

    @staticmethod
    def wanted(fd: int) -> bool:
        return os.isatty(fd) and os.environ.get("TERM", "") != "dumb"

    def shares_terminal(self, fd: int) -> bool:
        try:
            return os.path.samestat(os.fstat(fd), os.fstat(self._fd))
        except OSError:
            return False

    def start(self) -> StatusLine:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stopped.wait(self.INTERVAL_S):
            self.draw()

    def draw(self) -> None:
        with self._lock:
            if self._stopped.is_set() or not all(self._at_line_start.values()):
                return
            width = shutil.get_terminal_size((100, 20)).columns
            line = render(self.status, width).encode("utf-8", errors="replace")
            self._write(_CLEAR + line)
            self._shown = True

    def before_output(self, fd: int) -> None:
        self._lock.acquire()
        if self._shown:
            self._write(_CLEAR)
            self._shown = False

    def after_output(self, fd: int, data: bytes) -> None:
        try:
            self._at_line_start[fd] = data.endswith(b"\n")
        finally:
            self._lock.release()

    def _write(self, data: bytes) -> None:
        try:
            os.write(self._fd, data)
        except OSError:
            self._stopped.set()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.ident is not None:
            self._thread.join(1.0)
        with self._lock:
            if self._shown:
                self._write(_CLEAR)
                self._shown = False
