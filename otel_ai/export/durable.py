"""Durable, non-blocking OTLP delivery: nothing lost to an outage, nothing waits on it.

The SDK's batch processors hand each batch to a ``DurableSpanExporter`` (or log, or
metric; :mod:`otel_ai.export.outbox`) on their worker thread. It encodes the batch
into an OTLP request (the ``opentelemetry-exporter-otlp-proto-common`` encoders), splits
it when larger than OTEL_AI_MAX_REQUEST_BYTES, and queues the bytes for its signal's
:class:`Delivery`, which sends them on a thread of its own through the delivery engine
(:mod:`otel_ai.export.engine`; :mod:`otel_ai.export.transport`, one attempt bounded by
OTEL_EXPORTER_OTLP_TIMEOUT) and returns. The signals of one pipeline share an
:class:`~otel_ai.export.outbox.Outbox`: one spool directory, one bound, one tally. The
batch processors never wait on the network, so their queues keep draining whatever the
collector does.

A request the collector does not take (down, hanging, 429, 503...) goes to the spool
(:mod:`otel_ai.export.spool`); so does everything queued behind it, and, while the
collector stays unreachable, everything new, so that a process killed meanwhile leaves
its telemetry on disk. The delivery thread tries the oldest request again with backoff
(0.25 s doubling to 5 s, with jitter, or the collector's Retry-After / gRPC RetryInfo)
and, once one gets through, delivers the rest in order: in memory when healthy, from disk
after an outage. A request the collector finds too large is split and sent in parts; one
it refuses as malformed (HTTP 400, gRPC INVALID_ARGUMENT) is dropped. An endpoint that
does not take the signal at all (HTTP 404 or 405, gRPC UNIMPLEMENTED: a traces-only
backend) is a permanent refusal, not an outage: said once on stderr, the signal is no
longer exported by this process, nothing of it is spooled, and what this process had
spooled of it is deleted. The spool is bounded (OTEL_AI_SPOOL_MAX_BYTES for the whole
spool directory); beyond the bound the oldest requests go. Every item dropped is counted
(:mod:`otel_ai.export.losses`) in the ``ai.telemetry.dropped`` metric and
reported in an ``ai.telemetry.dropped`` WARN log record once delivery resumes.

``force_flush`` waits (within its timeout) until what was queued before it is delivered,
and gives an unreachable collector one more try; ``shutdown`` then writes what is still
undelivered to the spool, for a later process (the ``otel-ai run`` it ran under,
``otel-ai recover``, the next ``otel-ai run``) to deliver with
:func:`otel_ai.export.spool.deliver_pending`. ``secure`` writes it to the spool at once,
without waiting: a pool worker's task, before its result goes back.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, set_value

from .._internal import report_internal_error
from .engine import Backoff, deliver
from .losses import (  # noqa: F401 - dropped_totals, share_refusals_with: here for callers
    DROP_REFUSED,
    DROP_REJECTED,
    DROP_SPOOL_FULL,
    DROP_TOO_LARGE,
    DROP_UNENCODABLE,
    DROP_UNWRITABLE,
    WARN_EVERY_S,
    count_dropped,
    dropped_totals,
    first_to_say,
    first_to_warn,
    share_refusals_with,
)
from .requests import items_in, split_to_fit
from .spool import replace_with_parts
from .transport import Sender, SendResult

if TYPE_CHECKING:
    from .outbox import Outbox

logger = logging.getLogger("otel_ai")

# How long requests wait in memory before the collector takes them is up to the
# collector; past this many bytes per signal they wait on disk instead.
MEMORY_LIMIT_BYTES = 32 << 20
# time kept back from a shutdown deadline to write what is undelivered to the spool
SHUTDOWN_RESERVE_S = 0.25
# a shutdown without a flush just before it waits at most this long for delivery
DEFAULT_SHUTDOWN_WAIT_S = 2.0

# per process, shared by the signals: spool names sort in the order requests were made
_sequence = itertools.count(1)


@dataclass(eq=False)
class Entry:
    """One request waiting for the collector: in memory (``data``) or on disk (``path``)."""

    key: tuple[int, ...]
    items: int
    size: int
    data: bytes | None = None
    path: Path | None = None
    removed: bool = False


_Entry = Entry


@dataclass
class DeliveryStats:
    delivered_requests: int = 0
    delivered_items: int = 0
    failed_attempts: int = 0
    spooled_requests: int = 0
    refused_items: int = 0


class Delivery:
    """One signal's queue of encoded requests and the thread that delivers them."""

    def __init__(self, outbox: Outbox, signal: str, sender: Sender) -> None:
        self.outbox = outbox
        self.signal = signal
        self.sender = sender
        self.cond = outbox.cond
        self.pending: deque[Entry] = deque()
        self.memory_bytes = 0
        self.inflight: Entry | None = None
        self.down = False
        self.retry_at = 0.0
        self.backoff = Backoff()
        self.closed = False
        self.shut_down = False  # closed, and what was in memory is on disk
        self.thread_done = False
        self.flush_deadline: float | None = None
        self.stats = DeliveryStats()
        # set once the endpoint refused this signal for good (its answer, for the record)
        self.refused: str | None = None
        self._said: dict[str, float] = {}  # answers already printed, and when
        self._persist_lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"otel_ai-deliver-{signal}", daemon=True)
        self.thread.start()

    # -- the exporter side (batch processor worker threads) ---------------------------------
    def submit(self, data: bytes, items: int) -> None:
        """Queue one encoded request; never touches the network."""
        if self.refused is not None:
            self.refuse_items(items)
            return
        key = (next(_sequence),)
        if len(data) > self.outbox.max_request_bytes:
            parts, oversized = split_to_fit(self.signal, data, self.outbox.max_request_bytes)
            for big in oversized:
                self.outbox.note_drop(self.signal, DROP_TOO_LARGE, items_in(self.signal, big))
            for index, part in enumerate(parts):
                self._queue((*key, index), items_in(self.signal, part), part)
        else:
            self._queue(key, items, data)

    def _queue(self, key: tuple[int, ...], items: int, data: bytes) -> None:
        entry = Entry(key, items, len(data), data=data)
        with self.cond:
            refused = self.refused is not None
            to_disk = self.down or self.closed or self.memory_bytes + entry.size > MEMORY_LIMIT_BYTES
        if refused:  # came in since submit() looked
            self.refuse_items(items)
            return
        if to_disk:
            try:
                entry.path = self.outbox.spool.write(self.signal, key, items, data)
                entry.data = None
            except OSError as exc:
                self._spool_failed(exc)
        with self.cond:
            self.pending.append(entry)
            if entry.data is not None:
                self.memory_bytes += entry.size
            else:
                self.outbox.disk_bytes += entry.size
                self.stats.spooled_requests += 1
            # the collector failed since we looked: this one goes to disk like the rest
            late = entry.data is not None and (self.down or self.closed)
            self.cond.notify_all()
        if late:
            self._persist()
        elif entry.path is not None:
            self.outbox.enforce_bound()
        if self.memory_bytes > MEMORY_LIMIT_BYTES:  # only when the spool cannot be written
            self._bound_memory()

    def _bound_memory(self) -> None:
        """The spool cannot be written (full or read-only data directory): what is held
        in memory beyond its bound goes, oldest first, and is counted."""
        lost = 0
        with self.cond:
            while self.memory_bytes > MEMORY_LIMIT_BYTES:
                victim = next(
                    (e for e in self.pending if e.data is not None and e is not self.inflight), None
                )
                if victim is None:
                    break
                self.pending.remove(victim)
                victim.removed = True
                victim.data = None
                self.memory_bytes -= victim.size
                lost += victim.items
            self.cond.notify_all()
        if lost:
            self.drop(DROP_UNWRITABLE, lost)

    def _spool_failed(self, exc: OSError) -> None:
        now = time.monotonic()
        last = self.outbox._last_warning.get("spool_write", -WARN_EVERY_S)
        if now - last >= WARN_EVERY_S:
            self.outbox._last_warning["spool_write"] = now
            logger.warning("otel_ai: cannot write to the spool (%s); keeping %s in memory", exc, self.signal)

    def drop(self, reason: str, items: int) -> None:
        self.outbox.note_drop(self.signal, reason, items)

    def refuse_items(self, items: int) -> None:
        """Items of a signal the endpoint refused for good: counted, not kept."""
        with self.cond:
            self.stats.refused_items += items
        self.outbox.note_refused(self.signal, items)

    # -- flush and shutdown -------------------------------------------------------------------
    def flush(self, timeout_s: float) -> bool:
        """Wait until everything queued so far is delivered; False when the deadline
        passes or the collector refuses one more try."""
        timeout_s = max(timeout_s, 0.0)
        deadline = time.monotonic() + timeout_s
        with self.cond:
            self.flush_deadline = deadline
        # a little is kept back: at shutdown the providers' last steps (the final metric
        # collection, writing what is left to the spool) share the same deadline
        return self._wait_delivered(deadline - min(SHUTDOWN_RESERVE_S, timeout_s / 4))

    def secure(self) -> None:
        """Make what is queued so far outlive this process, without waiting on the
        network: every request not yet delivered is written to the spool (the delivery
        thread goes on sending it, and deletes the file once the collector took it). A
        process killed afterwards leaves it for a recoverer
        (:func:`otel_ai.export.spool.deliver_pending`)."""
        with self.cond:
            if self.closed or not any(entry.data is not None for entry in self.pending):
                return
        self._persist()

    def _wait_delivered(self, deadline: float) -> bool:
        with self.cond:
            if not self.pending:
                return True
            target = (*self.pending[-1].key, 1 << 62)  # after the last one and its parts
            failures = self.stats.failed_attempts
            if self.down:
                self.retry_at = 0.0  # one more try now
                self.cond.notify_all()
            while True:
                if not self.pending or self.pending[0].key > target:
                    return True
                if self.stats.failed_attempts > failures or self.closed:
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(remaining)

    def shutdown(self, timeout_s: float | None = None) -> None:
        """Deliver what time allows, then spool the rest and stop."""
        now = time.monotonic()
        limit = now + (DEFAULT_SHUTDOWN_WAIT_S if timeout_s is None else max(timeout_s, 0.0))
        hint = self.flush_deadline
        if hint is not None and hint >= now - 1.0:
            # the flush just before this shutdown (providers.shutdown) set the deadline
            limit = min(limit, hint)
        if not self.closed:
            self._wait_delivered(limit - SHUTDOWN_RESERVE_S)
        with self.cond:
            if self.closed:
                return
            self.closed = True
            self.cond.notify_all()
        self._persist()
        with self.cond:  # what could not be written to the spool ends with the process
            unwritten = [e for e in self.pending if e.data is not None and not e.removed]
        if unwritten:
            for entry in unwritten:
                self._remove(entry)
            self.drop(DROP_UNWRITABLE, sum(e.items for e in unwritten))
        self.outbox.spool.sync()
        self.sender.close()
        with self.cond:
            self.shut_down = True
        self.outbox.release_when_done()

    def _persist(self) -> None:
        """Move every request held in memory to the spool, oldest first."""
        with self._persist_lock:
            with self.cond:
                todo = [entry for entry in self.pending if entry.data is not None]
            for entry in todo:
                data = entry.data
                if data is None or entry.removed:
                    continue
                try:
                    path = self.outbox.spool.write(self.signal, entry.key, entry.items, data)
                except OSError as exc:
                    self._spool_failed(exc)
                    break
                with self.cond:
                    if entry.removed:
                        stale: Path | None = path  # delivered while being written
                    else:
                        stale = None
                        entry.path, entry.data = path, None
                        self.memory_bytes -= entry.size
                        self.outbox.disk_bytes += entry.size
                        self.stats.spooled_requests += 1
                if stale is not None:
                    stale.unlink(missing_ok=True)
        self.outbox.enforce_bound()

    # -- the delivery thread ----------------------------------------------------------------
    def _run(self) -> None:
        attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))  # never trace our own I/O
        while True:
            try:
                deliver(self, self.backoff)  # returns once closed
            except Exception as exc:  # noqa: BLE001 - the thread must live on
                report_internal_error(f"otel_ai.export.durable.Delivery[{self.signal}]", exc)
                with self.cond:
                    self.inflight = None
                time.sleep(0.5)
                continue
            with self.cond:
                self.thread_done = True
            self.outbox.release_when_done()
            return

    # -- the engine's queue (otel_ai.export.engine): what becomes of each request ---------
    def take(self) -> Entry | None:
        """The oldest request once its retry is due; None once closed."""
        with self.cond:
            while True:
                if self.closed:
                    return None
                now = time.monotonic()
                if self.pending and now >= self.retry_at:
                    entry = self.pending[0]
                    self.inflight = entry
                    return entry
                self.cond.wait(self.retry_at - now if self.pending else None)

    def load(self, entry: Entry) -> bytes | None:
        data = entry.data
        path = entry.path
        if data is None and path is not None:
            try:
                data = path.read_bytes()
            except OSError:
                data = None
        if data is None:  # the file vanished (removed by hand): nothing to send
            self._remove(entry)
        return data

    def attempt_timeout(self) -> float:
        return self.sender.timeout

    def settled(self, entry: Entry) -> None:
        with self.cond:
            self.inflight = None
            self.cond.notify_all()

    def on_sent(self, entry: Entry, result: SendResult) -> None:
        path = self._remove(entry)
        if path is not None:
            path.unlink(missing_ok=True)
        with self.cond:
            self.stats.delivered_requests += 1
            self.stats.delivered_items += entry.items - result.rejected
            resumed = self.down
            self.down = False
            self.retry_at = 0.0
        if result.rejected:
            logger.warning(
                "otel_ai: the collector refused %d of %d %s: %s",
                result.rejected,
                entry.items,
                self.signal,
                result.detail,
            )
            self.drop(DROP_REJECTED, result.rejected)
        if resumed:
            logger.info("otel_ai: %s delivery resumed", self.signal)
        self.outbox.report_drops()

    def on_refused(self, entry: Entry, result: SendResult) -> None:
        self._refused(result.detail)

    def on_dropped(self, entry: Entry, result: SendResult) -> None:
        logger.warning(
            "otel_ai: the collector refused %d %s for good: %s", entry.items, self.signal, result.detail
        )
        path = self._remove(entry)
        if path is not None:
            path.unlink(missing_ok=True)
        self.drop(DROP_REJECTED, entry.items)

    def on_retry(self, entry: Entry, result: SendResult, delay: float) -> bool:
        """The collector did not take it now: everything goes to disk until it does."""
        with self.cond:
            self.down = True  # from now on new requests go straight to disk
            self.retry_at = time.monotonic() + delay
        answer = result.status or result.detail
        if self._first_time(answer) and first_to_warn(
            self.signal, self.sender.endpoint, answer, self.outbox.channel()
        ):
            logger.warning(
                "otel_ai: cannot deliver %s to %s (%s); spooling to %s",
                self.signal,
                self.sender.endpoint,
                result.detail,
                self.outbox.spool.root,
            )
        self._persist()
        with self.cond:
            # counted once on disk: a flush that sees the failure knows the data is safe
            self.stats.failed_attempts += 1
            self.cond.notify_all()
        return True

    def _first_time(self, status: str) -> bool:
        """Whether an answer (``HTTP 422 ...``) is new: each distinct one is printed once,
        again only after a quiet minute."""
        now = time.monotonic()
        with self.cond:
            if len(self._said) > 64:  # bounded, whatever the collector answers
                self._said.clear()
            last = self._said.get(status)
            self._said[status] = now
        return last is None or now - last >= WARN_EVERY_S

    def _refused(self, detail: str) -> None:
        """The endpoint does not take this signal: say so once, stop, keep nothing."""
        with self.cond:
            first = self.refused is None
            if first:
                self.refused = detail
            # (a request queued while the refusal came in is cleared with the rest)
            entries = list(self.pending)
            for entry in entries:
                entry.removed = True
                if entry.data is not None:
                    self.memory_bytes -= entry.size
                elif entry.path is not None:
                    self.outbox.disk_bytes -= entry.size
            self.pending.clear()
            self.down = False
            self.cond.notify_all()
        for entry in entries:
            if entry.path is not None:
                entry.path.unlink(missing_ok=True)
        items = sum(entry.items for entry in entries)
        self.refuse_items(items)
        if not first:
            return
        self.outbox.observe_drops()
        said = first_to_say(self.signal, self.sender.endpoint, self.outbox.channel())
        logger.log(
            logging.WARNING if said else logging.INFO,
            "otel_ai: %s refuses %s for good (%s): %s are no longer exported to it, nor spooled (%d dropped); "
            "OTEL_%s_EXPORTER=none stops offering them",
            self.sender.endpoint,
            self.signal,
            detail,
            self.signal,
            items,
            self.signal.upper(),
        )

    def _remove(self, entry: Entry) -> Path | None:
        """Take a settled entry out of the queue; its file, if any, is the caller's to delete."""
        with self.cond:
            if entry.removed:
                return entry.path
            entry.removed = True
            try:
                self.pending.remove(entry)
            except ValueError:
                pass
            if entry.data is not None:
                self.memory_bytes -= entry.size
            elif entry.path is not None:
                self.outbox.disk_bytes -= entry.size
            return entry.path

    def on_split(self, entry: Entry, result: SendResult, parts: list[bytes], oversized: list[bytes]) -> None:
        """The collector refused ``entry`` for its size: replace it by halves (and so on)."""
        for big in oversized:
            self.drop(DROP_TOO_LARGE, items_in(self.signal, big))
        replacements: list[Entry] = []
        if entry.path is not None:
            for key, items, path in replace_with_parts(entry.path, self.signal, entry.key, parts):
                replacements.append(Entry(key, items, path.stat().st_size, path=path))
        else:
            for index, part in enumerate(parts):
                replacements.append(
                    Entry((*entry.key, index), items_in(self.signal, part), len(part), data=part)
                )
        with self.cond:
            if entry.removed:
                return
            entry.removed = True
            index = self.pending.index(entry)
            del self.pending[index]
            for offset, replacement in enumerate(replacements):
                self.pending.insert(index + offset, replacement)
            if entry.data is not None:
                self.memory_bytes += sum(r.size for r in replacements) - entry.size
            else:
                self.outbox.disk_bytes += sum(r.size for r in replacements) - entry.size
            self.cond.notify_all()
