"""Secrets out of every exported string.

API keys and tokens (OpenAI, Anthropic, AWS, Hugging Face, GitHub, Google, Slack, JWTs,
bearer tokens, passwords in URLs), ``NAME=value`` assignments whose name says it holds a
secret, and the literal values of this process's environment variables named *KEY*,
*SECRET*, *TOKEN*, *PASSWORD* are replaced by ``[REDACTED]`` in log bodies, attributes,
span and event names, status messages and exception texts before export.

Redaction runs in the exporters, on the export worker thread, never on the experiment's
thread.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[REDACTED]"

_TOKEN_PATTERNS = (
    r"\bsk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}",  # OpenAI, Anthropic
    r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",  # AWS access key ids
    r"\bhf_[A-Za-z0-9]{30,}\b",  # Hugging Face
    r"\bgh[pousr]_[A-Za-z0-9]{30,}\b",  # GitHub
    r"\bgithub_pat_[A-Za-z0-9_]{40,}\b",
    r"\bAIza[0-9A-Za-z_\-]{35}\b",  # Google API keys
    r"\bxox[abprs]-[A-Za-z0-9\-]{10,}",  # Slack
    r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",  # JWT
)
# Prefix kept, secret part (group "secret") replaced.
_PREFIXED_PATTERNS = (
    r"(?i)\b(?:bearer|token)\s+(?P<secret>[A-Za-z0-9._~+/=\-]{8,})",
    r"(?i)://[^/\s:@]+:(?P<secret>[^/\s@]+)@",  # user:password@host in URLs
    # NAME=value / "name": "value" where NAME says it holds a secret
    r"(?i)\b(?:(?:[a-z0-9]+[_\-])+(?:key|secret|token|password|passwd|pwd|credentials?)"
    r"|(?:[a-z0-9]+[_\-])*(?:secret|token|password|passwd|apikey))(?:[_\-][a-z0-9]+)*"
    r"[\"']?\s*[:=]\s*[\"']?(?P<secret>[^\s\"',;}&]{3,})",
)
# every pattern above needs one of these (lower-cased) substrings to match
_HINTS = (
    "sk-", "akia", "asia", "abia", "acca", "hf_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat", "aiza", "xox", "eyj",
    "bearer", "token", "://", "key", "secret", "passw", "pwd", "credential",
)
_SECRET_ENV_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_MIN_ENV_SECRET_LEN = 8


class Redactor:
    """Replaces secrets in strings; cheap when a string holds none."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        literals = sorted(
            {
                value
                for name, value in env.items()
                if _SECRET_ENV_NAME.search(name) and len(value) >= _MIN_ENV_SECRET_LEN
            },
            key=len,
            reverse=True,
        )
        self._literals = re.compile("|".join(map(re.escape, literals))) if literals else None
        self._tokens = re.compile("|".join(_TOKEN_PATTERNS))
        self._prefixed = [re.compile(p) for p in _PREFIXED_PATTERNS]
        self._literal_values = literals

    def might_contain_secret(self, text: str) -> bool:
        """False when ``text`` certainly holds no secret (a cheap test of many strings
        joined together, before the regular expressions run on any of them)."""
        if self._literal_values and any(value in text for value in self._literal_values):
            return True
        lowered = text.lower()
        return any(hint in lowered for hint in _HINTS)

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``[REDACTED]``."""
        if not self.might_contain_secret(text):
            return text
        if self._literals is not None:
            text = self._literals.sub(REDACTED, text)
        text = self._tokens.sub(REDACTED, text)
        for pattern in self._prefixed:
            text = pattern.sub(_replace_secret_group, text)
        return text

    def redact_value(self, value: Any) -> Any:
        """Redact a string, or the strings of a sequence attribute value."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, (list, tuple)) and any(isinstance(item, str) for item in value):
            return type(value)(self.redact(i) if isinstance(i, str) else i for i in value)
        return value

    def redact_attributes(self, attributes: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """The same mapping when nothing changed, else a redacted copy."""
        if not attributes:
            return attributes
        if not self.might_contain_secret("\n".join(_strings(attributes.values()))):
            return attributes
        changed: dict[str, Any] | None = None
        for key, value in attributes.items():
            new = self.redact_value(value)
            if new is not value and new != value:
                if changed is None:
                    changed = dict(attributes)
                changed[key] = new
        return attributes if changed is None else changed


def _strings(values: Any) -> list[str]:
    out: list[str] = []
    for value in values:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, (list, tuple)):
            out.extend(item for item in value if isinstance(item, str))
    return out


def _replace_secret_group(match: re.Match[str]) -> str:
    start, end = match.span("secret")
    whole_start = match.start()
    text = match.group(0)
    return text[: start - whole_start] + REDACTED + text[end - whole_start :]


_default: Redactor | None = None


def default_redactor() -> Redactor:
    """A redactor built from this process's environment (built once, on first use)."""
    global _default
    if _default is None:
        _default = Redactor()
    return _default


def reset_default_redactor() -> None:
    """Forget the cached redactor so the next one reads the environment afresh."""
    global _default
    _default = None


def redact(text: str) -> str:
    """Redact ``text`` with the process-wide :func:`default_redactor`."""
    return default_redactor().redact(text)
