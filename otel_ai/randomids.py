"""Trace and span ids from the operating system's random source, without the SDK.

Experiments seed Python's ``random`` (which the SDK's default generator draws from); these
do not move with it and are fresh in forked children. :mod:`otel_ai.export.ids` builds the
SDK's id generator on them, and ``otel-ai run`` picks its ``ai.run`` span's ids with them
before the SDK is loaded.
"""

from __future__ import annotations

import os


def random_span_id() -> int:
    """A span id (never 0, the invalid one)."""
    span_id = 0
    while not span_id:
        span_id = int.from_bytes(os.urandom(8), "big")
    return span_id


def random_trace_id() -> int:
    """A trace id (never 0, the invalid one)."""
    trace_id = 0
    while not trace_id:
        trace_id = int.from_bytes(os.urandom(16), "big")
    return trace_id
