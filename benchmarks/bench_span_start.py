"""What one span costs the thread that makes it: the SDK's default provider against
otel_ai's (ids from os.urandom, tracers that follow a fork and, under `otel-ai run`, give
an orphan span the run as its parent), measured side by side in one process.

    python benchmarks/bench_span_start.py [--spans 20000] [--rounds 7]

Each variant: a TracerProvider with a BatchSpanProcessor ending in an exporter that
discards; ``spans`` spans started and ended with ``start_as_current_span`` (the usual
instrumentation call), timed with perf_counter; the processor is flushed, untimed, after
each block. Rounds rotate the order of the variants. "child" variants make the spans under
a current root span; "orphan" ones with no current span, their parent the run's (remote)
span context: given by hand to the SDK, or found by otel_ai's tracer.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Sequence

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from otel_ai.export.ids import OsRandomIdGenerator
from otel_ai.export.tracers import ProcessTracerProvider

RUN = trace_api.SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, is_remote=True)


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


# (variant, provider) pairs; "orphan" variants make spans with no current span
VARIANTS = [
    "child: sdk default (random ids)",
    "child: sdk + os.urandom ids",
    "child: otel_ai provider",
    "orphan: sdk, run context passed by hand",
    "orphan: otel_ai provider, run as default parent",
]


def _provider(kind: str) -> TracerProvider:
    if kind.startswith("child: sdk default") or kind.startswith("orphan: sdk"):
        provider = TracerProvider(id_generator=RandomIdGenerator(), shutdown_on_exit=False)
    elif kind == "child: sdk + os.urandom ids":
        provider = TracerProvider(id_generator=OsRandomIdGenerator(), shutdown_on_exit=False)
    elif kind == "child: otel_ai provider":
        provider = ProcessTracerProvider(id_generator=OsRandomIdGenerator(), shutdown_on_exit=False)
    else:
        provider = ProcessTracerProvider(
            id_generator=OsRandomIdGenerator(), default_parent=RUN, shutdown_on_exit=False
        )
    provider.add_span_processor(
        BatchSpanProcessor(_Discard(), max_queue_size=1 << 20, max_export_batch_size=4096)
    )
    return provider


def block(provider: TracerProvider, kind: str, spans: int) -> float:
    """Mean microseconds per span over one block."""
    tracer = provider.get_tracer("bench")
    if kind.startswith("orphan: sdk"):
        # what code would do by hand without otel_ai: the run's context, given each time
        run = trace_api.set_span_in_context(trace_api.NonRecordingSpan(RUN))
        start = time.perf_counter()
        for _ in range(spans):
            with tracer.start_as_current_span("child", context=run):
                pass
        elapsed = time.perf_counter() - start
    elif kind.startswith("orphan"):
        start = time.perf_counter()
        for _ in range(spans):
            with tracer.start_as_current_span("child"):
                pass
        elapsed = time.perf_counter() - start
    else:
        with tracer.start_as_current_span("root", context=Context()):
            start = time.perf_counter()
            for _ in range(spans):
                with tracer.start_as_current_span("child"):
                    pass
            elapsed = time.perf_counter() - start
    provider.force_flush()
    return elapsed / spans * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    providers = {kind: _provider(kind) for kind in VARIANTS}
    for kind in VARIANTS:  # warm-up
        block(providers[kind], kind, 1000)
    results: dict[str, list[float]] = {kind: [] for kind in VARIANTS}
    for round_ in range(args.rounds):
        order = VARIANTS[round_ % len(VARIANTS) :] + VARIANTS[: round_ % len(VARIANTS)]
        for kind in order:
            results[kind].append(block(providers[kind], kind, args.spans))
    print(
        f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}, "
        f"{args.rounds} rounds x {args.spans} spans per variant; ratio against the first row of its group"
    )
    print(f"{'variant':<50} {'median us/span':>15} {'ratio':>7}")
    baselines: dict[str, float] = {}
    for kind in VARIANTS:
        median = statistics.median(results[kind])
        baseline = baselines.setdefault(kind.split(":")[0], median)
        print(f"{kind:<50} {median:>15.2f} {median / baseline:>6.2f}x")
    for provider in providers.values():
        provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
