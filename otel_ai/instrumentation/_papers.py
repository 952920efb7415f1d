"""The writeup (``ai.paper``) and the automatic review (``ai.validation``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api

from . import _runs
from ._calls import arg, bind, safe
from ._patching import Hook

WRITEUP_MODULES = ("ai_scientist.perform_writeup", "ai_scientist.perform_icbinb_writeup")
REVIEW_MODULE = "ai_scientist.perform_llm_review"


def _pdf_of(base_folder: Any) -> str | None:
    if not base_folder:
        return None
    folder = os.fspath(base_folder)
    for candidate in (
        os.path.join(folder, f"{os.path.basename(os.path.normpath(folder))}.pdf"),
        os.path.join(folder, "paper.pdf"),
    ):
        if os.path.exists(candidate):
            return candidate
    return None


def _call_in(owner: Any, wrapped: Any, args: Any, kwargs: Any) -> Any:
    """Call ``wrapped`` with ``owner``'s span current; an escaping exception ends it."""
    token: object | None = context_api.attach(trace_api.set_span_in_context(owner.span))
    try:
        return wrapped(*args, **kwargs)
    except BaseException as exc:
        context_api.detach(token)  # type: ignore[arg-type]
        token = None
        owner.__exit__(type(exc), exc, exc.__traceback__)
        raise
    finally:
        if token is not None:
            context_api.detach(token)  # type: ignore[arg-type]


def writeup(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    run = safe("paper", _runs.ensure_run)
    paper = safe("paper", run.paper) if run is not None else None
    if paper is None:
        return wrapped(*args, **kwargs)
    result = _call_in(paper, wrapped, args, kwargs)
    bound = bind(wrapped, args, kwargs)
    pdf = _pdf_of(arg(bound, "base_folder"))
    if result is False or (result is None and pdf is None):
        safe("paper", paper.failed, None)
    else:
        safe("paper", paper.generated, pdf)
    return result


def review(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    bound = bind(wrapped, args, kwargs)
    run = safe("validation", _runs.ensure_run)
    model = arg(bound, "model")
    validation = (
        safe("validation", run.validation, None if model is None else str(model)) if run is not None else None
    )
    if validation is None:
        return wrapped(*args, **kwargs)
    result = _call_in(validation, wrapped, args, kwargs)
    safe("validation", _completed, validation, result)
    return result


def _completed(validation: Any, result: Any) -> None:
    review = result[0] if isinstance(result, tuple) and result else result
    if not isinstance(review, Mapping):
        validation.completed()
        return
    scores = {
        str(key): value
        for key, value in review.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    notes = review.get("Summary") or review.get("summary")
    validation.completed(review.get("Decision") or review.get("decision"), scores, notes)


def hooks() -> list[Hook]:
    return [Hook(module, "perform_writeup", writeup) for module in WRITEUP_MODULES] + [
        Hook(REVIEW_MODULE, "perform_review", review),
    ]
