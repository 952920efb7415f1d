"""Prompts and completions in the GenAI semantic conventions' message format.

With OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT on, a ``chat`` span carries
``gen_ai.input.messages``, ``gen_ai.output.messages`` and ``gen_ai.system_instructions``
as the conventions (and ``opentelemetry-instrumentation-openai-v2``) write them: JSON
arrays of ``{"role": ..., "parts": [{"type": "text", "content": ...}, ...]}`` messages,
tool calls as ``tool_call`` / ``tool_call_response`` parts, output messages with their
``finish_reason``. Backends that read those conventions (Phoenix, MLflow) show them as
a conversation.

A value never exceeds its bound and always stays valid JSON: long texts are cut with a
marker, and when even short texts do not fit, whole trailing messages are left out and
counted (``ai.llm.*_messages.omitted``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..model.coerce import truncate
from ..redaction import Redactor, default_redactor

# Loki and the UIs cope with 16 KiB values; a prompt of AI-Scientist is often longer.
MAX_JSON = 16384
# the shortest a text part is cut to before whole messages are left out
_MIN_TEXT = 64
_ANTHROPIC_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_call",
}
_OPENAI_FINISH = {"tool_calls": "tool_call", "function_call": "tool_call"}


def _dump(value: Any) -> Any:
    """A pydantic model (the SDKs' types), a mapping or anything else, as plain data."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(exclude_none=True)
        except Exception:  # noqa: BLE001 - an object that only looks like a model
            return str(value)
    return value


def _get(value: Any, name: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


def _arguments(raw: Any) -> Any:
    """Tool-call arguments: parsed when they are a JSON string, as the conventions show them."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return _dump(raw)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(_dump(value), default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _part(block: Any) -> dict[str, Any]:
    """One content block of OpenAI or Anthropic as a message part."""
    block = _dump(block)
    if isinstance(block, str):
        return {"type": "text", "content": block}
    if not isinstance(block, Mapping):
        return {"type": "text", "content": str(block)}
    kind = str(block.get("type") or "text")
    if kind in ("text", "input_text", "output_text"):
        return {"type": "text", "content": _text(block.get("text", ""))}
    if kind == "thinking":
        return {"type": "reasoning", "content": _text(block.get("thinking", ""))}
    if kind == "tool_use":  # Anthropic's tool call
        return {
            "type": "tool_call",
            "id": block.get("id"),
            "name": str(block.get("name") or ""),
            "arguments": _dump(block.get("input")),
        }
    if kind == "tool_result":
        return {
            "type": "tool_call_response",
            "id": block.get("tool_use_id"),
            "response": _content_text(block.get("content")),
        }
    if kind in ("image_url", "image"):
        source = block.get("image_url") or block.get("source") or {}
        uri = _get(source, "url") if isinstance(source, Mapping) else source
        return {"type": "uri", "modality": "image", "uri": _text(uri or "")}
    return {"type": kind, "content": _text({k: v for k, v in block.items() if k != "type"})}


def _content_text(content: Any) -> str:
    if isinstance(content, str) or content is None:
        return content or ""
    if isinstance(content, (list, tuple)):
        texts = [_get(_dump(b), "text") for b in content]
        if all(isinstance(t, str) for t in texts):
            return "".join(texts)
    return _text(content)


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if isinstance(content, (list, tuple)):
        return [_part(block) for block in content]
    return [_part(content)]


def _tool_calls(calls: Any) -> list[dict[str, Any]]:
    parts = []
    for call in calls or ():
        call = _dump(call)
        function = _get(call, "function") or {}
        parts.append(
            {
                "type": "tool_call",
                "id": _get(call, "id"),
                "name": str(_get(function, "name") or ""),
                "arguments": _arguments(_get(function, "arguments")),
            }
        )
    return parts


def _message(message: Any) -> dict[str, Any]:
    message = _dump(message)
    if not isinstance(message, Mapping):
        return {"role": "user", "parts": _parts(message)}
    role = str(message.get("role") or "user")
    if role in ("tool", "function"):
        return {
            "role": "tool",
            "parts": [
                {
                    "type": "tool_call_response",
                    "id": message.get("tool_call_id"),
                    "response": _content_text(message.get("content")),
                }
            ],
        }
    parts = _parts(message.get("content"))
    parts += _tool_calls(message.get("tool_calls"))
    if message.get("function_call"):
        call = message["function_call"]
        parts.append(
            {
                "type": "tool_call",
                "name": str(_get(call, "name") or ""),
                "arguments": _arguments(_get(call, "arguments")),
            }
        )
    return {"role": role, "parts": parts}


def input_messages(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's chat history (OpenAI's ``messages``, Anthropic's ``messages``)."""
    messages = kwargs.get("messages") or ()
    if isinstance(messages, (str, Mapping)):
        messages = [messages]
    return [_message(m) for m in messages]


def system_instructions(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Instructions given apart from the history (Anthropic's ``system``)."""
    return _parts(kwargs.get("system")) if kwargs.get("system") else []


def output_messages(api: str, response: Any) -> list[dict[str, Any]]:
    """The response's messages, each with its ``finish_reason``."""
    if api == "openai":
        result = []
        for choice in getattr(response, "choices", None) or ():
            message = _message(getattr(choice, "message", None) or {"role": "assistant", "content": ""})
            message["role"] = message.get("role") or "assistant"
            reason = str(getattr(choice, "finish_reason", None) or "stop")
            message["finish_reason"] = _OPENAI_FINISH.get(reason, reason)
            result.append(message)
        return result
    reason = str(getattr(response, "stop_reason", None) or "stop")
    return [
        {
            "role": "assistant",
            "parts": _parts(list(getattr(response, "content", None) or ())),
            "finish_reason": _ANTHROPIC_FINISH.get(reason, reason),
        }
    ]


# --- bounded, valid JSON -------------------------------------------------------------------
def _encode(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))


def _cut_strings(value: Any, limit: int) -> Any:
    """Every long string in ``value`` (texts, arguments, responses) cut to ``limit``."""
    if isinstance(value, str):
        return truncate(value, limit)
    if isinstance(value, Mapping):
        return {
            k: _cut_strings(v, limit) if k not in ("type", "role", "id", "name", "finish_reason") else v
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_cut_strings(v, limit) for v in value]
    return value


def _redact(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, Mapping):
        return {k: _redact(v, redactor) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, redactor) for v in value]
    return value


def bounded_json(messages: list[Any], limit: int = MAX_JSON) -> tuple[str, int]:
    """(``messages`` as JSON of at most ``limit`` characters, secrets redacted, how many
    trailing messages were left out). Texts are cut with a marker first; whole messages
    go only when even texts of ``_MIN_TEXT`` characters do not fit.

    Secrets are redacted here, in the texts, not only by the exporters in the JSON text:
    a pattern run over JSON could swallow an escape and leave the value invalid. Only the
    bounded result is searched, so this costs little on the caller's thread."""
    redactor = default_redactor()
    budget = limit
    while True:
        text, omitted = _bounded(messages, budget)
        if not redactor.might_contain_secret(text):
            return text, omitted
        redacted = _encode(_redact(json.loads(text), redactor))
        if len(redacted) <= limit or budget <= _MIN_TEXT:
            return (redacted, omitted) if len(redacted) <= limit else ("[]", len(messages))
        budget -= len(redacted) - limit  # [REDACTED] is longer than a short secret


def _bounded(messages: list[Any], limit: int) -> tuple[str, int]:
    text = _encode(messages)
    if len(text) <= limit:
        return text, 0
    # how many leading messages fit with their texts at the shortest cut ("[" + "," + "]")
    size, kept = 1, 0
    for message in messages:
        size += len(_encode(_cut_strings(message, _MIN_TEXT))) + 1
        if size > limit:
            break
        kept += 1
    omitted = len(messages) - kept
    if not kept:
        return "[]", omitted
    head = messages[:kept]
    low, high = _MIN_TEXT, limit
    best = _encode(_cut_strings(head, low))
    while low < high:  # the longest cut that still fits
        middle = (low + high + 1) // 2
        candidate = _encode(_cut_strings(head, middle))
        if len(candidate) <= limit:
            best, low = candidate, middle
        else:
            high = middle - 1
    return best, omitted
