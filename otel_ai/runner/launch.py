"""Starting the command of ``otel-ai run`` before anything else.

Loading OpenTelemetry's SDK and building the pipeline take the wrapper a few hundred
milliseconds, and every one of them would be added to the experiment's wall time if the
command waited for them. So the command starts first, from what this module needs alone
(the settings, the standard library): the ``ai.run`` span's ids are chosen here, as the
pipeline's id generator would choose them, and handed to the command in TRACEPARENT; the
channel's socket is bound (what the children report waits in its buffer); the signal
handlers are in place before the command exists. The supervisor then builds the pipeline
and starts the span with those ids and the moment the command was started.

Where the pipeline would not choose the ids this way (another id generator, a sampler
other than the default, the SDK disabled) the span is started first, as before, and the
command after it (:meth:`Launch.start` with the span's own ids).

Once the command runs, the wrapper lowers its own CPU priority (``nice`` +10): on a busy
machine its work (output capture, watching files, exporting) waits for the experiment.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..bootstrap import SITE_DIR
from ..config import OUR_ID_GENERATOR, SIGNALS, Settings, new_run_id
from ..propagation import (
    CHANNEL_ENV,
    RUN_ID_ENV,
    TRACEPARENT,
    TRACESTATE,
    format_traceparent,
    parse_traceparent,
    valid_tracestate,
)
from ..randomids import random_span_id, random_trace_id
from .channel import ChannelServer
from .state import list_states

# how much lower the wrapper's CPU priority is than the command's, once the command runs
WRAPPER_NICE = 10
# the command's stdout and stderr pipes hold this much while the wrapper is not reading
# them yet (Linux; the default is 64 KiB, the unprivileged maximum 1 MiB)
PIPE_BYTES = 1 << 20
# the samplers under which a new run span is always sampled, or as its parent is
_DEFAULT_SAMPLERS = ("", "parentbased_always_on", "always_on")
# a longer run id is shortened by the model; the command must get the same one
_MAX_RUN_ID = 256

_VARIABLES = {
    "endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",
    "traces_endpoint": "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "logs_endpoint": "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "metrics_endpoint": "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
}


@dataclass
class RunOptions:
    """What ``otel-ai run`` was asked to do (see :mod:`otel_ai.cli.run`)."""

    command: Sequence[str]
    run_id: str | None = None
    watch: Sequence[Path] = ()
    no_watch: bool = False
    artifacts_uri: str | None = None
    grace_s: float = 10.0
    heartbeat_s: float = 60.0
    stall_s: float = 1800.0
    shutdown_timeout_s: float = 10.0
    status: bool | None = None  # None: on when stderr is a terminal
    extra_env: dict[str, str] = field(default_factory=dict)
    # how much this process lowers its CPU priority once the command runs (otel-ai run:
    # WRAPPER_NICE; 0 leaves a process that supervises in-process as it was)
    nice: int = 0


class RunAlreadyRunning(Exception):
    def __init__(self, run_id: str, pid: int) -> None:
        super().__init__(f"run {run_id!r} is already running under otel-ai run (pid {pid})")


@dataclass(frozen=True)
class RunIds:
    """The ``ai.run`` span's context as the command gets it."""

    trace_id: int
    span_id: int
    sampled: bool
    trace_state: str | None = None  # an orchestrator's TRACESTATE header


def ids_before_pipeline(settings: Settings, environ: Mapping[str, str], run_id: str) -> RunIds | None:
    """The run span's ids, chosen now, where the pipeline would choose them alike; None
    where only the pipeline can (the span then starts before the command)."""
    sampler = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if (
        settings.disabled
        or settings.id_generator != OUR_ID_GENERATOR
        or sampler not in _DEFAULT_SAMPLERS
        or len(run_id) > _MAX_RUN_ID
    ):
        return None
    parent = parse_traceparent(environ.get(TRACEPARENT))
    if parent is None:
        return RunIds(random_trace_id(), random_span_id(), True)
    trace_id, _parent_span_id, flags = parent
    sampled = True if sampler == "always_on" else bool(flags & 1)
    return RunIds(trace_id, random_span_id(), sampled, valid_tracestate(environ.get(TRACESTATE)))


class Signals:
    """SIGINT, SIGTERM and SIGHUP to the wrapper go to the command's process group (one
    that came before the command started, as soon as it starts); SIGKILL follows after
    the grace period."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.received: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._kill_timer: threading.Timer | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(OSError, ValueError):
                self._previous[signum] = signal.signal(signum, self._on_signal)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            with contextlib.suppress(OSError, ValueError):
                signal.signal(signum, handler)
        self._previous = {}
        if self._kill_timer is not None:
            self._kill_timer.cancel()

    def follow(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        if self.received is not None:
            self._signal_group(self.received)

    def _on_signal(self, signum: int, frame: Any) -> None:
        first = self.received is None
        self.received = self.received or signum
        self._signal_group(signum)
        if first:
            timer = threading.Timer(self.grace_s, self._signal_group, args=(signal.SIGKILL,))
            timer.daemon = True
            timer.start()
            self._kill_timer = timer

    def _signal_group(self, signum: int) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:
            process.send_signal(signum)


class Launch:
    """The command of one ``otel-ai run``, its channel and its signals."""

    def __init__(self, options: RunOptions, settings: Settings) -> None:
        self.options = options
        self.settings = settings
        self.run_id = options.run_id or settings.run_id or new_run_id()
        self.channel = ChannelServer()
        self.signals = Signals(options.grace_s)
        self.ids: RunIds | None = None
        self.start_ns: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.error: OSError | None = None
        self.followed = False  # the supervisor reads the command's output and waits for it

    @property
    def started(self) -> bool:
        return self.ids is not None

    def refuse_if_running(self) -> None:
        """:class:`RunAlreadyRunning` when a live wrapper already runs this run id."""
        for _path, state in list_states(self.settings.data_dir.resolve()):
            if state is not None and state.run_id == self.run_id and state.wrapper_alive():
                self.channel.stop()  # its socket file is not left behind
                raise RunAlreadyRunning(self.run_id, state.wrapper_pid)

    def start(self, ids: RunIds) -> None:
        """Start the command as the child of the run span ``ids``; a command that cannot
        be started leaves :attr:`error` set (the run then fails with it)."""
        self.ids = ids
        self.start_ns = time.time_ns()
        env = self.environment(ids)
        self.signals.install()
        try:
            self.process = subprocess.Popen(
                list(self.options.command),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                **_own_group(),
            )
        except OSError as exc:
            self.error = exc
            return
        for pipe in (self.process.stdout, self.process.stderr):
            _widen(pipe)
        self.signals.follow(self.process)
        if self.options.nice > 0:
            lower_own_priority(self.options.nice)

    def follow_plainly(self) -> int:
        """Without telemetry (it failed to start): the command's output to ours, byte
        for byte, until it ends; its exit code as ``otel-ai run`` returns it."""
        process = self.process
        assert process is not None and not self.followed
        self.followed = True
        copies = [
            threading.Thread(target=_copy, args=(pipe.fileno(), fd), daemon=True)
            for pipe, fd in ((process.stdout, sys.stdout.fileno()), (process.stderr, sys.stderr.fileno()))
            if pipe is not None
        ]
        for copy in copies:
            copy.start()
        returncode = process.wait()
        for copy in copies:
            copy.join(2.0)
        self.signals.restore()
        return 128 - returncode if returncode < 0 else returncode

    def environment(self, ids: RunIds) -> dict[str, str]:
        """The command's environment: ours, with the run's context and the effective settings."""
        settings = self.settings
        env = dict(os.environ)
        env[TRACEPARENT] = format_traceparent(ids.trace_id, ids.span_id, ids.sampled)
        if ids.trace_state:
            env[TRACESTATE] = ids.trace_state
        else:
            env.pop(TRACESTATE, None)
        env[RUN_ID_ENV] = self.run_id
        env[CHANNEL_ENV] = self.channel.path
        # the wrapper samples the command's whole process tree: its processes need not
        env["OTEL_AI_SYSTEM_METRICS"] = "false"
        # the effective settings, so children export where the wrapper does
        env["OTEL_AI_DATA_DIR"] = str(settings.data_dir.resolve())
        for name in ("endpoint", "traces_endpoint", "logs_endpoint", "metrics_endpoint"):
            value = getattr(settings, name)
            if value and settings.sources.get(name) == "argument":
                env[_VARIABLES[name]] = value
        if settings.sources.get("protocol") == "argument":
            env["OTEL_EXPORTER_OTLP_PROTOCOL"] = settings.protocol
        for kind in SIGNALS:  # a signal turned off is off in the children too
            if settings.sources.get(f"{kind}_exporter") == "argument":
                env[f"OTEL_{kind.upper()}_EXPORTER"] = settings.signal_exporter(kind)
        if settings.sources.get("service_name") == "argument" and settings.service_name:
            env["OTEL_SERVICE_NAME"] = settings.service_name
        if self.options.artifacts_uri:
            env["OTEL_AI_ARTIFACTS_URI"] = self.options.artifacts_uri
        site = str(SITE_DIR)
        existing = env.get("PYTHONPATH")
        env["PYTHONPATH"] = site if not existing else os.pathsep.join([site, existing])
        env.update(self.options.extra_env)
        return env


def _copy(source: int, target: int) -> None:
    while True:
        try:
            data = os.read(source, 65536)
        except InterruptedError:
            continue
        except OSError:
            return
        if not data:
            return
        with contextlib.suppress(OSError):
            os.write(target, data)


def _widen(pipe: Any) -> None:
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux
    if pipe is None or set_size is None:
        return
    with contextlib.suppress(OSError, ValueError):
        fcntl.fcntl(pipe.fileno(), set_size, PIPE_BYTES)


def _own_group() -> dict[str, Any]:
    """How the command is started: in a process group of its own, so a signal reaches the
    whole experiment tree.

    Without a controlling terminal (a pod's entrypoint, a service, CI), the group stays in
    the wrapper's session. Linux groups CPU time by session ("autogroup", on by default
    in most distributions): a command in a session of its own would compete with the
    wrapper as an equal, whatever the wrapper's nice value, so the wrapper's lower
    priority would be void. With a terminal, the command gets a session of its own, as
    before: there a group in the background of the wrapper's session would be stopped
    (SIGTTIN) on reading the terminal.
    """
    try:
        os.close(os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK))
    except OSError:
        pass  # no controlling terminal
    else:
        return {"start_new_session": True}
    if sys.version_info >= (3, 11):  # noqa: UP036 - the package installs on 3.10 too
        return {"process_group": 0}
    return {"preexec_fn": os.setpgrp}  # pragma: no cover - Python 3.10


def lower_own_priority(increment: int) -> None:
    """Raise the nice value of every thread of this process by ``increment`` (threads
    started later inherit it from theirs). Where the system does not allow it, nothing."""
    try:
        tasks = [int(tid) for tid in os.listdir("/proc/self/task")]
    except (OSError, ValueError):
        tasks = [0]  # the calling thread
    for tid in tasks:
        with contextlib.suppress(OSError, AttributeError):
            current = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(current + increment, 19))
