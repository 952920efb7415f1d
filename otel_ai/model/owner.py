"""What every span of the model shares: :class:`SpanOwner`.

A span owner holds one span of ours: its buffered events, the context it is attached to
as a context manager, an end that happens exactly once (and only in the process that
started it), duplicate lifecycle events recorded as such, and the safety net that ends
whatever is still open at shutdown (:func:`end_open_spans`).
"""

from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.trace import Span, SpanContext, Status, StatusCode

from .. import semconv
from .._internal import never_raise, report_internal_error
from ..export.handoff import now_ns
from ..export.providers import before_shutdown
from ..pools import add_exit_hook
from .coerce import MAX_TEXT, coerce_attributes, to_text, truncate
from .events import INFO, WARN, EventBuffer, emit_log, severity, summary
from .registry import registry

if TYPE_CHECKING:
    from .run import Run

CLOSED_BY_PARENT = "parent_end"
CLOSED_BY_SHUTDOWN = "shutdown"

# Every span of ours still open in this process: the safety net that ends them at
# shutdown, so no span is ever left open (and so lost) when the process exits.
_open_lock = threading.Lock()
_open_spans: set[SpanOwner] = set()

_NO_EVENTS = EventBuffer()  # what an ended span keeps of its events: nothing

_OwnerT = TypeVar("_OwnerT", bound="SpanOwner")


def now() -> int:
    """Now, or on the handoff thread the moment the front door was called."""
    return now_ns()


class SpanOwner:
    """One span of ours: buffered events, attached context, an end that happens once.

    Each kind (run, stage, node...) says what leaving its ``with`` block means
    (:meth:`_exit`), how its parent ends it (:meth:`_close_by_parent`) and what its
    duplicate lifecycle events carry (:meth:`_duplicate_attributes`).
    """

    def __init__(self, run: Run | None, span: Span, start_ns: int) -> None:
        self._run = run
        self._span = span
        self._start_ns = start_ns
        self._lock = threading.RLock()
        self._ended = False
        self._pid = os.getpid()
        self._events = EventBuffer()
        self._tokens: list[object] = []
        # the context log records of this span are emitted in (built once: it never changes)
        self.log_context = trace_api.set_span_in_context(span)
        with _open_lock:
            _open_spans.add(self)

    # -- identity ---------------------------------------------------------------------
    @property
    def span(self) -> Span:
        return self._span

    @property
    def span_context(self) -> SpanContext:
        return self._span.get_span_context()

    @property
    def run(self) -> Run:
        assert self._run is not None
        return self._run

    @property
    def start_ns(self) -> int:
        """When the span started (ns since the epoch)."""
        return self._start_ns

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def owned_here(self) -> bool:
        """False in a forked child: the parent process ends this span, not the child."""
        return self._pid == os.getpid()

    def _not_owned(self) -> None:
        """This span lives in another process (joined, not started here): never ended
        here, and not one of the spans the shutdown safety net ends."""
        self._pid = -1
        with _open_lock:
            _open_spans.discard(self)

    # -- context manager --------------------------------------------------------------
    def __enter__(self: _OwnerT) -> _OwnerT:
        self._attach()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._detach()
        self._exit(exc)

    def _exit(self, exc: BaseException | None) -> None:
        """Leaving the ``with`` block (``exc``: what escaped it, recorded, not swallowed)."""
        raise NotImplementedError

    def _attach(self) -> None:
        self._tokens.append(context_api.attach(trace_api.set_span_in_context(self._span)))

    def _detach(self) -> None:
        if self._tokens:
            token = self._tokens.pop()
            try:
                context_api.detach(token)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - exited in another context; nothing to restore
                pass

    # -- emission ---------------------------------------------------------------------
    def _log_event(
        self,
        name: str,
        attributes: Mapping[str, Any],
        level: tuple[Any, str] = INFO,
        *,
        body: str | None = None,
    ) -> None:
        emit_log(
            self.log_context,
            self.run.run_id,
            attributes,
            event_name=name,
            body=body if body is not None else summary(name, attributes),
            level=level,
        )

    def _span_event(self, name: str, attributes: dict[str, Any]) -> None:
        if self._ended:
            return
        self._events.add(name, attributes)

    def _event(
        self, name: str, attributes: Mapping[str, Any], level: tuple[Any, str] = INFO
    ) -> dict[str, Any]:
        """A lifecycle event as a span event on this span and as a log-based event."""
        attrs = coerce_attributes(attributes)
        late = self._ended
        if late:
            attrs[semconv.EVENT_LATE] = True
        self._log_event(name, attrs, level)
        if not late:
            self._span_event(name, attrs)
        return attrs

    @never_raise()
    def record_event(
        self, name: str, attributes: Mapping[str, Any] | None = None, level: Any = "info"
    ) -> None:
        """An event on this very span: a span event and a log-based event of that name
        (flagged ``ai.event.late`` when the span already ended)."""
        self._event(to_text(name, 256) or "unknown", attributes or {}, severity(level))

    def _duplicate_attributes(self) -> dict[str, Any]:
        """What identifies this span in a duplicate lifecycle event."""
        return {}

    def _duplicate(self, event: str, attributes: Mapping[str, Any] | None = None) -> None:
        """A lifecycle event that already happened (a second start or end): recorded as
        a warning flagged ``ai.event.duplicate``, the span left as it is."""
        attrs = coerce_attributes({**self._duplicate_attributes(), **(attributes or {})})
        attrs[semconv.EVENT_DUPLICATE] = True
        self._log_event(event, attrs, WARN)

    # -- ending -----------------------------------------------------------------------
    def _claim_end(self) -> bool:
        """True for the one caller that gets to end this span."""
        with self._lock:
            if self._ended or not self.owned_here:
                return False
            self._ended = True
        with _open_lock:
            _open_spans.discard(self)
        self._forget_open()
        return True

    def _forget_open(self) -> None:
        """No longer a candidate for "the current span" of its run (kept O(1): the run
        and the stage index their open children, so a lookup never walks ended ones)."""
        run = self._run
        if run is not None and run is not self:
            run._forget_child(self)

    def _close_by_parent(self, outcome: str) -> None:
        """Ended because its parent ended (or the process shuts down) first."""
        raise NotImplementedError

    def _check_parent_open(self, parent: SpanOwner, outcome: str | None) -> None:
        """A child started under a span that already ended is recorded, flagged late,
        and ended at once: nothing would end it otherwise."""
        if parent.ended:
            self._span.set_attribute(semconv.EVENT_LATE, True)
            self._close_by_parent(outcome or CLOSED_BY_PARENT)

    def _finish(self, status: Status | None = None, attributes: Mapping[str, Any] | None = None) -> None:
        span = self._span
        if attributes:
            span.set_attributes(coerce_attributes(attributes))
        self._events.apply(span)
        if status is not None:
            span.set_status(status)
        span.end(end_time=now())
        # An ended span is exported and immutable: keep only its context, so what an ended
        # node costs in memory stays small and fixed however long the run (docs/benchmarks.md).
        self._span = trace_api.NonRecordingSpan(span.get_span_context())
        self.log_context = trace_api.set_span_in_context(self._span)
        self._events = _NO_EVENTS

    def _duration_s(self, end_ns: int | None = None) -> float:
        return round(((end_ns or now()) - self._start_ns) / 1e9, 6)


def exception_attributes(
    exc: BaseException | None, message: Any = None, stacktrace: Any = None, error_type: Any = None
) -> dict[str, Any]:
    if exc is not None:
        error_type = error_type or type(exc).__qualname__
        message = str(exc) if message is None else message
        if stacktrace is None:
            stacktrace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    attrs: dict[str, Any] = {
        semconv.ERROR_TYPE: to_text(error_type or "unknown", 256),
        semconv.EXCEPTION_TYPE: to_text(error_type or "unknown", 256),
    }
    if message is not None:
        attrs[semconv.EXCEPTION_MESSAGE] = to_text(message, MAX_TEXT)
    if stacktrace:
        text = stacktrace if isinstance(stacktrace, str) else to_text(stacktrace, 1 << 22)
        attrs[semconv.EXCEPTION_STACKTRACE] = truncate(text, MAX_TEXT, keep_tail=True)
    return attrs


def error_status(error: Mapping[str, Any]) -> Status:
    """Status ERROR described by exception attributes (:func:`exception_attributes`)."""
    return Status(
        StatusCode.ERROR,
        truncate(f"{error[semconv.ERROR_TYPE]}: {error.get(semconv.EXCEPTION_MESSAGE, '')}", 1024),
    )


def record_exception(span: Span, attrs: Mapping[str, Any]) -> None:
    """The OTel "exception" span event, from attributes already bounded."""
    span.add_event(
        "exception",
        {k: v for k, v in attrs.items() if k.startswith("exception.")},
    )


def end_open_spans() -> None:
    """End what is still open in this process: runs as abandoned, then any other span
    of ours (started late, or orphaned). Runs before the providers flush at shutdown."""
    for run in registry.open_runs():
        run.abandon("process exit")
    with _open_lock:
        leftovers = [owner for owner in _open_spans if owner.owned_here and not owner.ended]
    for owner in leftovers:
        if owner.ended:
            continue  # ended meanwhile with its parent (a stage ends its open nodes)
        try:
            owner._close_by_parent(CLOSED_BY_SHUTDOWN)
        except Exception as exc:  # noqa: BLE001 - shutdown must go on
            report_internal_error("end_open_spans", exc)


before_shutdown(end_open_spans)


def _locks_after_fork() -> None:
    """A forked child starts with one thread: a lock another thread of the parent held
    at the fork would never be released. Fresh locks for everything the child may touch."""
    global _open_lock
    _open_lock = threading.Lock()
    for owner in list(_open_spans):
        owner._lock = threading.RLock()
        owner._events._lock = threading.Lock()


os.register_at_fork(after_in_child=_locks_after_fork)
add_exit_hook(end_open_spans)  # a pool worker ends its open spans before its last flush
