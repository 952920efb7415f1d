"""One line of output, and its severity read from its text.

A :class:`Line` is what both front doors hand on: a line of the wrapped command's stdout or
stderr (:mod:`otel_ai.runner.lines`) and a line of a tailed log file
(:mod:`otel_ai.watch.tailer`). :func:`line_severity` gives the one severity a text gets,
wherever it came from.

:func:`detect_level` looks for what a level really looks like (``ERROR``, ``[warning]``,
``level=debug``, ``WARNING:root:``), Python tracebacks and exception lines, ``warnings``
output, and the messages of a crashed or killed process (``Fatal Python error``,
``Segmentation fault``, ``Killed``), in the first few hundred characters. A lowercase
"error" in the middle of a sentence (``val_error=0.31``, ``0 errors``) is not a level: such
lines stay INFO.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from opentelemetry._logs import SeverityNumber

from .events import severity


class Line(NamedTuple):
    """One line of output as read: bytes without the newline."""

    data: bytes
    cut: int = 0  # how much of an over-long line (or traceback) was left out
    partial: bool = False  # delivered without its newline (flush timeout, end of stream)

    @property
    def text(self) -> str:
        """The line as text: invalid UTF-8 replaced, a trailing CR dropped."""
        return self.data.decode("utf-8", "replace").removesuffix("\r")


_HEAD = 240
TRACEBACK_START = "Traceback (most recent call last):"

_UPPER = re.compile(
    r"(?<![A-Za-z0-9_])(CRITICAL|FATAL|ERROR|WARNING|WARN|INFO|NOTICE|DEBUG|TRACE)(?![A-Za-z0-9_])"
)
_BRACKETED = re.compile(
    r"(?:[\[<(|]\s*|\blevel(?:name)?\s*[=:]\s*\"?|\"level\"\s*:\s*\")"
    r"(critical|fatal|error|err|warning|warn|info|notice|debug|trace)\b",
    re.IGNORECASE,
)
_LINE_START = re.compile(r"\s*(critical|fatal|error|warning|warn|debug)\s*:", re.IGNORECASE)
# what CPython, the shell and the kernel's OOM killer leave when a process dies
_CRASH = re.compile(r"Fatal Python error\b|\bSegmentation fault\b|^Killed\b|^\S.*\s\d+ Killed\b")
_TRACEBACK = re.compile(
    r"\s*(?:Traceback \(most recent call last\)"
    r"|File \"[^\"]*\", line \d+"
    r"|(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Interrupt|Exit)\b(?::|$))"
)
_PY_WARNING = re.compile(r"(?:^|:\s)[A-Z]\w*Warning:")

_ALIASES = {"err": "error", "warn": "warning", "notice": "info", "fatal": "critical"}


def detect_level(line: str) -> str:
    """A level name (``critical``, ``error``, ``warning``, ``info``, ``debug``, ``trace``)
    for one log line; ``info`` when the text says nothing."""
    head = line[:_HEAD]
    if head.startswith(TRACEBACK_START):  # a whole traceback, whatever its frames say
        return "error"
    found = _UPPER.search(head)
    if found is not None:
        return _ALIASES.get(found.group(1).lower(), found.group(1).lower())
    found = _BRACKETED.search(head) or _LINE_START.match(head)
    if found is not None:
        name = found.group(1).lower()
        return _ALIASES.get(name, name)
    if _CRASH.search(head):
        return "critical"
    if _TRACEBACK.match(head):
        return "error"
    if _PY_WARNING.search(head):
        return "warning"
    return "info"


_SEVERITIES: dict[str, tuple[SeverityNumber, str]] = {
    name: severity(name) for name in ("critical", "error", "warning", "info", "debug", "trace")
}


def line_severity(text: str) -> tuple[SeverityNumber, str]:
    """The (number, text) severity of a log record whose body is ``text``."""
    return _SEVERITIES[detect_level(text)]


__all__ = ["TRACEBACK_START", "Line", "detect_level", "line_severity"]
