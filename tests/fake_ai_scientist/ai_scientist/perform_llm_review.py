"""The automatic review (as ai_scientist/perform_llm_review.py)."""

from __future__ import annotations

from typing import Any

from .llm import extract_json_between_markers, get_response_from_llm


def perform_review(
    text,
    model,
    client,
    *,
    context=None,
    num_reflections=2,
    num_fs_examples=1,
    num_reviews_ensemble=3,
    temperature=0.55,
    msg_history=None,
    return_msg_history=False,
):
    review: dict[str, Any] | None = None
    history = msg_history
    for _ in range(max(1, min(num_reflections, 2))):
        answer, history = get_response_from_llm(
            f"[[task:review_paper]] Review this paper:\n{text[:2000]}",
            client,
            model,
            "You are a careful reviewer.",
            temperature,
            history,
        )
        review = extract_json_between_markers(answer) or review
    if return_msg_history:
        return review, history
    return review


def load_paper(pdf_path, num_pages=None, min_size=100):
    with open(pdf_path, "rb") as handle:
        return handle.read().decode("utf-8", errors="replace")
