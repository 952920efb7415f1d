"""Prompt helpers and function specs (as the real backend/utils.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PromptType = str | dict | list


def compile_prompt_to_md(prompt: PromptType, _header_depth: int = 1) -> str:
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt.strip() + "\n"
    if isinstance(prompt, list):
        return "\n".join(f"- {str(item).strip()}" for item in prompt) + "\n"
    out = []
    for key, value in prompt.items():
        out.append(f"{'#' * _header_depth} {key}\n")
        out.append(compile_prompt_to_md(value, _header_depth + 1))
    return "\n".join(out)


@dataclass
class FunctionSpec:
    name: str
    json_schema: dict[str, Any]
    description: str

    @property
    def as_openai_tool_dict(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.json_schema},
        }

    @property
    def openai_tool_choice_dict(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name}}
