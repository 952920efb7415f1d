"""The paper (as ai_scientist/perform_writeup.py): a few LLM calls, then a PDF."""

from __future__ import annotations

import os
import os.path as osp

from .llm import create_client, get_response_from_llm


def perform_writeup(
    base_folder,
    no_writing=False,
    num_cite_rounds=20,
    small_model="gpt-4o-2024-05-13",
    big_model="o1-2024-12-17",
    n_writeup_reflections=3,
    page_limit=8,
    citations_text=None,
):
    client, model = create_client(big_model)
    text, history = get_response_from_llm(
        "[[task:writeup]] Write the paper in LaTeX.", client, model, "You are an ambitious AI researcher."
    )
    for _ in range(min(n_writeup_reflections, 2)):
        client, model = create_client(big_model)
        text, history = get_response_from_llm(
            "[[task:writeup]] Reflect and improve the paper.",
            client,
            model,
            "You are an ambitious AI researcher.",
            msg_history=history,
        )
    if no_writing:
        return True
    os.makedirs(base_folder, exist_ok=True)
    pdf = osp.join(base_folder, f"{osp.basename(osp.normpath(base_folder))}.pdf")
    with open(pdf, "wb") as handle:
        handle.write(b"%PDF-1.4\n% simulated paper\n" + text.encode()[:2000] + b"\n%%EOF\n")
    return True
