"""A run as one self-contained HTML page (``otel-ai report``).

The page holds the run's data as JSON and draws it with the inline script next to it:
the timeline (stages, nodes in lanes per worker process, executions and LLM calls inside
them), each stage's search tree, progress, tokens, resource charts, artifacts and the
failure. Nothing is fetched when it is opened: no external script, style, font or image,
and a Content-Security-Policy that forbids any (``default-src 'none'``; the one script
allowed by its hash). Its drawing code is ours (``assets/report.js``), no library.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
from collections.abc import Sequence
from datetime import datetime
from importlib import resources
from typing import Any

from ..links import Link
from ..read.runview import RunView
from ..version import __version__
from .data import report_data

__all__ = ["render_html", "render_page", "report_data"]

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def render_html(view: RunView, *, links: Sequence[Link] = (), generated_at: datetime | None = None) -> str:
    """The report of ``view`` as one HTML document (str)."""
    data = report_data(view, links=links, generated_at=generated_at)
    return render_page(data, title=f"otel-ai report: run {view.run_id}")


def render_page(data: dict[str, Any], *, title: str) -> str:
    """Put ``data`` (from :func:`report_data`) into the page template."""
    script = _asset("report.js")
    if "</script" in script.lower():  # pragma: no cover - guards edits of the asset
        raise ValueError("report.js must not contain '</script'")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    values = {
        "title": html.escape(title),
        "generator": html.escape(f"otel-ai {__version__}"),
        "script_hash": f"sha256-{digest}",
        "css": _asset("report.css"),
        "data": _json_for_script(data),
        "js": script,
    }
    # one pass, so nothing inside a value is ever taken for a placeholder
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], _asset("report.html"))


def _asset(name: str) -> str:
    return resources.files(__name__).joinpath("assets").joinpath(name).read_text(encoding="utf-8")


def _json_for_script(data: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``: no ``<``, ``>``
    or ``&`` outside escapes (so no ``</script>``), no NaN or Infinity."""
    text = json.dumps(_finite(data), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)
