"""The short-format paper (as ai_scientist/perform_icbinb_writeup.py)."""

from __future__ import annotations

from .perform_writeup import perform_writeup as _writeup


def perform_writeup(
    base_folder,
    citations_text=None,
    no_writing=False,
    num_cite_rounds=20,
    small_model="gpt-4o-2024-05-13",
    big_model="o1-2024-12-17",
    n_writeup_reflections=3,
    page_limit=4,
):
    return _writeup(
        base_folder,
        no_writing=no_writing,
        num_cite_rounds=num_cite_rounds,
        small_model=small_model,
        big_model=big_model,
        n_writeup_reflections=n_writeup_reflections,
        page_limit=page_limit,
        citations_text=citations_text,
    )
