"""Any Python value to a bounded OpenTelemetry attribute value.

OTel attributes hold str, bool, int, float or homogeneous sequences of those. Experiments
hand us numpy scalars, dicts, None, bytes and lists of mixed types; every one becomes a
faithful, bounded value here, never an exception.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from opentelemetry.util.types import AttributeValue

from .. import semconv

# Loki refuses a record whose structured metadata exceeds 64 KB, and Jaeger UIs struggle
# with huge tags: strings are bounded, long texts (stack traces, notes) a little less so.
MAX_STRING = 4096
MAX_TEXT = 16384
MAX_SEQUENCE = 128
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# attributes that hold long texts: (bound, keep the tail too)
LONG_TEXT: dict[str, tuple[int, bool]] = {
    semconv.EXCEPTION_STACKTRACE: (MAX_TEXT, True),
    semconv.EXCEPTION_MESSAGE: (MAX_TEXT, False),
    semconv.VALIDATION_NOTES: (MAX_TEXT, False),
    semconv.NODE_SUMMARY: (MAX_TEXT, False),
}


def truncate(text: str, limit: int = MAX_STRING, *, keep_tail: bool = False) -> str:
    """``text`` cut to ``limit`` characters with a marker saying how much was cut.

    ``keep_tail`` keeps the head and the tail (a stack trace's last lines name the error).
    """
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    marker = f"…[truncated {cut} chars]…"
    room = max(limit - len(marker), 0)
    if keep_tail:
        head = room // 3
        return text[:head] + marker + text[len(text) - (room - head) :]
    return text[:room] + marker


def _scalar(value: Any) -> Any:
    """numpy (and other array-library) scalars to Python scalars; others unchanged."""
    item = getattr(value, "item", None)
    if item is not None and type(value).__module__.split(".")[0] in ("numpy", "torch", "jax"):
        try:
            if getattr(value, "ndim", 0) == 0 or getattr(value, "size", 2) == 1:
                return item()
            return value.tolist()
        except Exception:  # noqa: BLE001 - fall back to str below
            return str(value)
    return value


def _json_default(value: Any) -> Any:
    value = _scalar(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, (set, frozenset)):
        return sorted(map(str, value))
    return safe_str(value)


def safe_str(value: Any) -> str:
    """``str(value)``, or ``<unprintable TYPE>`` when its ``__str__`` raises."""
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - any object may come in
        return f"<unprintable {type(value).__name__}>"
    return text if type(text) is str else f"<unprintable {type(value).__name__}>"


_ARRAY_MODULES = ("numpy", "torch", "jax", "jaxlib")
_MAX_DEPTH = 32


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and type(value).__module__.split(".")[0] in _ARRAY_MODULES


def _array_size(value: Any) -> int:
    size = getattr(value, "size", None)
    if callable(size):  # torch: size() is the shape, numel() the count
        size = value.numel()
    return int(size) if size is not None else 0


def _bounded(value: Any, budget: list[int], depth: int = 0) -> Any:
    """``value`` cut down BEFORE it is converted: containers give up after ``budget``
    characters' worth of items (a 10-million-element array or a dict of a million keys
    costs what its first few hundred items cost), arrays too big for that become their
    library's own summary, and the count of what was left out is kept."""
    budget[0] -= 2
    if value is None or isinstance(value, (bool, int, float)):
        budget[0] -= 6
        return value
    if isinstance(value, str):
        budget[0] -= min(len(value), budget[0] + 1)
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT]
    if isinstance(value, (bytes, bytearray)):
        head = bytes(value[:MAX_TEXT]).decode("utf-8", errors="replace")
        budget[0] -= len(head)
        return head
    if depth > _MAX_DEPTH:
        return "…[nested too deep]"
    if _is_array(value):
        if getattr(value, "ndim", 0) == 0 or _array_size(value) <= MAX_SEQUENCE:
            return _bounded(_scalar(value), budget, depth + 1)
        # the library's own summary is bounded ("[0 1 2 ... 9999999]")
        text = f"{type(value).__name__}(shape={tuple(value.shape)}, dtype={getattr(value, 'dtype', '?')}) {safe_str(value)}"
        budget[0] -= len(text)
        return text
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        total = len(value)
        for key, item in value.items():
            if budget[0] <= 0:
                break
            name = key if type(key) is str else safe_str(key)
            budget[0] -= len(name)
            out[name] = _bounded(item, budget, depth + 1)
        if total > len(out):
            out["…"] = f"[{total - len(out)} more keys]"
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        total = len(value)
        items: list[Any] = []
        for item in value:
            if budget[0] <= 0:
                break
            items.append(_bounded(item, budget, depth + 1))
        if isinstance(value, (set, frozenset)):
            items = sorted(map(safe_str, items))
        if total > len(items):
            items.append(f"…[{total - len(items)} more]")
        return items
    scalar = _scalar(value)
    if scalar is not value:
        return _bounded(scalar, budget, depth + 1)
    text = safe_str(value)
    budget[0] -= len(text)
    return text


def to_text(value: Any, limit: int = MAX_STRING) -> str:
    """A readable bounded string for any value (dicts and lists as JSON)."""
    if isinstance(value, str):
        return truncate(value, limit)
    if isinstance(value, (bytes, bytearray)):
        return truncate(bytes(value[: limit * 4]).decode("utf-8", errors="replace"), limit)
    if isinstance(value, (Mapping, list, tuple, set, frozenset)) or _is_array(value):
        shrunk = _bounded(value, [limit // 2])  # room for JSON's quotes and commas
        if isinstance(shrunk, str):
            return truncate(shrunk, limit)
        try:
            text = json.dumps(shrunk, default=_json_default, sort_keys=True, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            text = safe_str(shrunk)
        return truncate(text, limit)
    return truncate(safe_str(value), limit)


def coerce(value: Any, limit: int = MAX_STRING) -> AttributeValue | None:
    """``value`` as an OTel attribute value; None for None (the attribute is left out)."""
    if value is None:
        return None
    kind = type(value)
    if kind is str:
        text: str = value
        return text if len(text) <= limit else truncate(text, limit)
    if kind is bool or kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return value if _INT64_MIN <= value <= _INT64_MAX else str(value)
    if _is_array(value) and getattr(value, "ndim", 0) >= 1 and _array_size(value) > MAX_SEQUENCE:
        if value.ndim == 1:  # the first items, as a short array would give them
            return _coerce_sequence(value[:MAX_SEQUENCE].tolist(), limit, total=len(value))
        return to_text(value, limit)
    value = _scalar(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value) if _INT64_MIN <= value <= _INT64_MAX else str(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return truncate(str(value), limit)
    if isinstance(value, (list, tuple)):
        return _coerce_sequence(value, limit)
    return to_text(value, limit)


def _coerce_sequence(
    values: list[Any] | tuple[Any, ...], limit: int, total: int | None = None
) -> AttributeValue:
    total = len(values) if total is None else total
    items = [_scalar(v) for v in values[:MAX_SEQUENCE]]
    items = [v for v in items if v is not None]
    kinds = {type(v) for v in items}
    if kinds <= {bool} or kinds <= {str}:
        out: list[Any] = [truncate(v, limit) if isinstance(v, str) else v for v in items]
    elif kinds <= {int} and all(_INT64_MIN <= v <= _INT64_MAX for v in items):
        out = items
    elif kinds <= {int, float}:
        out = [float(v) for v in items]
    else:
        # mixed or nested: every item as text keeps the sequence faithful and homogeneous
        out = [truncate(v, limit) if isinstance(v, str) else to_text(v, limit) for v in items]
    if total > MAX_SEQUENCE:
        out = out + ([f"…[{total - MAX_SEQUENCE} more]"] if all(isinstance(v, str) for v in out) else [])
    return out


MAX_IDENTIFIER = 256


def identifier(value: Any, limit: int = MAX_IDENTIFIER) -> str | None:
    """A run id, stage name, node id or kind as a bounded string; None for None or "".

    Never tests the value's truth: a numpy array given where a name belongs must not
    raise."""
    if value is None:
        return None
    text = value if type(value) is str else to_text(value, limit)
    if len(text) > limit:
        text = truncate(text, limit)
    return text or None


def coerce_attributes(attributes: Mapping[str, Any] | None) -> dict[str, AttributeValue]:
    """A dict of coerced attributes; None values and empty keys are left out."""
    result: dict[str, AttributeValue] = {}
    if not attributes:
        return result
    long_texts = LONG_TEXT
    for key, value in attributes.items():
        if type(key) is not str or len(key) > MAX_IDENTIFIER:
            key = identifier(key) or ""
        if not key:
            continue
        kind = type(value)
        # the common cases first: this runs for every event on the experiment's thread
        if kind is float or kind is bool:
            result[key] = value
            continue
        if kind is int and _INT64_MIN <= value <= _INT64_MAX:
            result[key] = value
            continue
        if value is None:
            continue
        long_text = long_texts.get(key)
        if kind is str and long_text is None:
            result[key] = value if len(value) <= MAX_STRING else truncate(value, MAX_STRING)
            continue
        try:
            if long_text is not None and kind is str:
                coerced: AttributeValue | None = truncate(value, long_text[0], keep_tail=long_text[1])
            else:
                coerced = coerce(value, long_text[0] if long_text else MAX_STRING)
        except Exception:  # noqa: BLE001 - a hostile value costs its own attribute, not the event
            coerced = f"<unprintable {type(value).__name__}>"
        if coerced is not None:
            result[key] = coerced
    return result


def as_float(value: Any) -> float | None:
    """A numeric reading of ``value`` (numbers, numeric strings, numpy scalars, objects
    with a numeric ``value`` like AI-Scientist's MetricValue), else None."""
    kind = type(value)
    if kind is float or kind is int:
        return float(value)
    if kind is bool or value is None:
        return None
    value = _scalar(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    inner = getattr(value, "value", None)
    if inner is not None and inner is not value:
        inner = _scalar(inner)
        if isinstance(inner, (int, float)) and not isinstance(inner, bool):
            return float(inner)
    return None


def is_finite(number: float | None) -> bool:
    return number is not None and math.isfinite(number)
