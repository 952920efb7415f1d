"""Glob patterns over paths relative to a watched root.

``*`` and ``?`` stay within one path segment, ``**/`` spans any number of directories
(zero included), a trailing ``**`` matches everything below, ``[abc]`` / ``[!abc]`` are
character classes (``[^abc]`` too, as in bash). A pattern without ``/`` matches the
file name at any depth (``*.log`` is ``**/*.log``). Matching ignores case (``Figure.PNG``
is a plot).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from .. import semconv
from ..config import ConfigurationError

# Every complete line of these files becomes a log record.
DEFAULT_LOG_PATTERNS: tuple[str, ...] = ("**/*.log", "**/logs/**/*.txt")

# (type, pattern), first match wins: a PDF with "plot" in its name is a plot, any other a paper.
DEFAULT_ARTIFACT_PATTERNS: tuple[tuple[str, str], ...] = (
    (semconv.ARTIFACT_TYPE_PLOT, "**/*.png"),
    (semconv.ARTIFACT_TYPE_PLOT, "**/*.jpg"),
    (semconv.ARTIFACT_TYPE_PLOT, "**/*.jpeg"),
    (semconv.ARTIFACT_TYPE_PLOT, "**/*.svg"),
    (semconv.ARTIFACT_TYPE_PLOT, "**/*plot*.pdf"),
    (semconv.ARTIFACT_TYPE_PAPER, "**/*.pdf"),
    (semconv.ARTIFACT_TYPE_CHECKPOINT, "**/*.pt"),
    (semconv.ARTIFACT_TYPE_CHECKPOINT, "**/*.pth"),
    (semconv.ARTIFACT_TYPE_CHECKPOINT, "**/*.ckpt"),
    (semconv.ARTIFACT_TYPE_CHECKPOINT, "**/*.safetensors"),
    (semconv.ARTIFACT_TYPE_DATA, "**/*.npy"),
    (semconv.ARTIFACT_TYPE_DATA, "**/*.npz"),
    # the best node's code: AI-Scientist-v2's per-stage best_solution_*.py, and the
    # seed pod worker's copies of them at the experiment root
    (semconv.ARTIFACT_TYPE_CODE, "**/best_solution_*.py"),
    (semconv.ARTIFACT_TYPE_CODE, "**/best_code_stage_*.py"),
)

# Never looked at: version control, caches, virtual environments (any other Python
# environment is recognised by its content while walking: otel_ai.watch.roots).
DEFAULT_EXCLUDE: tuple[str, ...] = (
    "**/.git/**",
    "**/__pycache__/**",
    "**/.venv/**",
    "**/node_modules/**",
)


def _normalized(pattern: str) -> str:
    text = str(pattern).strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    text = text.lstrip("/")
    if not text:
        raise ConfigurationError(f"empty path pattern {pattern!r}")
    if "/" not in text and text != "**":
        text = "**/" + text
    return text


def literal_tail(pattern: str) -> str:
    """What every path the pattern matches ends with, lower-cased: the literal characters
    after its last wildcard or character class (``**/*.log`` -> ``.log``); empty when it
    ends with one."""
    text = _normalized(pattern)
    start = len(text)
    while start > 0 and text[start - 1] not in "*?[]":
        start -= 1
    tail = text[start:]
    if tail.startswith("/") and text[:start].endswith("**"):
        tail = tail[1:]  # the "/" of "**/" is optional: "**/x" matches "x"
    return tail.lower()


def glob_to_regex(pattern: str) -> str:
    """The regular expression (without anchors) a glob pattern stands for."""
    text = _normalized(pattern)
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        if text.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif text.startswith("**", i):
            out.append(".*")
            i += 2
        elif text[i] == "*":
            out.append("[^/]*")
            i += 1
        elif text[i] == "?":
            out.append("[^/]")
            i += 1
        elif text[i] == "[":
            first = i + 1  # a "]" first in the class (after a "!") is one of its characters
            first += text.startswith(("!", "^"), first)
            first += text.startswith("]", first)
            end = text.find("]", first)
            if end < 0:
                out.append(re.escape("["))
                i += 1
                continue
            body = text[i + 1 : end]
            negated = body.startswith(("!", "^"))  # "^" as in bash
            if negated:
                body = body[1:]
            # literal inside the class: what re would read as a nested set, a set
            # operation or a negation
            body = re.sub(r"([\\\[&~|^])", r"\\\1", body)
            out.append("[" + ("^" if negated else "") + body + "]")
            i = end + 1
        else:
            out.append(re.escape(text[i]))
            i += 1
    regex = "".join(out)
    try:
        re.compile(regex)
    except re.error as exc:  # a class such as [z-a]
        raise ConfigurationError(f"path pattern {pattern!r} is not valid: {exc}") from exc
    return regex


class PathPatterns:
    """A set of glob patterns compiled into one expression.

    Most paths of a tree match none of the patterns, and the expression costs a few
    microseconds a path (each ``**/`` backtracks over the path's directories): when every
    pattern ends with literal characters (``.log``, ``.png``), a path that ends with none
    of them is refused by one ``str.endswith`` first. Only for ASCII paths: there
    lower-casing is exactly the expression's case-insensitive match."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(str(p) for p in patterns)
        self._tails: tuple[str, ...] | None = None
        if self.patterns:
            joined = "|".join(f"(?:{glob_to_regex(p)})" for p in self.patterns)
            self._regex: re.Pattern[str] | None = re.compile(f"(?:{joined})\\Z", re.IGNORECASE | re.DOTALL)
            tails = tuple({literal_tail(p) for p in self.patterns})
            if all(tail and tail.isascii() for tail in tails):
                self._tails = tails
        else:
            self._regex = None

    def __bool__(self) -> bool:
        return self._regex is not None

    def __repr__(self) -> str:
        return f"PathPatterns({list(self.patterns)!r})"

    def match(self, relative_path: str) -> bool:
        """True when the POSIX relative path matches one of the patterns."""
        regex = self._regex
        if regex is None:
            return False
        tails = self._tails
        if tails is not None and relative_path.isascii() and not relative_path.lower().endswith(tails):
            return False
        return regex.match(relative_path) is not None


class ArtifactRules:
    """Ordered (type, pattern) rules: the first that matches gives the artifact type."""

    def __init__(self, rules: Sequence[tuple[str, str]] | Mapping[str, Sequence[str] | str]) -> None:
        pairs: list[tuple[str, str]] = []
        if isinstance(rules, Mapping):
            for kind, patterns in rules.items():
                for pattern in [patterns] if isinstance(patterns, str) else patterns:
                    pairs.append((str(kind), str(pattern)))
        else:
            for item in rules:
                if not isinstance(item, (tuple, list)) or len(item) != 2:
                    raise ConfigurationError(f"artifact rule {item!r} is not a (type, pattern) pair")
                pairs.append((str(item[0]), str(item[1])))
        self.rules = tuple(pairs)
        self._compiled = [
            (kind, re.compile(glob_to_regex(p) + "\\Z", re.IGNORECASE | re.DOTALL)) for kind, p in pairs
        ]
        self._any = PathPatterns(p for _kind, p in pairs)

    def __bool__(self) -> bool:
        return bool(self._compiled)

    def type_of(self, relative_path: str) -> str | None:
        """The artifact type of the path, or None when no rule matches."""
        if not self._any.match(relative_path):
            return None
        for kind, regex in self._compiled:
            if regex.match(relative_path):
                return kind
        return None
