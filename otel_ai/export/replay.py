"""Ship the embedded default's OTLP/JSON lines files to a collector, once.

``otel-ai replay [PATH]`` reads ``traces-*.jsonl``, ``logs-*.jsonl`` and
``metrics-*.jsonl`` (SPEC section 5), turns each line (one ``Export*ServiceRequest`` in
the OTLP/JSON encoding) back into protobuf and sends it with the same senders as live
delivery (:mod:`otel_ai.export.transport`), in file order.

What was delivered is marked beside each file, in ``{file}.delivered`` (JSON: the byte
offset up to which the collector accepted every line), written after each accepted
request. Replaying again sends only what came after the mark: lines appended since, or
what an interrupted replay left. A file still being written is fine (only complete
lines are sent); a file shorter than its mark was replaced and is sent from the start.
Lines that are not OTLP/JSON (the half-written last line of a crashed process) are
skipped and counted. A signal the collector does not take at all (HTTP 404 or 405, gRPC
UNIMPLEMENTED: a traces-only backend) is skipped once refused, its items counted, its
files left unmarked for a collector that takes it. A lock file in the directory keeps two replays from sending the
same lines at once.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.json_format import ParseDict, ParseError

from ..config import SIGNALS, Settings, resolve
from ..read.files import FILE_PATTERNS
from ..redaction import default_redactor
from .engine import Backoff, Deadline, deliver
from .requests import REQUEST_TYPES, count_items, split_to_fit
from .spool import try_lock, unlock, write_atomically
from .transport import Sender, SendResult, make_sender, target_for

logger = logging.getLogger("otel_ai")

MARK_SUFFIX = ".delivered"
LOCK_NAME = ".otel-ai-replay.lock"
_TOP_KEYS = {"resourceSpans": "traces", "resourceLogs": "logs", "resourceMetrics": "metrics"}
# OTLP/JSON writes these ids as hex; the protobuf JSON mapping wants base64
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})


class ReplayError(Exception):
    """Nothing could be replayed (no such path, no endpoint); the message says why."""


@dataclass
class ReplayReport:
    """What :func:`replay` did.

    Attributes:
        files: files looked at.
        requests / items: lines accepted by the collector now, and the spans, log records
            and metric points in them, per signal.
        skipped_lines: lines that were not OTLP/JSON requests.
        up_to_date: files with nothing new since their mark.
        undelivered_files: files with lines left undelivered (collector unreachable,
            deadline passed); replaying again continues there.
        dropped_items: items the collector refused for good (malformed, or too large).
        refused_items: items not sent because the collector does not take their signal
            (HTTP 404 or 405, gRPC UNIMPLEMENTED), per signal; ``refusals`` its answer.
        errors: the last error per file.
    """

    files: int = 0
    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    items: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    skipped_lines: int = 0
    up_to_date: int = 0
    undelivered_files: list[Path] = field(default_factory=list)
    dropped_items: int = 0
    refused_items: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    refusals: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.undelivered_files

    def summary(self) -> str:
        sent = ", ".join(f"{self.items[s]} {s}" for s in SIGNALS)
        text = f"replayed {sum(self.requests.values())} requests ({sent}) from {self.files} file(s)"
        if self.up_to_date:
            text += f"; {self.up_to_date} already delivered"
        if self.skipped_lines:
            text += f"; {self.skipped_lines} unreadable line(s) skipped"
        if self.dropped_items:
            text += f"; {self.dropped_items} item(s) refused by the collector"
        for signal, answer in self.refusals.items():
            text += f"; {self.refused_items[signal]} {signal} not sent: refused for good by {answer}"
        if self.undelivered_files:
            text += f"; {len(self.undelivered_files)} file(s) not fully delivered"
        return text


def files_under(path: Path) -> list[Path]:
    """The OTLP/JSON lines files of a directory (per signal pattern, sorted), or the file."""
    if path.is_dir():
        found: list[Path] = []
        for pattern in FILE_PATTERNS:
            found.extend(p for p in sorted(path.glob(pattern)) if p.is_file() and p not in found)
        return found
    if path.is_file():
        return [path]
    raise ReplayError(f"no such file or directory: {path}")


def _hex_ids_to_base64(value: Any) -> Any:
    """Ids from hex to base64 (what ParseDict reads), and every other string redacted
    (files written before a pattern was known, or by another tool, leave no secret)."""
    if isinstance(value, str):
        return default_redactor().redact(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in _ID_KEYS and isinstance(item, str):
                try:
                    item = base64.b64encode(bytes.fromhex(item)).decode("ascii")
                except ValueError:
                    pass  # not hex: base64 already, as MessageToDict writes it
            else:
                item = _hex_ids_to_base64(item)
            out[key] = item
        return out
    if isinstance(value, list):
        return [_hex_ids_to_base64(item) for item in value]
    return value


def request_from_json(obj: Mapping[str, Any]) -> tuple[str, bytes] | None:
    """One OTLP/JSON request as (signal, protobuf bytes); None when it is none."""
    signals = [signal for key, signal in _TOP_KEYS.items() if key in obj]
    if len(signals) != 1:
        return None
    signal = signals[0]
    try:
        message = ParseDict(_hex_ids_to_base64(obj), REQUEST_TYPES[signal](), ignore_unknown_fields=True)
    except (ParseError, ValueError, TypeError, binascii.Error, RecursionError):
        return None
    return signal, message.SerializeToString()


def _lines(path: Path, offset: int) -> Iterator[tuple[int, bytes]]:
    """(end offset, line) of each complete line after ``offset``."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        position = offset
        for raw in handle:
            if not raw.endswith(b"\n"):
                return  # being written, or cut by a crash: not (yet) a line
            position += len(raw)
            yield position, raw


def _read_mark(mark: Path) -> int:
    try:
        return int(json.loads(mark.read_text(encoding="utf-8"))["offset"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _write_mark(mark: Path, offset: int, endpoint: str) -> None:
    write_atomically(mark, json.dumps({"offset": offset, "endpoint": endpoint, "at": time.time()}).encode())


def replay(
    path: str | os.PathLike[str] | None = None,
    settings: Settings | None = None,
    *,
    endpoint: str | None = None,
    protocol: str | None = None,
    force: bool = False,
    timeout: float = 60.0,
) -> ReplayReport:
    """Send the OTLP/JSON lines files at ``path`` (a directory or one file; default
    OTEL_AI_DATA_DIR) to ``endpoint`` (default: the configured OTLP endpoint), once.

    ``force`` sends everything again, ignoring the marks. A collector that does not
    answer is retried with backoff until ``timeout`` seconds have passed. Raises
    :class:`ReplayError` when there is nothing to read or nowhere to send.
    """
    settings = settings if settings is not None else resolve()
    root = Path(path) if path is not None else settings.data_dir
    files = files_under(root)
    senders: dict[str, Sender] = {}
    for signal in SIGNALS:
        target = target_for(signal, settings, endpoint=endpoint, protocol=protocol)
        if target is not None:
            senders[signal] = make_sender(target)
    if not senders:
        raise ReplayError("no collector to send to: pass --endpoint or set OTEL_EXPORTER_OTLP_ENDPOINT")
    deadline = time.monotonic() + timeout
    report = ReplayReport()
    directory = root if root.is_dir() else root.parent
    lock = try_lock(directory / LOCK_NAME, create=True)
    if lock is None:
        raise ReplayError(f"another otel-ai replay is running in {directory}")
    try:
        for file in files:
            report.files += 1
            _replay_file(file, senders, settings, force, deadline, report)
    finally:
        unlock(lock)
        for sender in senders.values():
            sender.close()
    return report


def _replay_file(
    file: Path,
    senders: Mapping[str, Sender],
    settings: Settings,
    force: bool,
    deadline: float,
    report: ReplayReport,
) -> None:
    mark = file.with_name(file.name + MARK_SUFFIX)
    offset = 0 if force else _read_mark(mark)
    try:
        size = file.stat().st_size
    except OSError as exc:
        report.errors[str(file)] = str(exc)
        return
    if offset > size:
        offset = 0  # the file was replaced since it was marked
    if offset == size:
        report.up_to_date += 1
        return
    held = False  # a line of a refused signal stays unmarked, and so does all after it
    for end, raw in _lines(file, offset):
        if not raw.strip():
            offset = end
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            obj = None
        request = request_from_json(obj) if isinstance(obj, dict) else None
        if request is None:
            report.skipped_lines += 1
            offset = end
            continue
        signal, data = request
        sender = senders.get(signal)
        if signal in report.refusals:
            # the collector does not take this signal: counted, the file left unmarked
            report.refused_items[signal] += count_items(signal, REQUEST_TYPES[signal].FromString(data))
            held = True
            continue
        if sender is None:
            exporter = settings.signal_exporter(signal)
            report.errors[str(file)] = (
                f"OTEL_{signal.upper()}_EXPORTER={exporter}: {signal} are not sent"
                if exporter != "otlp"
                else f"no endpoint for {signal}"
            )
            report.undelivered_files.append(file)
            break
        if not _send(signal, data, sender, settings.max_request_bytes, deadline, report, str(file)):
            report.undelivered_files.append(file)
            break
        if signal in report.refusals:
            held = True
        if held:
            continue
        offset = end
        _write_mark(mark, offset, sender.endpoint)
    else:
        if not held and offset != _read_mark(mark):
            _write_mark(mark, offset, next(iter(senders.values())).endpoint)


class _Parts:
    """The parts of one replayed request, as the delivery engine's queue
    (:mod:`otel_ai.export.engine`)."""

    def __init__(
        self,
        signal: str,
        parts: list[bytes],
        sender: Sender,
        deadline: float,
        report: ReplayReport,
        where: str,
    ) -> None:
        self.signal = signal
        self.sender = sender
        self.deadline = Deadline(deadline)
        self.report = report
        self.where = where
        self.queue = list(reversed(parts))

    def _items(self, data: bytes) -> int:
        return count_items(self.signal, REQUEST_TYPES[self.signal].FromString(data))

    def take(self) -> bytes | None:
        return self.queue[-1] if self.queue else None

    def load(self, part: bytes) -> bytes:
        return part

    def attempt_timeout(self) -> float | None:
        timeout = self.deadline.attempt_timeout(self.sender.timeout)
        if timeout is None:
            self.report.errors.setdefault(self.where, "deadline passed")
        return timeout

    def settled(self, part: bytes) -> None:
        pass

    def on_sent(self, part: bytes, result: SendResult) -> None:
        self.queue.pop()
        self.report.requests[self.signal] += 1
        self.report.items[self.signal] += self._items(part) - result.rejected
        self.report.dropped_items += result.rejected

    def on_refused(self, part: bytes, result: SendResult) -> None:
        self.report.refusals[self.signal] = f"{self.sender.endpoint} ({result.detail})"
        self.report.refused_items[self.signal] += sum(self._items(p) for p in self.queue)
        self.queue.clear()

    def on_split(self, part: bytes, result: SendResult, halves: list[bytes], oversized: list[bytes]) -> None:
        self.report.errors[self.where] = result.detail
        self.queue.pop()
        self.report.dropped_items += sum(self._items(big) for big in oversized)
        self.queue.extend(reversed(halves))

    def on_dropped(self, part: bytes, result: SendResult) -> None:
        self.report.errors[self.where] = result.detail
        self.queue.pop()
        self.report.dropped_items += self._items(part)

    def on_retry(self, part: bytes, result: SendResult, delay: float) -> bool:
        self.report.errors[self.where] = result.detail
        return self.deadline.wait(delay)


def _send(
    signal: str,
    data: bytes,
    sender: Sender,
    max_bytes: int,
    deadline: float,
    report: ReplayReport,
    where: str,
) -> bool:
    """Deliver one request (in parts if need be); False when the collector could not be
    reached before the deadline."""
    parts, oversized = split_to_fit(signal, data, max_bytes)
    report.dropped_items += sum(
        count_items(signal, REQUEST_TYPES[signal].FromString(big)) for big in oversized
    )
    queue = _Parts(signal, parts, sender, deadline, report, where)
    deliver(queue, Backoff())
    return not queue.queue  # delivered, dropped or refused: settled


__all__ = ["ReplayError", "ReplayReport", "files_under", "replay", "request_from_json"]
