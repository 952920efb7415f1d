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

import json
import os
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

REDACTED = "[REDACTED]"

# Where a token may start: not inside a word, but after "_" or "-" (``plot_sk-...png``)
# and right after an escape that otel_ai or the experiment applied to the text: JSON's
# ``\n``, ``\t``, ``\"``, ``\u0022``, Python's ``\x..`` and URL-encoding's ``%0A``.
# (tested after a token matched: the patterns themselves then start with a literal
# prefix, which the regular expression engine finds fast)
_ESCAPE_BEFORE = re.compile(
    r"(?:\\[nrtbfv]|\\u[0-9A-Fa-f]{4}|\\x[0-9A-Fa-f]{2}|%[0-9A-Fa-f]{2}|%25[0-9A-Fa-f]{2}|%5[Cc][nrtbfv]"
    r"|%5[Cc]u[0-9A-Fa-f]{4})$"
)


def _token_may_start(text: str, start: int) -> bool:
    if start == 0 or not text[start - 1].isalnum() or not text[start - 1].isascii():
        return True
    return _ESCAPE_BEFORE.search(text, max(start - 8, 0), start) is not None


_TOKEN_PATTERNS = (
    r"sk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}",  # OpenAI, Anthropic
    r"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?![0-9A-Z])",  # AWS access key ids
    r"hf_[A-Za-z0-9]{30,}",  # Hugging Face
    r"gh[pousr]_[A-Za-z0-9]{30,}",  # GitHub
    r"github_pat_[A-Za-z0-9_]{40,}",
    r"AIza[0-9A-Za-z_\-]{35}",  # Google API keys
    r"xox[abprse]-[A-Za-z0-9\-]{10,}",  # Slack
    r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",  # JWT
)
# the name of a setting that holds a secret: API_KEY, aws_secret_access_key, apiKey,
# SecretAccessKey, accessToken, DB_PASSWORD, client-secret... (not max_tokens, monkey)
_SECRET_NAME = (
    r"(?:[a-z0-9]+[_\-])*[a-z0-9]*"
    r"(?:secret|token|password|passwd|passphrase|apikey|credentials?"
    r"|(?:api|access|secret|private|auth|session|signing|master|account)[_\-]?key"
    r"|(?<=[_\-])(?:key|pwd))"
    r"(?:[_\-][a-z0-9]+)*"
)
# a quote around a name or value, plain, JSON-escaped or URL-encoded
_QUOTE = r"(?:\\*[\"']|%22|%27)"
# a value ends at white space, a quote, a separator or an escape, plain or URL-encoded
# (``\n`` or ``%0A`` starts the next line of an encoded text: not part of the value)
_VALUE = r"(?:(?!%(?:0[9AaDd]|2[0267Cc]|3[Bb]|5[Cc]|7[Dd]))[^\s\"',;}&\\]){3,}"
# Prefix kept, secret part (group "secret") replaced; the prefix must start where a
# token may start (checked after the match, see _token_may_start).
_PREFIXED_PATTERNS = (
    r"(?i)(?:bearer|token)(?:\s+|%20|\+)(?P<secret>[A-Za-z0-9._~+/=\-]{8,})",
    r"(?i)://[^/\s:@]+:(?P<secret>[^/\s@]+)@",  # user:password@host in URLs
)
# NAME=value / "name": "value": every assignment is found, then its name is checked
_ASSIGNMENT = re.compile(
    # (a name without one of the keywords is passed over inside the engine)
    r"(?<![A-Za-z0-9_\-])(?P<name>(?=[A-Za-z0-9_\-]*?(?i:secret|token|passw|passphrase|apikey|credential|key|pwd))"
    r"[A-Za-z0-9_\-]+)" + _QUOTE + r"?\s*(?:[:=]|%3[aAdD])\s*" + _QUOTE + r"?(?P<secret>" + _VALUE + ")"
)
_SECRET_NAME_RE = re.compile("(?i)" + _SECRET_NAME)
# every pattern above needs one of these (lower-cased) substrings to match
_HINTS = (
    "sk-",
    "akia",
    "asia",
    "abia",
    "acca",
    "hf_",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat",
    "aiza",
    "xox",
    "eyj",
    "bearer",
    "token",
    "://",
    "key",
    "secret",
    "passw",
    "pwd",
    "credential",
    "aws",
    "creds",
    "auth",
    "vault",
    "boto",
    "s3",  # what makes a bare AWS secret recognisable
)
_KEEP_LENGTH_FROM = 1024
_SECRET_ENV_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_MIN_ENV_SECRET_LEN = 8

# A bare AWS secret access key: 40 characters of base64 (``/`` and ``+`` possibly
# URL-encoded), not part of a longer run of them.
_AWS_SECRET = re.compile(r"(?:[A-Za-z0-9/+]|%2[BbFf]){40,}")
# what makes a 40-character token an AWS secret rather than a hash or a name
_AWS_KEY_ID = re.compile(r"(?:AKIA|ASIA)[0-9A-Z]{16}")
_SECRET_CONTEXT = re.compile(r"(?i)secret|aws|credential|creds|passw|token|key|auth|vault|boto|s3")
_CONTEXT_CHARS = 80
_HEX = frozenset("0123456789abcdefABCDEF")
_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_DIGITS = frozenset("0123456789")
_MIN_DISTINCT = 20


def _looks_random(token: str) -> bool:
    """Mixed case and digits, not hex, and as many different characters as random
    base64 has (29 of 40 on average; a sha1 is hex, a repeated word is not random)."""
    chars = set(token)
    return (
        len(chars) >= _MIN_DISTINCT
        and not chars <= _HEX
        and bool(chars & _UPPER and chars & _LOWER and chars & _DIGITS)
    )


def _aws_candidate(text: str, match: re.Match[str]) -> tuple[int, str] | None:
    """(start, key) when the run of base64 characters ``match`` is one 40-character
    token, possibly right after an escape (``\\n``, ``%0A``) that the run swallowed."""
    start, end = match.span()
    if text.startswith("=", end) or text[end : end + 3].upper() == "%3D":  # base64 padding: longer data
        return None
    run = match.group(0)
    for skip in (0, 1, 2, 3, 4, 5):
        if skip and not _ESCAPE_BEFORE.search(text, max(start + skip - 8, 0), start + skip):
            continue
        token = run[skip:].replace("%2F", "/").replace("%2f", "/").replace("%2B", "+").replace("%2b", "+")
        if len(token) == 40:
            if skip == 0 and start > 0 and text[start - 1] in "/+=":
                return None
            return start + skip, token
    return None


def _redact_aws_secrets(text: str) -> str:
    if _SECRET_CONTEXT.search(text) is None and _AWS_KEY_ID.search(text) is None:
        return text
    has_key_id: bool | None = None
    out: list[str] = []
    last = 0
    for match in _AWS_SECRET.finditer(text):
        found = _aws_candidate(text, match)
        if found is None or not _looks_random(found[1]):
            continue
        start = found[0]
        # recognisable by what surrounds it: a secret-looking word just before, or an
        # AWS key id in the same text
        before = text[max(start - _CONTEXT_CHARS, 0) : start]
        if not _SECRET_CONTEXT.search(before):
            if has_key_id is None:
                has_key_id = _AWS_KEY_ID.search(text) is not None
            if not has_key_id:
                continue
        out.append(text[last:start])
        out.append(REDACTED)
        last = match.end()
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


class Redactor:
    """Replaces secrets in strings; cheap when a string holds none."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        values = {
            value
            for name, value in env.items()
            if _SECRET_ENV_NAME.search(name) and len(value) >= _MIN_ENV_SECRET_LEN
        }
        # the value as it reads once JSON-escaped or URL-encoded, too
        variants = {v for value in values for v in _encodings(value)}
        literals = sorted(variants, key=len, reverse=True)
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
        original = text
        text = _redact_aws_secrets(text)  # first: an AWS key id nearby tells it apart
        text = _sub_matches(self._tokens, text, boundary=True)
        text = _sub_matches(self._prefixed[0], text, boundary=True)  # Bearer / token
        text = _sub_matches(self._prefixed[1], text)  # user:password@
        text = _sub_matches(_ASSIGNMENT, text, names=_SECRET_NAME_RE)
        if len(text) > len(original) >= _KEEP_LENGTH_FROM:
            # "[REDACTED]" is longer than a short secret: a text already cut to its
            # bound stays within it (the excess goes from the middle)
            room = len(original) - 1
            head = room // 2
            text = text[:head] + "…" + text[len(text) - (room - head) :]
        return text

    def redact_value(self, value: Any) -> Any:
        """Redact a string, the strings of a sequence attribute value, or those of a
        structured log body (mappings and lists, at any depth)."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, (list, tuple)) and any(
            isinstance(item, (str, list, tuple, Mapping)) for item in value
        ):
            return type(value)(self.redact_value(i) for i in value)
        if isinstance(value, Mapping):
            return {
                self.redact(k) if isinstance(k, str) else k: self.redact_value(v) for k, v in value.items()
            }
        return value

    def redact_attributes(self, attributes: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """The same mapping when nothing changed, else a redacted copy."""
        if not attributes:
            return attributes
        if not self.might_contain_secret("\n".join(strings_of(attributes.values()))):
            return attributes
        changed: dict[str, Any] | None = None
        for key, value in attributes.items():
            new = self.redact_value(value)
            if new is not value and new != value:
                if changed is None:
                    changed = dict(attributes)
                changed[key] = new
        return attributes if changed is None else changed


def _encodings(value: str) -> set[str]:
    escaped = json.dumps(value, ensure_ascii=False)[1:-1]
    quoted = {urllib.parse.quote(value, safe=""), urllib.parse.quote(value), urllib.parse.quote_plus(value)}
    return {value, escaped, json.dumps(escaped, ensure_ascii=False)[1:-1], *quoted}


def strings_of(values: Any) -> list[str]:
    """The strings among ``values`` and inside their list or tuple values."""
    out: list[str] = []
    for value in values:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, (list, tuple)):
            out.extend(item for item in value if isinstance(item, str))
    return out


def _sub_matches(
    pattern: re.Pattern[str], text: str, names: re.Pattern[str] | None = None, boundary: bool = False
) -> str:
    """Every match of ``pattern`` redacted: its group "secret" when it has one, else the
    whole match. With ``boundary`` only matches that start where a token may start count;
    with ``names`` only those whose group "name" says they hold a secret."""
    whole = "secret" not in pattern.groupindex
    out: list[str] = []
    last = pos = 0
    search = pattern.search
    while True:
        match = search(text, pos)
        if match is None:
            break
        start = match.start()
        if (names is None or names.fullmatch(match["name"])) and (
            not boundary or _token_may_start(text, start)
        ):
            secret_start, secret_end = match.span() if whole else match.span("secret")
            out.append(text[last:secret_start])
            out.append(REDACTED)
            last = pos = secret_end
        else:
            pos = start + 1  # inside a word, a token may still start further on (``x=api_key=...``)
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


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
