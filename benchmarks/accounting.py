"""Exact CPU time and page faults of every process of a tree, from Linux process accounting.

Sampling /proc misses processes that live less than a sampling period (AI-Scientist's
Interpreter starts a child per execution of a node's code: 60 and more a run, most of
them a few hundred milliseconds). The kernel's BSD process accounting (``acct(2)``, format
version 3) writes one record per process as it exits, with its user and system time (in
1/100 s) and its minor page faults, whoever its parent was.

It needs root (CAP_SYS_PACCT) and a kernel built with it. Accounting is system-wide and one
file at a time: :class:`ProcessAccounting` turns it on to a file of its own for one run of
the command and off after, so it must not be used where the system's own accounting runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

# struct acct_v3 (linux/acct.h): flag, version, tty, exitcode, uid, gid, pid, ppid,
# btime, etime (float), utime, stime, mem, io, rw, minflt, majflt, swaps (comp_t), comm
_RECORD = struct.Struct("<BBHIIIIIIf8H16s")
_VERSION = 3
_TICKS_PER_S = 100  # AHZ


def _comp(value: int) -> int:
    """comp_t: a 13-bit mantissa and a 3-bit base-8 exponent."""
    return (value & 0x1FFF) << (3 * (value >> 13))


@dataclass(frozen=True)
class Record:
    pid: int
    ppid: int
    cpu_s: float  # user + system
    minor_faults: int
    command: str


def read_records(path: Path) -> list[Record]:
    data = path.read_bytes()
    records = []
    for offset in range(0, len(data) - _RECORD.size + 1, _RECORD.size):
        fields = _RECORD.unpack_from(data, offset)
        if fields[1] != _VERSION:
            raise ValueError(f"{path}: accounting record version {fields[1]}, not {_VERSION}")
        pid, ppid = fields[6], fields[7]
        utime, stime, minflt = fields[10], fields[11], fields[15]
        records.append(
            Record(
                pid=pid,
                ppid=ppid,
                cpu_s=(_comp(utime) + _comp(stime)) / _TICKS_PER_S,
                minor_faults=_comp(minflt),
                command=fields[18].rstrip(b"\0").decode(errors="replace"),
            )
        )
    return records


def by_depth(records: list[Record], root: int) -> dict[int, tuple[float, int, int]]:
    """(CPU seconds, minor faults, processes) of ``root`` (depth 0) and of each generation
    of its descendants; records of other processes are left out."""
    parent = {r.pid: r.ppid for r in records}
    totals: dict[int, tuple[float, int, int]] = {}
    for record in records:
        depth, pid = 0, record.pid
        while pid != root:
            next_pid = parent.get(pid)
            if next_pid is None:
                break
            pid, depth = next_pid, depth + 1
        if pid != root:
            continue
        cpu, faults, count = totals.get(depth, (0.0, 0, 0))
        totals[depth] = (cpu + record.cpu_s, faults + record.minor_faults, count + 1)
    return totals


class ProcessAccounting:
    """``with ProcessAccounting(path): run()`` then :func:`read_records` (path)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

    def __enter__(self) -> ProcessAccounting:
        self.path.write_bytes(b"")
        if self._libc.acct(os.fsencode(self.path)) != 0:
            error = ctypes.get_errno()
            raise OSError(
                error, f"process accounting: {os.strerror(error)} (root and CONFIG_BSD_PROCESS_ACCT needed)"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.2)  # the last records of the tree, written as its processes are reaped
        self._libc.acct(None)
