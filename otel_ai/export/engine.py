"""The one delivery loop: durable export, spool recovery and replay all send through it.

A *queue* (:class:`Queue`) holds encoded OTLP requests of one signal and decides what
becomes of them; :func:`deliver` takes them oldest first, sends each with the queue's
:class:`~otel_ai.export.transport.Sender` and tells the queue what the collector said:

- accepted (``on_sent``; a partial success counts the items refused);
- too large for the collector (``on_split``: the request in halves, and the single items
  still too large to send at all);
- refused as malformed, HTTP 400 or gRPC INVALID_ARGUMENT (``on_dropped``: counted, never
  sent again);
- refused for good, HTTP 404/405 or gRPC UNIMPLEMENTED: the endpoint does not take the
  signal at all (``on_refused``: said once, the signal stops);
- not taken now (down, hanging, 429, 503...: ``on_retry`` with the delay to wait, from
  :class:`Backoff`): the live queue spools and waits; spool recovery and replay sleep it
  out within their :class:`Deadline`, or stop.

The loop itself never sleeps, spools or counts: that is the queue's business, so the
same decisions hold for a process's own telemetry and for what it delivers for others.
"""

from __future__ import annotations

import random
import time
from typing import Protocol, TypeVar

from .requests import split_to_fit
from .transport import Sender, SendResult

MIN_BACKOFF_S = 0.25
MAX_BACKOFF_S = 5.0
# the longest a collector's Retry-After (HTTP) or RetryInfo (gRPC) is honoured for
MAX_RETRY_AFTER_S = 60.0
# waits drawn from [1 - JITTER, 1] x the backoff: processes that lost the same collector
# do not all come back at the same instant
JITTER = 0.25

# our own generator: experiments seed `random`, whose sequence telemetry must not move
_random = random.Random()

R = TypeVar("R")


class Backoff:
    """Bounded exponential backoff with jitter that honours the collector's Retry-After."""

    def __init__(self, first_s: float = MIN_BACKOFF_S, cap_s: float = MAX_BACKOFF_S) -> None:
        self.first_s = first_s
        self.cap_s = cap_s
        self.current_s = first_s

    def reset(self) -> None:
        self.current_s = self.first_s

    def next_delay(self, retry_after: float | None = None) -> float:
        """Seconds to wait before the next try; the backoff doubles up to its cap."""
        if retry_after is not None:
            delay = min(retry_after, MAX_RETRY_AFTER_S)
        else:
            delay = self.current_s * _random.uniform(1.0 - JITTER, 1.0)
        self.current_s = min(self.current_s * 2, self.cap_s)
        return delay


class Deadline:
    """For a queue delivered within a deadline (spool recovery, replay): each attempt
    bounded by the time left, each retry slept out unless the deadline comes first."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline  # a time.monotonic() value

    def attempt_timeout(self, limit: float) -> float | None:
        """``limit`` or the time left, whichever is less; None once the deadline passed."""
        remaining = self.deadline - time.monotonic()
        return min(limit, remaining) if remaining > 0 else None

    def wait(self, delay: float) -> bool:
        """Sleep ``delay`` seconds; False (at once) when the deadline comes first."""
        wait = min(delay, self.deadline - time.monotonic())
        if wait <= 0:
            return False
        time.sleep(wait)
        return True


class Queue(Protocol[R]):
    """What :func:`deliver` needs of a queue of requests of type ``R``."""

    signal: str
    sender: Sender

    def take(self) -> R | None:  # the oldest request due now; None: stop
        ...

    def load(self, request: R) -> bytes | None:  # its bytes; None: nothing to send
        ...

    def attempt_timeout(self) -> float | None:  # the bound of one attempt; None: stop
        ...

    def on_sent(self, request: R, result: SendResult) -> None: ...

    def on_split(
        self, request: R, result: SendResult, parts: list[bytes], oversized: list[bytes]
    ) -> None: ...

    def on_dropped(self, request: R, result: SendResult) -> None: ...

    def on_refused(self, request: R, result: SendResult) -> None: ...

    def on_retry(self, request: R, result: SendResult, delay: float) -> bool:  # False: stop
        ...

    def settled(self, request: R) -> None:  # after each attempt, whatever came of it
        ...


def deliver(queue: Queue[R], backoff: Backoff) -> None:
    """Send the queue's requests, oldest first, until it says stop."""
    while True:
        request = queue.take()
        if request is None:
            return
        try:
            if not _attempt(queue, request, backoff):
                return
        finally:
            queue.settled(request)


def _attempt(queue: Queue[R], request: R, backoff: Backoff) -> bool:
    data = queue.load(request)
    if data is None:
        return True
    timeout = queue.attempt_timeout()
    if timeout is None:
        return False
    result = queue.sender.send(data, timeout)
    if result.ok:
        backoff.reset()
        queue.on_sent(request, result)
    elif result.refused:
        queue.on_refused(request, result)
    elif result.too_large:
        parts, oversized = split_to_fit(queue.signal, data, max(len(data) // 2, 1))
        queue.on_split(request, result, parts, oversized)
    elif not result.retryable:
        queue.on_dropped(request, result)
    else:
        return queue.on_retry(request, result, backoff.next_delay(result.retry_after))
    return True
