"""Run one command under an ``ai.run`` span and end the run with its outcome."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanContext, TraceFlags

from .. import semconv
from ..config import Settings, resolve
from ..export.losses import share_refusals_with
from ..export.providers import configure, shutdown
from ..links import run_links
from ..metrics import observe_process_tree
from ..model.spans import Run
from ..model.tokens import set_run_totals
from ..propagation import (
    MSG_ACTIVITY,
    MSG_BEST,
    MSG_NODE,
    MSG_PROGRESS,
    MSG_RUN_END,
    MSG_RUN_IDEA,
    MSG_STAGE,
    MSG_STAGE_END,
    MSG_TOKENS,
    parent_span_context,
)
from ..redaction import redact
from ..watch import Watcher
from .launch import Launch, RunAlreadyRunning, RunIds, RunOptions
from .orphans import Orphans
from .recovery import recover
from .state import RunState, list_states, remove_state, write_state
from .status import Status, StatusLine
from .streams import LogSink, OutputPump, TerminalOut, stderr_fd, stdout_fd

logger = logging.getLogger("otel_ai.runner")

_STATE_REFRESH_S = 15.0


__all__ = ["RunAlreadyRunning", "RunOptions", "Supervisor"]


class _Progress:
    """What the children reported, kept for the run span and the status line."""

    def __init__(self, status: Status, run_context: Context) -> None:
        self.status = status
        self.lock = threading.Lock()
        self.run_context = run_context
        self.stage_context: Context | None = None
        self.stages_seen: list[str] = []
        self.run_end: dict[str, Any] | None = None
        self.idea: Any = None
        self.best: dict[str, Any] | None = None
        self.nodes = {"good": 0, "buggy": 0}
        self._progress_reported = False

    def on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("kind")
        with self.lock:
            if kind == MSG_STAGE:
                name = str(message.get("name") or "")
                self.status.stage = name
                if name and name not in self.stages_seen:
                    self.stages_seen.append(name)
                self.stage_context = _remote_context(message.get("trace_id"), message.get("span_id"))
                self.status.progress = None
            elif kind == MSG_STAGE_END:
                if message.get("name") == self.status.stage:
                    self.stage_context = None
            elif kind == MSG_PROGRESS:
                self._progress_reported = True
                self.status.stage = str(message.get("stage") or self.status.stage or "")
                for key, attr in (
                    ("progress", "progress"),
                    ("good", "good"),
                    ("buggy", "buggy"),
                    ("total", "total"),
                    ("best", "best"),
                ):
                    if message.get(key) is not None:
                        setattr(self.status, attr, message[key])
            elif kind == MSG_NODE:
                buggy = message.get("buggy")
                if buggy is not None:
                    self.nodes["buggy" if buggy else "good"] += 1
                if not self._progress_reported:  # counts from nodes until progress is reported
                    self.status.good, self.status.buggy = self.nodes["good"], self.nodes["buggy"]
                    self.status.total = self.nodes["good"] + self.nodes["buggy"]
            elif kind == MSG_TOKENS:
                self.status.input_tokens += int(message.get("input") or 0)
                self.status.output_tokens += int(message.get("output") or 0)
            elif kind == MSG_RUN_END:
                self.run_end = message
            elif kind == MSG_RUN_IDEA:
                self.idea = message.get("idea")
            elif kind == MSG_BEST:
                self.best = {k: message.get(k) for k in ("stage", "node_id", "metric", "value")}

    def log_context(self) -> tuple[Context | None, str | None]:
        """Where a line of output belongs: the open stage, else the run."""
        with self.lock:
            if self.stage_context is not None:
                return self.stage_context, self.status.stage
            return self.run_context, None


def _remote_context(trace_id: Any, span_id: Any) -> Context | None:
    try:
        context = SpanContext(
            int(str(trace_id), 16), int(str(span_id), 16), is_remote=True, trace_flags=TraceFlags(1)
        )
    except (TypeError, ValueError):
        return None
    if not context.is_valid:
        return None
    return trace_api.set_span_in_context(trace_api.NonRecordingSpan(context))


class Supervisor:
    """Follows the command, ends the run; :meth:`run` returns the exit code.

    Given a :class:`~.launch.Launch` whose command was started already (as
    ``otel-ai run`` does), it builds the pipeline and starts the ``ai.run`` span with the
    ids the command was given; otherwise it starts the span, then the command."""

    def __init__(
        self,
        options: RunOptions,
        settings_overrides: dict[str, Any] | None = None,
        launch: Launch | None = None,
    ) -> None:
        self.options = options
        self._overrides = settings_overrides or {}
        self._launch = launch
        self._last_activity = time.monotonic()
        self._stalled = False
        self._stop = threading.Event()

    # -- the whole run ------------------------------------------------------------------
    def run(self) -> int:
        launch = self._launch or Launch(self.options, resolve(**self._overrides))
        pipeline = configure(**self._overrides)
        # before this process exports anything: the command, started already, may say a
        # refusal first, and the run says it once
        share_refusals_with(launch.channel.path)
        settings = pipeline.settings
        data_dir = settings.data_dir.resolve()
        # what dead processes of this data directory spooled (an earlier run's, and this
        # run's killed pool workers): delivered meanwhile, and once more at the end
        self._orphans = Orphans(data_dir, settings).start()
        run_id = launch.run_id
        # a live wrapper of this run id was refused before the command started
        try:
            attempt, previous = self._previous_attempt(data_dir, run_id, refuse=not launch.started)
        except RunAlreadyRunning:
            launch.channel.stop()  # its socket file is not left behind
            raise
        parent = _orchestrator_context()
        ids = launch.ids
        run = Run(
            run_id,
            parent=parent,
            links=[previous] if previous is not None else (),
            attributes={
                semconv.RUN_ATTEMPT: attempt,
                semconv.RUN_COMMAND: redact(shlex.join(self.options.command))[:4096],
            },
            start_time=launch.start_ns,
            ids=None if ids is None else (None if parent is not None else ids.trace_id, ids.span_id),
        )
        span_context = run.span_context
        state = RunState(
            run_id=run_id,
            trace_id=f"{span_context.trace_id:032x}",
            span_id=f"{span_context.span_id:016x}",
            parent_span_id=_parent_span_id(run),
            start_ns=run.start_ns,
            wrapper_pid=os.getpid(),
            wrapper_started=psutil.Process().create_time(),
            attempt=attempt,
            last_seen_ns=time.time_ns(),
            resource=dict(pipeline.resource.attributes) if pipeline.resource is not None else {},
            attributes={semconv.RUN_COMMAND: redact(shlex.join(self.options.command))[:4096]},
        )
        try:
            write_state(data_dir, state)
        except OSError as exc:
            # the experiment matters more than its telemetry: it runs anyway
            _say(
                f"otel-ai run: cannot write to OTEL_AI_DATA_DIR={data_dir} ({exc.strerror or exc}); running the "
                "command anyway, with telemetry degraded: what cannot be exported is lost (the number is said at "
                "exit) and `otel-ai recover` cannot close this run if this process dies"
            )
        _print_links(settings, run_id, state.trace_id, state.start_ns, None, "started")
        # the start event out now, not in 5 s: a run that dies early is still seen to start
        threading.Thread(
            target=_flush_logs, args=(pipeline,), name="otel_ai-start-flush", daemon=True
        ).start()
        status = Status(run_id)
        progress = _Progress(status, run.log_context)
        channel = launch.channel.start(self._on_message_from(progress))
        status_line = self._status_line(status)
        sink = LogSink(run_id, progress.log_context).start(("stdout", "stderr"))
        # log files and artifacts under the watched directories
        watcher = (
            None
            if self.options.no_watch
            else Watcher(
                run,
                roots=list(self.options.watch) or [Path.cwd()],
                artifacts_uri=self.options.artifacts_uri,
                log_context=progress.log_context,  # lines join the command's open stage
                new_since_ns=launch.start_ns,  # what the command wrote before the watcher started
            ).start(background=True)  # a large tree's first scan must not hold the pumps
        )
        if not launch.started:
            launch.start(_ids_of(run))
        exit_code = 1
        try:
            exit_code = self._follow(launch, run, settings, sink, status_line)
        finally:
            self._stop.set()
            if status_line is not None:
                status_line.stop()
            deadline = time.monotonic() + self.options.shutdown_timeout_s
            # the command's processes are gone: what they could not deliver, now
            last_orphans = threading.Thread(
                target=self._orphans.finish, args=(deadline,), name="otel_ai-spool-last", daemon=True
            )
            last_orphans.start()
            sink.stop(max(deadline - time.monotonic(), 0.1) / 2)
            if sink.dropped:
                _say(
                    f"otel-ai run: {sink.dropped} output lines were not recorded (too many waiting for export)"
                )
            if watcher is not None:  # the final sweep, leaving time for the flush
                watcher.stop(deadline=deadline - min(2.0, self.options.shutdown_timeout_s / 4))
            channel.stop()
            self._end_run(launch, run, progress, exit_code)
            shutdown(max(deadline - time.monotonic(), 0.5))
            last_orphans.join(max(deadline - time.monotonic(), 0.0))
            share_refusals_with(None)
            try:
                remove_state(data_dir, run_id)
            except OSError:
                pass  # never written (said at start)
            _print_links(settings, run_id, state.trace_id, state.start_ns, time.time_ns(), "ended")
        return exit_code

    def _follow(
        self,
        launch: Launch,
        run: Run,
        settings: Settings,
        sink: LogSink,
        status_line: StatusLine | None,
    ) -> int:
        process = launch.process
        if process is None:
            exc = launch.error
            os.write(
                stderr_fd(),
                f"otel-ai run: cannot start {self.options.command[0]!r}: {getattr(exc, 'strerror', None) or exc}\n".encode(),
            )
            launch.signals.restore()
            return 127 if isinstance(exc, FileNotFoundError) else 126
        launch.followed = True
        observe_process_tree(process.pid)  # the experiment's tree, not the wrapper
        out = TerminalOut(
            stdout_fd(), status_line if status_line and status_line.shares_terminal(stdout_fd()) else None
        )
        err = TerminalOut(stderr_fd(), status_line)
        pumps = [
            OutputPump("stdout", process.stdout, out, sink, self._activity).start(),  # type: ignore[arg-type]
            OutputPump("stderr", process.stderr, err, sink, self._activity).start(),  # type: ignore[arg-type]
        ]
        liveness = threading.Thread(
            target=self._liveness, args=(run, settings), name="otel_ai-liveness", daemon=True
        )
        liveness.start()
        try:
            returncode = _wait(process)
        finally:
            launch.signals.restore()
        # the command is gone; a grandchild may still hold its pipes open: bounded wait
        for pump in pumps:
            pump.join(2.0)
        self._returncode = returncode
        return 128 - returncode if returncode < 0 else returncode

    # -- liveness: heartbeats, stall detection, state refresh ---------------------------
    def _activity(self) -> None:
        self._last_activity = time.monotonic()
        self._stalled = False

    def _on_message_from(self, progress: _Progress) -> Callable[[dict[str, Any]], None]:
        def on_message(message: dict[str, Any]) -> None:
            self._activity()
            if message.get("kind") != MSG_ACTIVITY:
                progress.on_message(message)

        return on_message

    def _liveness(self, run: Run, settings: Settings) -> None:
        data_dir = settings.data_dir.resolve()
        next_beat = time.monotonic() + self.options.heartbeat_s
        next_state = time.monotonic() + _STATE_REFRESH_S
        while not self._stop.wait(min(1.0, self.options.heartbeat_s, self.options.stall_s)):
            now = time.monotonic()
            if now >= next_beat:
                run.heartbeat()
                next_beat = now + self.options.heartbeat_s
            idle = now - self._last_activity
            if idle >= self.options.stall_s and not self._stalled:
                self._stalled = True
                run.event(semconv.RUN_STALLED, {semconv.RUN_STALLED_FOR_S: round(idle, 1)}, "warning")
            if now >= next_state:
                self._refresh_state(data_dir, run.run_id)
                next_state = now + _STATE_REFRESH_S
            self._orphans.tick(now)

    def _refresh_state(self, data_dir: Path, run_id: str) -> None:
        for _path, state in list_states(data_dir):
            if state is not None and state.run_id == run_id and state.wrapper_pid == os.getpid():
                state.last_seen_ns = time.time_ns()
                try:
                    write_state(data_dir, state)
                except OSError:  # full or read-only meanwhile: the last good state stays
                    return

    # -- attempts -----------------------------------------------------------------------
    def _previous_attempt(self, data_dir: Path, run_id: str, *, refuse: bool) -> tuple[int, Link | None]:
        """A run id whose earlier wrapper died: end that attempt, link it, count on."""
        for _path, state in list_states(data_dir):
            if state is None or state.run_id != run_id:
                continue
            if state.wrapper_alive():
                if refuse:
                    raise RunAlreadyRunning(run_id, state.wrapper_pid)
                continue
            recovered = recover(data_dir, only_run=run_id, reason="a new attempt started")
            if recovered:
                previous = recovered[0]
                context = SpanContext(
                    int(previous.trace_id, 16),
                    int(previous.span_id, 16),
                    is_remote=True,
                    trace_flags=TraceFlags(1),
                )
                link = Link(
                    context,
                    {semconv.LINK_TYPE: semconv.LINK_PREVIOUS_ATTEMPT, semconv.RUN_ATTEMPT: previous.attempt},
                )
                return previous.attempt + 1, link
        return 1, None

    # -- the end ------------------------------------------------------------------------
    def _end_run(self, launch: Launch, run: Run, progress: _Progress, exit_code: int) -> None:
        _set_token_totals(run)
        with progress.lock:
            idea, best = progress.idea, progress.best
        run.set_idea(idea)
        if best is not None:
            run.note_best(**best)
        returncode = getattr(self, "_returncode", None)
        reported = progress.run_end or {}
        found = reported.get("attributes")
        attributes: dict[str, Any] = found if isinstance(found, dict) else {}
        stage = attributes.get(semconv.RUN_FAILED_STAGE) or (
            progress.stages_seen[-1] if progress.stages_seen else None
        )
        if launch.signals.received is not None:
            name = signal.Signals(launch.signals.received).name
            run.span.set_attribute(semconv.RUN_EXIT_CODE, exit_code)
            if returncode is not None and returncode < 0:
                run.span.set_attribute(semconv.RUN_SIGNAL, signal.Signals(-returncode).name)
            run.cancel(f"{name} received by otel-ai run", stage=stage)
            return
        if launch.error is not None:
            run.fail(launch.error, stage=stage)
            return
        if returncode is not None and returncode < 0:
            signame = _signal_name(-returncode)
            run.span.set_attribute(semconv.RUN_SIGNAL, signame)
            run.span.set_attribute(semconv.RUN_EXIT_CODE, exit_code)
            run.fail(
                stage=stage,
                error_type=signame,
                message=f"killed by {signame}",
                stacktrace=attributes.get(semconv.EXCEPTION_STACKTRACE),
            )
            return
        run.span.set_attribute(semconv.RUN_EXIT_CODE, exit_code)
        if exit_code == 0:
            run.complete()
            return
        run.fail(
            stage=stage,
            error_type=attributes.get(semconv.ERROR_TYPE) or f"exit code {exit_code}",
            message=attributes.get(semconv.EXCEPTION_MESSAGE)
            or f"{self.options.command[0]} exited with code {exit_code}",
            stacktrace=attributes.get(semconv.EXCEPTION_STACKTRACE),
        )

    def _status_line(self, status: Status) -> StatusLine | None:
        wanted = self.options.status
        fd = stderr_fd()
        if wanted is None:
            wanted = StatusLine.wanted(fd)
        return StatusLine(status, fd).start() if wanted else None


def _set_token_totals(run: Run) -> None:
    """The LLM tokens of the whole run (``ai.llm.*``), from the ledger its children's
    AI-Scientist instrumentation wrote (absent when they made no LLM call)."""
    set_run_totals(run)


def _flush_logs(pipeline: Any) -> None:
    if pipeline.logger_provider is not None:
        try:
            pipeline.logger_provider.force_flush(5000)
        except Exception as exc:  # noqa: BLE001
            logger.debug("otel_ai: start event not flushed: %s", exc)


def _say(line: str) -> None:
    try:
        os.write(stderr_fd(), (line + "\n").encode("utf-8", "replace"))
    except OSError:  # a closed stderr must not end the run
        pass


def _print_links(
    settings: Settings, run_id: str, trace_id: str, start_ns: int, end_ns: int | None, when: str
) -> None:
    """The run's Jaeger and Grafana links on stderr (OTEL_AI_JAEGER_URL, OTEL_AI_GRAFANA_URL)."""
    links = run_links(
        run_id=run_id,
        trace_id=trace_id,
        jaeger_url=settings.jaeger_url,
        grafana_url=settings.grafana_url,
        start_ns=start_ns,
        end_ns=end_ns,
    )
    if links:
        lines = [f"otel-ai run: run {run_id} {when}, trace {trace_id}"] + [
            f"otel-ai run: {link.label}: {link.url}" for link in links
        ]
        try:
            os.write(stderr_fd(), ("\n".join(lines) + "\n").encode())
        except OSError as exc:  # a closed stderr must not end the run
            logger.debug("otel_ai: links not printed: %s", exc)


def _wait(process: Any) -> int:
    while True:
        try:
            return int(process.wait())
        except KeyboardInterrupt:  # pragma: no cover - SIGINT is handled, but be safe
            continue


def _ids_of(run: Run) -> RunIds:
    context = run.span_context
    return RunIds(
        context.trace_id,
        context.span_id,
        context.trace_flags.sampled,
        trace_state=context.trace_state.to_header() if context.trace_state else None,
    )


def _orchestrator_context() -> Context | None:
    """The context of an orchestrator that started us with a TRACEPARENT."""
    parent = parent_span_context()
    if parent is None:
        return None
    return trace_api.set_span_in_context(trace_api.NonRecordingSpan(parent))


def _parent_span_id(run: Run) -> str | None:
    parent = getattr(run.span, "parent", None)
    return f"{parent.span_id:016x}" if parent is not None else None


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
