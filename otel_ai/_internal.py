"""Runtime error handling for telemetry code: logged, rate-limited, counted, never raised.

Telemetry must never raise into the experiment it watches, but a bug must not hide behind
that promise either: under pytest (``PYTEST_VERSION`` set) or with
``OTEL_AI_RAISE_INTERNAL_ERRORS=1`` internal errors are re-raised.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

logger = logging.getLogger("otel_ai")

_F = TypeVar("_F", bound=Callable[..., Any])

_lock = threading.Lock()
_counts: Counter[str] = Counter()
_last_logged: dict[str, float] = {}
_LOG_EVERY_S = 60.0


def _should_raise() -> bool:
    return bool(os.environ.get("PYTEST_VERSION")) or os.environ.get(
        "OTEL_AI_RAISE_INTERNAL_ERRORS", ""
    ).lower() in ("1", "true", "yes")


def internal_error_counts() -> dict[str, int]:
    """How many internal errors each call site swallowed in this process."""
    with _lock:
        return dict(_counts)


def report_internal_error(where: str, exc: BaseException) -> None:
    """Count ``exc`` and log it at most once a minute per call site."""
    now = time.monotonic()
    with _lock:
        _counts[where] += 1
        count = _counts[where]
        last = _last_logged.get(where)
        if last is not None and now - last < _LOG_EVERY_S:
            return
        _last_logged[where] = now
    logger.warning(
        "otel_ai: internal error in %s (%d so far): %s: %s",
        where,
        count,
        type(exc).__name__,
        exc,
        exc_info=exc if count == 1 else None,
    )


@contextlib.contextmanager
def handle_internal_errors(where: str) -> Iterator[None]:
    """The one handler of telemetry's own errors: an exception raised in the block is
    reported (:func:`report_internal_error`) and swallowed, so the experiment carries on;
    under tests (or ``OTEL_AI_RAISE_INTERNAL_ERRORS=1``) it propagates so bugs are seen::

        with handle_internal_errors("ai_scientist.node"):
            record_the_node()
    """
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - the point of this handler
        report_internal_error(where, exc)
        if _should_raise():
            raise


def call_safely(where: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` under :func:`handle_internal_errors`; None when it failed."""
    with handle_internal_errors(where):
        return fn(*args, **kwargs)
    return None


def never_raise(default: Any = None) -> Callable[[_F], _F]:
    """Decorate a telemetry entry point so that it cannot raise into its caller.

    Exceptions are reported through :func:`report_internal_error` and ``default`` is
    returned instead; under tests they propagate so bugs are seen.
    """

    def decorate(fn: _F) -> _F:
        where = fn.__qualname__

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with handle_internal_errors(where):
                return fn(*args, **kwargs)
            return default

        return cast(_F, wrapper)

    return decorate
