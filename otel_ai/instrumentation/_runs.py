"""Which run the instrumented search reports to, in every process of the experiment.

- Under ``otel-ai run``: the wrapper's run, attached (in the main process and in every
  worker, forked or spawned).
- A run this process or its parent (through fork) already has: that one (e.g. the run
  an :class:`otel_ai.EventEmitter` started). A drop-in emitter also names its run in
  ``OTEL_AI_INSTRUMENTED_RUN`` for spawned workers.
- Otherwise (``opentelemetry-instrument`` alone) the first instrumented entry point starts
  a run, ended when the process exits (failed on an uncaught exception). Spawned workers
  find it through ``OTEL_AI_INSTRUMENTED_RUN`` (traceparent and run id), set for them.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Any

from ..model.pooled import publish_run, published_run
from ..model.registry import registry
from ..model.spans import Run
from ..model.tokens import set_run_totals
from ..model.vocabulary import attach_run, wrapper_run
from ..propagation import INSTRUMENTED_RUN_ENV, wrapped_run

RUN_ENV = INSTRUMENTED_RUN_ENV

_lock = threading.Lock()
_owned: Run | None = None
_failure: BaseException | None = None


def current_run() -> Run | None:
    """The run this process reports to, or None (nothing is started here)."""
    wrapped = wrapped_run()
    if wrapped is not None:
        return wrapper_run(None)
    run = registry.current()
    if run is not None:
        return run
    published = published_run(None)  # the run a parent process started (spawned workers)
    return None if published is None else attach_run(*published)


def ensure_run() -> Run:
    """The current run; a new one, owned by this process, when there is none."""
    global _owned
    run = current_run()
    if run is not None:
        return run
    with _lock:
        if _owned is not None and not _owned.ended:
            return _owned
        _owned = run = Run(None)
        publish_run(run)
        _watch_failures()
        # registered after otel_ai's own exit hook, so it runs first (atexit is LIFO)
        atexit.register(_end_owned)
    return run


def owned_run() -> Run | None:
    return _owned


def _watch_failures() -> None:
    previous = sys.excepthook

    def excepthook(exc_type: Any, exc: BaseException, tb: Any) -> None:
        global _failure
        _failure = exc
        previous(exc_type, exc, tb)

    sys.excepthook = excepthook


def _end_owned() -> None:
    run = _owned
    if run is None or run.ended or not run.owned_here:
        return
    set_run_totals(run)
    if isinstance(_failure, KeyboardInterrupt):
        run.cancel("KeyboardInterrupt")
    elif _failure is not None:
        run.fail(_failure)
    else:
        run.complete()
    os.environ.pop(RUN_ENV, None)


def reset() -> None:
    """Forget the owned run (tests)."""
    global _owned, _failure
    _owned = None
    _failure = None
    os.environ.pop(RUN_ENV, None)
