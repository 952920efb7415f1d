"""Tailed lines become the run's log records, at the pace the exporter can take.

:class:`RunLogSink` turns each line into a plain log record (``ai.run.log``: no event
name) correlated to the run's current span, with ``log.file.path``, ``ai.log.source``,
``ai.stage.name`` when a stage is open, the severity read from the text, and
``ai.log.truncated`` / ``ai.log.partial`` when they apply.

Its :meth:`room` is the backpressure that makes tailing lossless: the SDK's batch log
processor drops records when its queue is full, so the sink offers the tailer only half
of that queue (the other half stays free for the experiment's own lifecycle events). When
the queue is that full the tailer waits and the lines wait in their file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.context import Context

from .. import semconv
from .._internal import report_internal_error
from ..export.providers import get_pipeline, log_backlog
from ..model import Run
from ..model.events import emit_log
from ..model.lines import Line, line_severity
from ..model.registry import registry
from .tailer import TailSource

_UNBOUNDED = 1 << 20


class LogQueueGate:
    """How many more log records the exporter's queue can take without dropping.

    Reads :func:`otel_ai.export.providers.log_backlog` (the batch processor's fill, 0..1)
    and offers the tailer up to ``share`` of the queue. When the fill cannot be read (an
    SDK of another shape) it reads 0: no back-pressure, and the SDK's own bound applies.
    """

    def __init__(self, share: float = 0.5) -> None:
        self.share = share

    def room(self) -> int:
        pipeline = get_pipeline()
        if pipeline.logger_provider is None:  # disabled: records go nowhere, nothing to wait for
            return _UNBOUNDED
        size = _queue_size(pipeline.settings.queue_size)
        return int((self.share - log_backlog()) * size)


def _queue_size(configured: int) -> int:
    # the SDK's own variable wins over ours when set (see export.providers)
    raw = os.environ.get("OTEL_BLRP_MAX_QUEUE_SIZE", "")
    try:
        return max(int(raw), 1) if raw.strip() else configured
    except ValueError:
        return configured


class RunLogSink:
    """Delivers tailed lines as log records of a run (see the module docstring).

    ``run``: the run the lines belong to; None means the run open in this process when
    the lines arrive (the EventEmitter's or ``otel_ai.run``'s). ``log_context``: where
    lines belong when the run's stages live in other processes (``otel-ai run``): a
    callable returning (the context of the open stage or of the run, the stage's name or
    None); by default the run's own current span.
    """

    def __init__(
        self,
        run: Run | None = None,
        *,
        gate: LogQueueGate | None = None,
        log_context: Callable[[], tuple[Context | None, str | None]] | None = None,
    ) -> None:
        self._run = run
        self.gate = gate or LogQueueGate()
        self._log_context = log_context

    def room(self) -> int:
        return self.gate.room()

    def deliver(self, source: TailSource, lines: Sequence[Line]) -> None:
        run = self._run or registry.current()
        context: Any = None
        if run is not None:
            run_id = run.run_id
            context, stage_name = run.log_target()
        else:
            run_id = get_pipeline().settings.run_id or "unknown"
            stage_name = None
        base: dict[str, Any] = {semconv.LOG_FILE_PATH: source.path, semconv.LOG_SOURCE: source.relative}
        if self._log_context is not None:
            try:
                context, stage_name = self._log_context()
            except Exception as exc:  # noqa: BLE001 - correlation is best effort; the line is not
                report_internal_error("RunLogSink.log_context", exc)
        if stage_name is not None:
            base[semconv.STAGE_NAME] = stage_name
        for line in lines:
            text, cut, partial = line.text, line.cut, line.partial
            attrs = base
            if cut or partial:
                attrs = dict(base)
                if cut:
                    text = f"{text}…[truncated {cut} bytes]…"
                    attrs[semconv.LOG_TRUNCATED] = True
                if partial:
                    attrs[semconv.LOG_PARTIAL] = True
            emit_log(context, run_id, attrs, event_name=None, body=text, level=line_severity(text))
