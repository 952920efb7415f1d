"""Glob patterns over paths relative to a watched root.

``*`` and ``?`` stay within one path segment, ``**/`` spans any number of directories
(zero included), a trailing ``**`` matches everything below, ``[abc]`` / ``[!abc]`` are
character classes. A pattern without ``/`` matches the file name at any depth (``*.log``
is ``**/*.log``). Matching ignores case (``Figure.PNG`` is a plot).
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

# Never looked at: version control, caches, virtual environments.
DEFAULT_EXCLUDE: tuple[str, ...] = (
    "**/.git/**",
    "**/__pycache__/**",
    "**/.venv/**",
    "**/node_modules/**",
)


def glob_to_regex(pattern: str) -> str:
    """The regular expression (without anchors) a glob pattern stands for."""
    text = str(pattern).strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    text = text.lstrip("/")
    if not text:
        raise ConfigurationError(f"empty path pattern {pattern!r}")
    if "/" not in text and text != "**":
        text = "**/" + text
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
            end = text.find("]", i + 2 if text[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end < 0:
                out.append(re.escape("["))
                i += 1
                continue
            body = text[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(text[i]))
            i += 1
    return "".join(out)


class PathPatterns:
    """A set of glob patterns compiled into one expression."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(str(p) for p in patterns)
        if self.patterns:
            joined = "|".join(f"(?:{glob_to_regex(p)})" for p in self.patterns)
            self._regex: re.Pattern[str] | None = re.compile(f"(?:{joined})\\Z", re.IGNORECASE | re.DOTALL)
        else:
            self._regex = None

    def __bool__(self) -> bool:
        return self._regex is not None

    def __repr__(self) -> str:
        return f"PathPatterns({list(self.patterns)!r})"

    def match(self, relative_path: str) -> bool:
        """True when the POSIX relative path matches one of the patterns."""
        regex = self._regex
        return regex is not None and regex.match(relative_path) is not None


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
