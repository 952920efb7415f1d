"""Clients and calls for the writeup and the review (as ai_scientist/llm.py)."""

from __future__ import annotations

import json
import re
from typing import Any


def create_client(model: str) -> tuple[Any, str]:
    if model.startswith("claude-"):
        import anthropic

        return anthropic.Anthropic(), model
    import openai

    return openai.OpenAI(max_retries=0), model


def get_response_from_llm(
    prompt: str,
    client: Any,
    model: str,
    system_message: str,
    temperature: float = 0.7,
    msg_history: list[dict[str, Any]] | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    history = list(msg_history or []) + [{"role": "user", "content": prompt}]
    if model.startswith("claude-"):
        response = client.messages.create(
            model=model, max_tokens=1024, system=system_message, messages=history
        )
        content = response.content[0].text
    else:
        response = client.chat.completions.create(
            model=model,
            temperature=temperature,
            messages=[{"role": "system", "content": system_message}, *history],
        )
        content = response.choices[0].message.content
    return content, history + [{"role": "assistant", "content": content}]


def extract_json_between_markers(text: str) -> dict[str, Any] | None:
    match = re.search(r"```json\s*(.*?)```", text, re.DOTALL)
    if match is None:
        return None
    try:
        return json.loads(match.group(1))  # type: ignore[no-any-return]
    except ValueError:
        return None
