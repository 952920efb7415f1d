"""The spool: OTLP requests that could not be delivered yet, on disk, in order.

Layout under OTEL_AI_DATA_DIR::

    spool/
      20261130T101500Z-pod-1234-3f9a1c/     one directory per process that spooled
        owner.lock                          flock()ed by that process while it lives
        owner.json                          pid, host, start, where its data was going
        traces/000000000042.n512.pb         one encoded Export*ServiceRequest per file
        logs/000000000043.n128.pb           (name: sequence [.part...] .n{items} .pb)
        metrics/...

- One file per request, written to a temporary name and renamed: a file is complete or
  absent, never half-written, even when the process is killed mid-write.
- Files are not fsynced one by one: the spool survives the death of the process
  (SIGKILL, OOM kill, eviction of the container), which is what it is for; a kernel crash
  or power loss can lose the last seconds written. Shutdown fsyncs what it spooled.
- Order: the sequence number is per process, shared by the three signals, so names sort
  in the order the requests were made; a request split because the collector found it
  too large is replaced by its parts (``42.0``, ``42.1``...), which sort in its place.
- Ownership: a process holds an exclusive ``flock`` on its ``owner.lock`` while it lives.
  Whoever can take that lock knows the owner is gone and may deliver its files
  (:func:`deliver_pending`); holding the lock while delivering keeps two recoverers from
  sending the same file twice. A file is deleted right after the collector accepted it:
  only a crash in that instant sends it twice.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..config import SIGNALS, SPOOL_DIR, Settings, resolve
from .engine import Backoff, Deadline, deliver
from .requests import count_items, items_in, parse_request, split_to_fit
from .transport import Sender, SendResult, senders_for

logger = logging.getLogger("otel_ai")

CORRUPT_DIR = "spool-corrupt"  # spooled files that do not decode, kept aside for a look
LOCK_FILE = "owner.lock"
INFO_FILE = "owner.json"
_NAME = re.compile(r"^(?P<key>\d+(?:\.\d+)*)\.n(?P<items>\d+)\.pb$")

# lock descriptors this process holds; closed in a forked child (flock locks belong to
# the open file, so a child keeping them would make a dead parent look alive)
_held_locks: set[int] = set()
_held_lock = threading.Lock()


def _close_inherited_locks() -> None:
    for fd in list(_held_locks):
        try:
            os.close(fd)
        except OSError:
            pass
    _held_locks.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


def entry_name(key: tuple[int, ...], items: int) -> str:
    """``000000000042.n512.pb``; a split part ``000000000042.1.0.n128.pb``."""
    head, *parts = key
    return ".".join([f"{head:012d}", *(str(p) for p in parts)]) + f".n{items}.pb"


def parse_name(name: str) -> tuple[tuple[int, ...], int] | None:
    match = _NAME.match(name)
    if match is None:
        return None
    return tuple(int(p) for p in match["key"].split(".")), int(match["items"])


def _owner_name() -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:48]
    return f"{stamp}-{host}-{os.getpid()}-{secrets.token_hex(3)}"


def try_lock(path: Path, *, create: bool) -> int | None:
    """An exclusive flock on ``path``, or None when another process holds it."""
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    with _held_lock:
        _held_locks.add(fd)
    return fd


def unlock(fd: int) -> None:
    with _held_lock:
        _held_locks.discard(fd)
    try:
        os.close(fd)  # closing the descriptor releases the flock
    except OSError:
        pass


def write_atomically(path: Path, data: bytes, *, fsync: bool = False) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)  # a full disk keeps no half-written file
        except OSError:
            pass
        raise


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class OwnSpool:
    """This process's directory in the spool, created (and locked) on first write."""

    def __init__(self, data_dir: Path, info: Mapping[str, object] | None = None) -> None:
        # absolute now: the experiment may change its working directory later
        self.root = Path(data_dir).absolute() / SPOOL_DIR
        self._info = dict(info or {})
        self._mutex = threading.Lock()
        self._dir: Path | None = None
        self._fd: int | None = None
        self._pid = os.getpid()

    @property
    def directory(self) -> Path | None:
        return self._dir if self._pid == os.getpid() else None

    def _ensure(self) -> Path:
        with self._mutex:
            if self._dir is not None and self._pid == os.getpid():
                return self._dir
            # a forked child never writes into its parent's directory
            self._pid = os.getpid()
            name = _owner_name()
            self.root.mkdir(parents=True, exist_ok=True)
            staging = self.root / f".new-{name}"
            staging.mkdir()
            fd = try_lock(staging / LOCK_FILE, create=True)
            assert fd is not None, "a directory nobody else knows cannot be locked by another"
            info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), **self._info}
            (staging / INFO_FILE).write_text(json.dumps(info, default=str), encoding="utf-8")
            final = self.root / name
            # renamed only once locked: a recoverer never sees it unlocked while we live
            os.rename(staging, final)
            for signal in SIGNALS:
                (final / signal).mkdir()
            self._dir, self._fd = final, fd
            return final

    def write(
        self, signal: str, key: tuple[int, ...], items: int, data: bytes, *, fsync: bool = False
    ) -> Path:
        path = self._ensure() / signal / entry_name(key, items)
        write_atomically(path, data, fsync=fsync)
        return path

    def sync(self) -> None:
        """fsync this process's spool directories (at shutdown)."""
        directory = self.directory
        if directory is None:
            return
        for signal in SIGNALS:
            signal_dir = directory / signal
            for path in signal_dir.glob("*.pb"):
                try:
                    fd = os.open(path, os.O_RDONLY)
                except OSError:
                    continue
                try:
                    os.fsync(fd)
                except OSError:
                    pass
                finally:
                    os.close(fd)
            _fsync_dir(signal_dir)
        _fsync_dir(directory)

    def close(self, *, remove_if_empty: bool = True) -> None:
        """Release the lock; remove the directory when nothing is left in it."""
        with self._mutex:
            directory, fd = self._dir, self._fd
            if directory is None or fd is None or self._pid != os.getpid():
                return
            self._dir = self._fd = None
        if remove_if_empty and not any(any((directory / s).glob("*.pb")) for s in SIGNALS):
            shutil.rmtree(directory, ignore_errors=True)
        unlock(fd)


def directory_bytes(root: Path, *, exclude: Path | None = None) -> int:
    """Bytes of spooled requests under ``root`` (all owners but ``exclude``)."""
    total = 0
    try:
        owners = list(os.scandir(root))
    except OSError:
        return 0
    for owner in owners:
        if not owner.is_dir() or (exclude is not None and owner.path == str(exclude)):
            continue
        for signal in SIGNALS:
            try:
                for entry in os.scandir(os.path.join(owner.path, signal)):
                    if entry.name.endswith(".pb"):
                        try:
                            total += entry.stat().st_size
                        except OSError:
                            pass
            except OSError:
                continue
    return total


def replace_with_parts(
    path: Path, signal: str, key: tuple[int, ...], parts: list[bytes]
) -> list[tuple[tuple[int, ...], int, Path]]:
    """Write ``parts`` as the files that take the place of ``path``, then delete it."""
    written = []
    for index, part in enumerate(parts):
        part_key = (*key, index)
        items = items_in(signal, part)
        part_path = path.with_name(entry_name(part_key, items))
        write_atomically(part_path, part)
        written.append((part_key, items, part_path))
    path.unlink(missing_ok=True)
    return written


# --------------------------------------------------------------------------- recovery


@dataclass
class DeliveryReport:
    """What :func:`deliver_pending` did.

    Attributes:
        delivered_requests / delivered_items: accepted by the collector, per signal.
        remaining_requests / remaining_items: still spooled (collector unreachable, the
            deadline passed, or the signal has no endpoint), per signal.
        dropped_items: refused for good by the collector (malformed, or one item larger
            than it accepts), per signal.
        refused_items: deleted unsent because the endpoint does not take the signal at
            all (HTTP 404 or 405, gRPC UNIMPLEMENTED), per signal; ``refusals`` holds its
            answer per signal.
        owners_recovered: spool directories of dead processes emptied and removed.
        owners_alive: spool directories skipped because their process still runs.
        errors: the last delivery error per signal, when there was one.
        corrupt: spooled files that do not decode as what their name says (a power
            loss mid-write), moved aside under ``spool-corrupt/`` and not sent.
    """

    delivered_requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    delivered_items: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    remaining_requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    remaining_items: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    dropped_items: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    refused_items: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    refusals: dict[str, str] = field(default_factory=dict)
    owners_recovered: int = 0
    owners_alive: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    corrupt: list[Path] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Nothing of a dead process is left in the spool."""
        return not any(self.remaining_requests.values())

    def summary(self) -> str:
        def part(counts: Mapping[str, int]) -> str:
            return ", ".join(f"{counts[s]} {s}" for s in SIGNALS)

        text = f"delivered {part(self.delivered_items)} ({sum(self.delivered_requests.values())} requests)"
        if any(self.remaining_requests.values()):
            text += f"; still spooled {part(self.remaining_items)}"
        if any(self.dropped_items.values()):
            text += f"; refused by the collector {part(self.dropped_items)}"
        for signal, answer in self.refusals.items():
            text += f"; {signal} refused for good by {answer}: {self.refused_items[signal]} spooled {signal} deleted"
        if self.corrupt:
            text += f"; {len(self.corrupt)} corrupt file(s) set aside"
        if self.owners_alive:
            text += f"; {self.owners_alive} live process(es) deliver their own"
        return text


def _entries(directory: Path) -> list[tuple[tuple[int, ...], int, Path]]:
    found = []
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    for name in names:
        parsed = parse_name(name)
        if parsed is not None:
            found.append((parsed[0], parsed[1], directory / name))
    found.sort(key=lambda entry: entry[0])
    return found


def _claim_orphans(root: Path) -> tuple[list[tuple[Path, int]], int]:
    """Lock every spool directory whose process is gone: [(directory, lock fd)], and
    how many are still owned by a live process."""
    claimed: list[tuple[Path, int]] = []
    alive = 0
    try:
        children = sorted(root.iterdir())
    except OSError:
        return [], 0
    for child in children:
        if not child.is_dir():
            continue
        fd = try_lock(child / LOCK_FILE, create=True)
        if fd is None:
            alive += 1
            continue
        if child.name.startswith(".new-"):
            # a process died while creating its directory: nothing was spooled in it yet
            shutil.rmtree(child, ignore_errors=True)
            unlock(fd)
            continue
        claimed.append((child, fd))
    return claimed, alive


def deliver_pending(
    data_dir: str | os.PathLike[str] | None = None,
    settings: Settings | None = None,
    deadline: float | None = None,
    *,
    senders: Mapping[str, Sender] | None = None,
    patient: bool = True,
) -> DeliveryReport:
    """Deliver what dead processes left in the spool of ``data_dir``, oldest first.

    ``otel-ai recover`` and ``otel-ai run`` call this. Directories of processes that
    still run are left to them. Each request goes to the collector the ``settings``
    name now (default: :func:`otel_ai.config.resolve` from the environment), per signal
    in the order it was made; a file is deleted once the collector accepted it, and a
    dead process's directory once it is empty. A collector that is down is tried again
    with backoff until ``deadline`` (a :func:`time.monotonic` value; default: 30 s from
    now), or, not ``patient``, not again after its first refusal; what is still
    undelivered then stays spooled for the next call. Never raises
    for telemetry failures; safe to run in a thread and concurrently with other
    processes (each directory is locked while it is delivered).
    """
    settings = settings if settings is not None else resolve()
    root = Path(data_dir if data_dir is not None else settings.data_dir) / SPOOL_DIR
    deadline = deadline if deadline is not None else time.monotonic() + 30.0
    report = DeliveryReport()
    if not root.is_dir():
        return report
    claimed, report.owners_alive = _claim_orphans(root)
    if not claimed:
        return report
    own_senders = senders is None
    active: Mapping[str, Sender] = senders if senders is not None else senders_for(settings)
    try:
        for signal in SIGNALS:
            sender = active.get(signal)
            queue = [entry for directory, _ in claimed for entry in _entries(directory / signal)]
            if sender is None:
                if queue:
                    exporter = settings.signal_exporter(signal)
                    report.errors[signal] = (
                        f"OTEL_{signal.upper()}_EXPORTER={exporter}: kept, not sent"
                        if exporter != "otlp"
                        else "no OTLP endpoint configured for this signal"
                    )
                _count_remaining(report, signal, queue)
                continue
            _deliver_signal(signal, queue, sender, deadline, settings.max_request_bytes, report, patient)
    finally:
        if own_senders:
            for sender in active.values():
                sender.close()
        for directory, fd in claimed:
            if not any(_entries(directory / s) for s in SIGNALS):
                shutil.rmtree(directory, ignore_errors=True)
                report.owners_recovered += 1
            unlock(fd)
    return report


def _count_remaining(
    report: DeliveryReport, signal: str, queue: list[tuple[tuple[int, ...], int, Path]]
) -> None:
    report.remaining_requests[signal] += len(queue)
    report.remaining_items[signal] += sum(items for _, items, _ in queue)


_Spooled = tuple[tuple[int, ...], int, Path]  # (key, items, file) of one spooled request


class _Recovery:
    """The spooled requests of one signal of dead processes, as the delivery engine's
    queue (:mod:`otel_ai.export.engine`): oldest first, until ``deadline``."""

    def __init__(
        self,
        signal: str,
        queue: list[_Spooled],
        sender: Sender,
        deadline: float,
        max_bytes: int,
        report: DeliveryReport,
        patient: bool = True,
    ) -> None:
        self.signal = signal
        self.sender = sender
        self.deadline = Deadline(deadline)
        self.max_bytes = max_bytes
        self.report = report
        self.patient = patient
        self.pending = list(reversed(queue))  # pop() takes the oldest
        self.items = 0  # what really goes out of the request being sent

    def take(self) -> _Spooled | None:
        return self.pending[-1] if self.pending else None

    def load(self, request: _Spooled) -> bytes | None:
        key, items, path = request
        try:
            data = path.read_bytes()
        except OSError:
            self.pending.pop()  # gone (delivered by someone else, or removed by hand)
            return None
        found = _decoded_items(self.signal, data)
        if found is None or (found == 0 and items > 0):
            self.pending.pop()
            self.report.corrupt.append(_set_aside(path, self.signal))
            return None
        self.items = found
        if len(data) > self.max_bytes:
            parts, oversized = split_to_fit(self.signal, data, self.max_bytes)
            self._replace(request, parts, oversized)
            return None
        return data

    def attempt_timeout(self) -> float | None:
        return self.deadline.attempt_timeout(self.sender.timeout)

    def settled(self, request: _Spooled) -> None:
        pass

    def on_sent(self, request: _Spooled, result: SendResult) -> None:
        self.pending.pop()
        request[2].unlink(missing_ok=True)
        self.report.delivered_requests[self.signal] += 1
        self.report.delivered_items[self.signal] += self.items - result.rejected
        self.report.dropped_items[self.signal] += result.rejected

    def on_refused(self, request: _Spooled, result: SendResult) -> None:
        # this endpoint will never take the signal: what is spooled for it goes
        self.report.refusals[self.signal] = f"{self.sender.endpoint} ({result.detail})"
        for _, left, left_path in self.pending:
            left_path.unlink(missing_ok=True)
            self.report.refused_items[self.signal] += left
        self.pending.clear()

    def on_split(
        self, request: _Spooled, result: SendResult, parts: list[bytes], oversized: list[bytes]
    ) -> None:
        self.report.errors[self.signal] = result.detail
        self._replace(request, parts, oversized)

    def _replace(self, request: _Spooled, parts: list[bytes], oversized: list[bytes]) -> None:
        key, _, path = request
        self.pending.pop()
        self.pending.extend(reversed(replace_with_parts(path, self.signal, key, parts)))
        self.report.dropped_items[self.signal] += sum(items_in(self.signal, big) for big in oversized)

    def on_dropped(self, request: _Spooled, result: SendResult) -> None:
        self.report.errors[self.signal] = result.detail
        logger.warning(
            "otel_ai: the collector refused %d spooled %s for good: %s",
            self.items,
            self.signal,
            result.detail,
        )
        self.pending.pop()
        request[2].unlink(missing_ok=True)
        self.report.dropped_items[self.signal] += self.items

    def on_retry(self, request: _Spooled, result: SendResult, delay: float) -> bool:
        self.report.errors[self.signal] = result.detail
        return self.patient and self.deadline.wait(delay)


def _deliver_signal(
    signal: str,
    queue: list[_Spooled],
    sender: Sender,
    deadline: float,
    max_bytes: int,
    report: DeliveryReport,
    patient: bool = True,
) -> None:
    recovery = _Recovery(signal, queue, sender, deadline, max_bytes, report, patient)
    deliver(recovery, Backoff())
    _count_remaining(report, signal, recovery.pending)


def _decoded_items(signal: str, data: bytes) -> int | None:
    """Items in a spooled request, None when it does not decode."""
    try:
        return count_items(signal, parse_request(signal, data))
    except Exception:  # noqa: BLE001 - DecodeError, or anything a damaged file provokes
        return None


def _set_aside(path: Path, signal: str) -> Path:
    """Move a corrupt spool file out of the way (``spool-corrupt/{owner}/{signal}/``)."""
    target = path.parents[2].parent / CORRUPT_DIR / path.parent.parent.name / signal / f"{path.name}.corrupt"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    except OSError as exc:
        logger.warning("otel_ai: cannot move the corrupt spool file %s aside (%s); deleting it", path, exc)
        path.unlink(missing_ok=True)
        return path
    logger.warning("otel_ai: the spool file %s does not decode; moved aside to %s", path, target)
    return target


def pending_owners(data_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Spool directories under ``data_dir`` (live and dead), oldest first."""
    root = Path(data_dir) / SPOOL_DIR
    if root.is_dir():
        yield from sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
