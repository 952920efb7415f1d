"""The severity of a log line, read from its text.

Looks for what a level really looks like (``ERROR``, ``[warning]``, ``level=debug``,
``WARNING:root:``), Python tracebacks and exception lines, and ``warnings`` output, in the
first few hundred characters. A lowercase "error" in the middle of a sentence
(``val_error=0.31``, ``0 errors``) is not a level: such lines stay INFO, unlike the seed
monitor, which flagged every line containing "error" or "failed".
"""

from __future__ import annotations

import re

_HEAD = 240

_UPPER = re.compile(
    r"(?<![A-Za-z0-9_])(CRITICAL|FATAL|ERROR|WARNING|WARN|INFO|NOTICE|DEBUG|TRACE)(?![A-Za-z0-9_])"
)
_BRACKETED = re.compile(
    r"(?:[\[<(|]\s*|\blevel(?:name)?\s*[=:]\s*\"?|\"level\"\s*:\s*\")"
    r"(critical|fatal|error|err|warning|warn|info|notice|debug|trace)\b",
    re.IGNORECASE,
)
_LINE_START = re.compile(r"\s*(critical|fatal|error|warning|warn|debug)\s*:", re.IGNORECASE)
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
    found = _UPPER.search(head)
    if found is not None:
        return _ALIASES.get(found.group(1).lower(), found.group(1).lower())
    found = _BRACKETED.search(head) or _LINE_START.match(head)
    if found is not None:
        name = found.group(1).lower()
        return _ALIASES.get(name, name)
    if _TRACEBACK.match(head):
        return "error"
    if _PY_WARNING.search(head):
        return "warning"
    return "info"
