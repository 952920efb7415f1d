"""What every hook does around the experiment's call: bind its arguments, make a span
current, keep telemetry's own failures out of the experiment."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api

from .._internal import call_safely

_signatures: dict[Any, inspect.Signature] = {}


def bind(
    function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> inspect.BoundArguments | None:
    """The call's arguments by name (None when they do not fit the signature)."""
    key = getattr(function, "__func__", function)
    try:
        signature = _signatures.get(key)
        if signature is None:
            signature = _signatures[key] = inspect.signature(function)
        return signature.bind(*args, **kwargs)
    except (TypeError, ValueError):
        return None


def arg(bound: inspect.BoundArguments | None, name: str, default: Any = None) -> Any:
    return bound.arguments.get(name, default) if bound is not None else default


@contextlib.contextmanager
def current(owner: Any) -> Iterator[None]:
    """Make ``owner``'s span the current one (what the LLM calls and pool tasks see)."""
    if owner is None:
        yield
        return
    token = context_api.attach(trace_api.set_span_in_context(owner.span))
    try:
        yield
    finally:
        context_api.detach(token)


def safe(where: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Telemetry around the experiment's call: a failure here is reported, never raised
    into the experiment (re-raised under tests, as everywhere in otel_ai)."""
    return call_safely(f"ai_scientist.{where}", fn, *args, **kwargs)
