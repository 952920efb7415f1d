"""The command's stdout and stderr: to the terminal byte for byte, and into log records.

A pump thread per stream reads the pipe and writes every byte to our own stream at once
(partial lines, carriage returns and binary included), then hands complete lines to the
:class:`LogSink`. The sink's thread turns lines into log records (``log.iostream``,
severity from the text, tracebacks as one ERROR record); it slows down when the export
queue fills, never the pumps, so the command is never held up by telemetry.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import IO, Any

from opentelemetry.context import Context

from .. import semconv
from ..export.providers import log_backlog
from ..model.events import emit_log
from ..model.lines import Line, line_severity
from .lines import DEFAULT_MAX_LINE, LineSplitter, TracebackGrouper

_READ_SIZE = 65536


class TerminalOut:
    """One of our own output streams; ``around`` lets a status line step aside."""

    def __init__(self, fd: int, around: Any = None) -> None:
        self.fd = fd
        self.around = around
        self.broken = False
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        if self.broken or not data:
            return
        with self._lock:
            if self.around is not None:
                self.around.before_output(self.fd)
            view = memoryview(data)
            try:
                while view:
                    written = os.write(self.fd, view)
                    view = view[written:]
            except OSError as exc:
                # our reader went away (a closed pipe): keep draining the command
                if exc.errno in (errno.EPIPE, errno.EBADF, errno.EIO):
                    self.broken = True
                else:
                    raise
            if self.around is not None:
                self.around.after_output(self.fd, data)


class OutputPump:
    """Copies one pipe of the command to a :class:`TerminalOut` and feeds the sink."""

    def __init__(
        self, name: str, pipe: IO[bytes], out: TerminalOut, sink: LogSink, on_activity: Callable[[], None]
    ) -> None:
        self.name = name
        self._pipe = pipe  # closed through its file object: its fd is closed once, by it
        self._fd = pipe.fileno()
        self._out = out
        self._sink = sink
        self._on_activity = on_activity
        self._splitter = LineSplitter(DEFAULT_MAX_LINE)
        self._thread = threading.Thread(target=self._pump, name=f"otel_ai-{name}", daemon=True)

    def start(self) -> OutputPump:
        self._thread.start()
        return self

    def _pump(self) -> None:
        try:
            while True:
                try:
                    data = os.read(self._fd, _READ_SIZE)
                except InterruptedError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                self._out.write(data)
                self._on_activity()
                for line in self._splitter.feed(data):
                    self._sink.put(self.name, line)
        finally:
            tail = self._splitter.flush()
            if tail is not None:
                self._sink.put(self.name, tail)
            self._sink.put(self.name, None)  # end of this stream
            try:
                self._pipe.close()
            except OSError:
                pass

    def join(self, timeout: float | None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


class LogSink:
    """Lines of the command's streams into log records, on a thread of its own."""

    IDLE_S = 0.3
    MAX_PENDING = 1_000_000
    BACKLOG_HIGH = 0.8
    MAX_WAIT_S = 30.0

    def __init__(self, run_id: str, context: Callable[[], tuple[Context | None, str | None]]) -> None:
        self._run_id = run_id
        self._context = context
        self._queue: deque[tuple[str, Line | None]] = deque()
        self._ready = threading.Condition()
        self._groupers: dict[str, TracebackGrouper] = {}
        self._open_streams: set[str] = set()
        self.dropped = 0  # lines not recorded: more than MAX_PENDING were waiting
        self._stopped = False
        self._thread = threading.Thread(target=self._drain, name="otel_ai-log-lines", daemon=True)

    def start(self, streams: tuple[str, ...]) -> LogSink:
        self._open_streams = set(streams)
        self._groupers = {name: TracebackGrouper() for name in streams}
        self._thread.start()
        return self

    def put(self, stream: str, line: Line | None) -> None:
        if line is not None and len(self._queue) >= self.MAX_PENDING:
            self.dropped += 1
            return
        self._queue.append((stream, line))
        with self._ready:
            self._ready.notify()

    def _drain(self) -> None:
        while True:
            if not self._queue:
                with self._ready:
                    if not self._queue:
                        if not self._open_streams or self._stopped:
                            break
                        self._ready.wait(self.IDLE_S)
                if not self._queue:
                    for name, grouper in self._groupers.items():
                        for released in grouper.idle():
                            self._emit(name, released)
                    continue
            stream, line = self._queue.popleft()
            grouper = self._groupers[stream]
            if line is None:
                for pending in grouper.flush():
                    self._emit(stream, pending)
                self._open_streams.discard(stream)
                continue
            for ready in grouper.feed(line):
                self._emit(stream, ready)

    def _emit(self, stream: str, line: Line) -> None:
        self._wait_for_room()
        context, stage = self._context()
        attrs: dict[str, Any] = {semconv.LOG_IOSTREAM: stream, semconv.LOG_SOURCE: stream}
        if stage:
            attrs[semconv.STAGE_NAME] = stage
        if line.cut:
            attrs[semconv.LOG_TRUNCATED] = True
        text = line.text
        emit_log(context, self._run_id, attrs, event_name=None, body=text, level=line_severity(text))

    def _wait_for_room(self) -> None:
        # this thread is ours: it may wait for the exporter, the command never does
        waited = 0.0
        while log_backlog() > self.BACKLOG_HIGH and waited < self.MAX_WAIT_S:
            time.sleep(0.01)
            waited += 0.01

    def stop(self, timeout: float) -> bool:
        """Emit what is queued (within ``timeout`` seconds); True when all went out."""
        with self._ready:
            self._stopped = True
            self._ready.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()


def stdout_fd() -> int:
    sys.stdout.flush()
    return sys.stdout.fileno()


def stderr_fd() -> int:
    sys.stderr.flush()
    return sys.stderr.fileno()
