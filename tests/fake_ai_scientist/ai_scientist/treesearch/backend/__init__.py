"""One entry point for every LLM call of the tree search (as the real backend)."""

from __future__ import annotations

from typing import Any

from . import backend_openai
from .utils import FunctionSpec, PromptType, compile_prompt_to_md


def query(
    system_message: PromptType | None,
    user_message: PromptType | None,
    model: str,
    temperature: float | None = None,
    max_tokens: int | None = None,
    func_spec: FunctionSpec | None = None,
    **model_kwargs: Any,
) -> Any:
    output, _, _, _, _ = backend_openai.query(
        system_message=compile_prompt_to_md(system_message) if system_message else None,
        user_message=compile_prompt_to_md(user_message) if user_message else None,
        func_spec=func_spec,
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        **model_kwargs,
    )
    return output
