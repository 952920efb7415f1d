"""What otel_ai could not deliver or keep, counted: nothing is lost silently.

Every item dropped (the spool's bound, a request the collector refuses, an unwritable
data directory...) is counted here by (signal, reason), for the ``ai.telemetry.dropped``
metric and the one stderr line at exit (:func:`unreported_losses`). A signal the endpoint
refuses for good is said once per ``otel-ai run``, between all its processes
(:func:`first_to_say`); a collector that does not answer, once a minute per run
(:func:`first_to_warn`).
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import time
from collections import Counter

logger = logging.getLogger("otel_ai")

WARN_EVERY_S = 60.0

DROP_SPOOL_FULL = "spool_full"
DROP_TOO_LARGE = "too_large"
DROP_REJECTED = "rejected"
DROP_UNENCODABLE = "unencodable"
DROP_REFUSED = "refused"
DROP_UNWRITABLE = "data_dir_unwritable"  # a full or read-only OTEL_AI_DATA_DIR

# everything dropped in this process, by (signal, reason), across pipelines
_dropped_total: Counter[tuple[str, str]] = Counter()

# the processes of one ``otel-ai run`` say a refusal once between them: the first to
# create ``{channel}.refused-{digest}`` beside the wrapper's channel says it
_refusal_family: str | None = None
_said_here: set[tuple[str, str]] = set()


def share_refusals_with(channel_path: str | None) -> None:
    """Called by the ``otel-ai run`` wrapper with its channel's path (its children find
    it in OTEL_AI_CHANNEL), so that a refusal is said once for the whole run; with None
    once the run's telemetry is flushed, to remove the markers."""
    global _refusal_family
    previous, _refusal_family = _refusal_family, channel_path
    if channel_path is None:
        if previous:
            for marker in glob.glob(glob.escape(previous) + ".refused-*") + glob.glob(
                glob.escape(previous) + ".outage-*"
            ):
                try:
                    os.unlink(marker)
                except OSError:
                    pass
        return
    for signal, endpoint in list(_said_here):  # said before the channel existed
        first_to_say(signal, endpoint)


def first_to_say(signal: str, endpoint: str, inherited_channel: str | None = None) -> bool:
    """Whether this process is the first of its run to say that ``endpoint`` refuses
    ``signal``; ``inherited_channel``: the wrapper's channel a child was started with."""
    _said_here.add((signal, endpoint))
    family = _refusal_family or inherited_channel
    if not family:
        return True
    digest = hashlib.sha256(f"{signal}\0{endpoint}".encode()).hexdigest()[:16]
    try:
        os.close(os.open(f"{family}.refused-{digest}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    except OSError:
        return True
    return True


def first_to_warn(signal: str, endpoint: str, answer: str, inherited_channel: str | None = None) -> bool:
    """Whether this process is the first of its run, in the last minute, to say that
    ``endpoint`` does not take ``signal`` now (``answer``: HTTP 503, a timeout...). Every
    pool worker meets the same outage: one line a minute says it for all of them. The
    marker ``{channel}.outage-{digest}``, beside the wrapper's channel, holds when it was
    last said (two processes in the same instant may both say it)."""
    family = _refusal_family or inherited_channel
    if not family:
        return True
    digest = hashlib.sha256(f"{signal}\0{endpoint}\0{answer}".encode()).hexdigest()[:16]
    marker = f"{family}.outage-{digest}"
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return True
    except FileExistsError:
        pass
    except OSError:
        return True
    try:
        now = time.time()
        if now - os.stat(marker).st_mtime < WARN_EVERY_S:
            return False
        os.utime(marker, (now, now))
    except OSError:
        pass
    return True


_said_total: Counter[tuple[str, str]] = Counter()
_last_loss_warning: dict[str, float] = {}


def dropped_totals() -> dict[tuple[str, str], int]:
    """Items dropped in this process since it started, by (signal, reason)."""
    return dict(_dropped_total)


def count_dropped(signal: str, reason: str, items: int) -> None:
    """Add ``items`` to the process's tally (the caller says what it has to say)."""
    _dropped_total[(signal, reason)] += items


def note_lost(signal: str, reason: str, items: int, detail: str = "") -> None:
    """Count ``items`` lost outside a delivery (the embedded-default files), with a
    warning at most once a minute per reason."""
    if items <= 0:
        return
    _dropped_total[(signal, reason)] += items
    now = time.monotonic()
    if now - _last_loss_warning.get(reason, -WARN_EVERY_S) >= WARN_EVERY_S:
        _last_loss_warning[reason] = now
        logger.warning(
            "otel_ai: lost %d %s (%s%s); the total is reported at exit",
            items,
            signal,
            reason,
            f": {detail}" if detail else "",
        )


def unreported_losses() -> str | None:
    """A line for stderr naming what was lost since the last call ("lost 24000 logs
    (data_dir_unwritable)..."), or None when nothing was."""
    fresh = Counter(_dropped_total)
    fresh.subtract(_said_total)
    fresh = +fresh
    if not fresh:
        return None
    _said_total.update(fresh)
    parts = [f"{count} {signal} ({reason})" for (signal, reason), count in sorted(fresh.items())]
    return (
        f"otel_ai: lost {sum(fresh.values())} telemetry items that could not be exported or kept: "
        + ", ".join(parts)
    )
