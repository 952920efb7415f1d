"""``otel-ai run [options] -- CMD ARGS...``: the command under an ``ai.run`` span.

The command starts before OpenTelemetry is loaded (:mod:`otel_ai.runner.launch`): this
module imports only what that needs, and the supervisor, which follows the command with
the whole pipeline, is loaded by name once the command runs."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from ..config import ConfigurationError, resolve
from ..runner.launch import WRAPPER_NICE, Launch, RunAlreadyRunning, RunOptions, ids_before_pipeline
from . import nothing_left_to_do

SUPERVISOR = "otel_ai.runner.supervisor"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "run",
        help="run a command as one traced AI-scientist run",
        description=(
            "Run CMD under an ai.run span: its Python processes join the trace, its output "
            "becomes log records, and the run ends with its outcome. Exits with CMD's code "
            "(128+N when CMD was killed by signal N)."
        ),
        usage="otel-ai run [options] -- CMD [ARGS...]",
    )
    parser.add_argument("--run-id", help="the run id (default: OTEL_AI_RUN_ID, else a new one)")
    parser.add_argument(
        "--watch",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory whose log files and artifacts to follow (repeatable; default: CMD's working directory)",
    )
    parser.add_argument("--no-watch", action="store_true", help="follow no directory")
    parser.add_argument(
        "--artifacts",
        metavar="s3://BUCKET/PREFIX",
        help="upload artifacts there (default: OTEL_AI_ARTIFACTS_URI)",
    )
    parser.add_argument(
        "--jaeger-url",
        metavar="URL",
        help="print the run's Jaeger trace link at start and end (default: OTEL_AI_JAEGER_URL)",
    )
    parser.add_argument(
        "--grafana-url",
        metavar="URL",
        help="print a Grafana link to the run's logs at start and end (default: OTEL_AI_GRAFANA_URL)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="S",
        help="after SIGINT/SIGTERM, seconds before the command's process group is killed (default 10)",
    )
    parser.add_argument(
        "--heartbeat", type=float, default=60.0, metavar="S", help="ai.run.heartbeat interval (default 60)"
    )
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=1800.0,
        metavar="S",
        help="warn with ai.run.stalled after this long without output or events (default 1800)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="deadline for the final flush of all telemetry (default 10)",
    )
    status = parser.add_mutually_exclusive_group()
    status.add_argument(
        "--status", dest="status", action="store_true", default=None, help="draw the status line"
    )
    status.add_argument("--no-status", dest="status", action="store_false", help="never draw the status line")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD", help="the command, after --")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print(
            "otel-ai run: no command given (usage: otel-ai run [options] -- CMD [ARGS...])", file=sys.stderr
        )
        return 2
    for name in ("grace", "heartbeat", "stall_timeout", "shutdown_timeout"):
        if getattr(args, name) <= 0:
            print(f"otel-ai run: --{name.replace('_', '-')} must be positive", file=sys.stderr)
            return 2
    overrides = {}
    if args.artifacts:
        overrides["artifacts_uri"] = args.artifacts
    for name in ("jaeger_url", "grafana_url"):
        if getattr(args, name):
            overrides[name] = getattr(args, name)
    settings = resolve(**overrides)  # a bad variable or argument fails here, before CMD starts
    # output lines should leave within a second (p95): batch log records every 0.5 s
    # unless the user chose otherwise (the children inherit it)
    os.environ.setdefault("OTEL_BLRP_SCHEDULE_DELAY", "500")
    options = RunOptions(
        command=command,
        run_id=args.run_id,
        watch=[Path(p) for p in args.watch] or [Path.cwd()],
        no_watch=args.no_watch,
        artifacts_uri=settings.artifacts_uri,
        grace_s=args.grace,
        heartbeat_s=args.heartbeat,
        stall_s=args.stall_timeout,
        shutdown_timeout_s=args.shutdown_timeout,
        status=args.status,
        nice=WRAPPER_NICE,
    )
    try:
        launch = Launch(options, settings)
        ids = ids_before_pipeline(settings, os.environ, launch.run_id)
        if ids is not None:  # the command first; the supervisor starts the span with these ids
            launch.refuse_if_running()
            launch.start(ids)
        try:
            supervisor = importlib.import_module(SUPERVISOR)
            code = int(supervisor.Supervisor(options, overrides, launch).run())
            nothing_left_to_do()  # flushed and shut down: no teardown to wait for
            return code
        except (RunAlreadyRunning, ConfigurationError):
            raise
        except Exception as exc:
            if launch.process is None or launch.followed:
                raise
            # the command runs already: it must not be orphaned by its telemetry
            print(
                f"otel-ai run: telemetry failed to start ({exc!r}); the command runs without it",
                file=sys.stderr,
            )
            return launch.follow_plainly()
    except RunAlreadyRunning as exc:
        print(f"otel-ai run: {exc}", file=sys.stderr)
        return 2
    except ConfigurationError:
        raise
