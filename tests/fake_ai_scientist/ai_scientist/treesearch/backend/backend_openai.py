"""OpenAI chat completions; a client is created for every call."""

from __future__ import annotations

import json
import time
from typing import Any

import openai

from .utils import FunctionSpec


def query(
    system_message: str | None,
    user_message: str | None,
    func_spec: FunctionSpec | None = None,
    **model_kwargs: Any,
) -> tuple[Any, float, int, int, dict[str, Any]]:
    client = openai.OpenAI(max_retries=0)
    kwargs = {k: v for k, v in model_kwargs.items() if v is not None}
    messages = []
    if system_message:
        messages.append({"role": "system", "content": system_message})
    if user_message:
        messages.append({"role": "user", "content": user_message})
    if func_spec is not None:
        kwargs["tools"] = [func_spec.as_openai_tool_dict]
        kwargs["tool_choice"] = func_spec.openai_tool_choice_dict
    started = time.time()
    completion = client.chat.completions.create(messages=messages, **kwargs)
    elapsed = time.time() - started
    choice = completion.choices[0]
    if func_spec is None:
        output: Any = choice.message.content
    else:
        output = json.loads(choice.message.tool_calls[0].function.arguments)
    info = {"model": completion.model, "created": completion.created}
    return output, elapsed, completion.usage.prompt_tokens, completion.usage.completion_tokens, info
