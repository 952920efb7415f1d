"""``otel-ai recover``: end the runs whose ``otel-ai run`` died, as abandoned."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..config import resolve
from ..export.providers import configure, shutdown
from ..export.spool import deliver_pending
from ..runner.recovery import recover
from ..runner.state import damaged_states, list_states


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "recover",
        help="end runs whose wrapper died (ai.run.outcome=abandoned) and deliver what is spooled",
        description=(
            "Find the runs of OTEL_AI_DATA_DIR whose otel-ai run process is gone (SIGKILL, "
            "evicted pod) and end each with its original trace and span ids and start time, "
            "as ai.run.outcome=abandoned, after delivering what dead processes left in the "
            "spool. Running it again changes nothing."
        ),
    )
    parser.add_argument("--data-dir", help="the data directory (default: OTEL_AI_DATA_DIR or ./otel-ai-runs)")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="deadline for delivering everything (default 30 s)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    overrides = {"data_dir": args.data_dir} if args.data_dir else {}
    settings = resolve(**overrides)
    data_dir = Path(settings.data_dir).resolve()
    # what dead processes spooled goes first, in order, before any run is closed
    spool = deliver_pending(data_dir, settings, time.monotonic() + args.timeout)
    print(f"otel-ai recover: spool: {spool.summary()}")
    for path in spool.corrupt:
        print(
            f"otel-ai recover: a spooled file did not decode and was not sent; kept as {path}",
            file=sys.stderr,
        )
    for path, reason in damaged_states(data_dir):
        print(f"otel-ai recover: skipping the damaged state file {path}: {reason}", file=sys.stderr)
    pending = [state for _, state in list_states(data_dir) if state is not None]
    if not pending:
        print(f"otel-ai recover: no unfinished run in {data_dir}")
        return 0 if spool.complete else 1
    configure(**overrides)
    recovered = recover(data_dir)
    still_running = [s.run_id for s in pending if s.run_id not in {r.run_id for r in recovered}]
    for item in recovered:
        print(
            f"recovered run {item.run_id} (attempt {item.attempt}): trace {item.trace_id}, ended as abandoned"
        )
    for run_id in still_running:
        print(f"run {run_id} is still running; left alone")
    ok = shutdown(args.timeout) and spool.complete
    if not ok:
        print("otel-ai recover: not everything could be delivered in time", file=sys.stderr)
        return 1
    return 0
