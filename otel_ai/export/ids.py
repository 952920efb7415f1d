"""Trace and span ids that no experiment can seed.

The SDK's default ``RandomIdGenerator`` draws from Python's global ``random`` module.
Experiments seed it (``random.seed(0)`` is in nearly every training script), so two runs
would share their trace and span ids, and backends that key spans by id (Arize Phoenix,
MLflow) merge or drop the second run without an error. :class:`OsRandomIdGenerator` reads
the operating system's random source instead; it is what every provider otel_ai builds
uses, and the ``otel_ai`` entry point of the ``opentelemetry_id_generator`` group, so
``OTEL_PYTHON_ID_GENERATOR=otel_ai opentelemetry-instrument ...`` uses it too.

An explicit choice wins: OTEL_PYTHON_ID_GENERATOR (or ``configure(id_generator=...)``)
naming another entry point of that group (``random``, ``xray``...) is used as given.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points

from opentelemetry.sdk.trace.id_generator import IdGenerator

from ..config import ID_GENERATOR_GROUP, OUR_ID_GENERATOR, id_generator_names
from ..randomids import random_span_id, random_trace_id

_given = threading.local()


@contextmanager
def given_ids(trace_id: int | None, span_id: int) -> Iterator[None]:
    """The next span this thread starts gets these ids (the trace id only when it starts
    a trace), as chosen before the pipeline existed: ``otel-ai run`` starts its command
    with the ``ai.run`` span's ids in TRACEPARENT first, and starts the span itself once
    the SDK is loaded. Only :class:`OsRandomIdGenerator` honours it."""
    _given.ids = [trace_id, span_id]
    try:
        yield
    finally:
        _given.ids = None


class OsRandomIdGenerator(IdGenerator):
    """Every bit of every id from ``os.urandom``: unaffected by ``random.seed``, fresh in
    forked children (the kernel's source has no per-process state to copy)."""

    def generate_span_id(self) -> int:
        given = getattr(_given, "ids", None)
        if given is not None and given[1] is not None:
            span_id, given[1] = given[1], None
            return int(span_id)
        return random_span_id()

    def generate_trace_id(self) -> int:
        given = getattr(_given, "ids", None)
        if given is not None and given[0] is not None:
            trace_id, given[0] = given[0], None
            return int(trace_id)
        return random_trace_id()

    def is_trace_id_random(self) -> bool:
        return True


def id_generator(name: str | None) -> IdGenerator:
    """The generator of that ``opentelemetry_id_generator`` entry-point name; ours for
    ``otel_ai`` (or None)."""
    if name is None or name == OUR_ID_GENERATOR:
        return OsRandomIdGenerator()
    found = entry_points(group=ID_GENERATOR_GROUP, name=name)
    if not found:  # checked when the settings were resolved; uninstalled since?
        raise ValueError(f"no id generator named {name!r}: {', '.join(id_generator_names())}")
    generator = next(iter(found)).load()()
    if not isinstance(generator, IdGenerator):
        raise TypeError(f"the id generator {name!r} is a {type(generator).__name__}, not an IdGenerator")
    return generator
