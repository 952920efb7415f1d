"""An OpenAI-compatible chat-completions server on 127.0.0.1 for the fake AI-Scientist.

It answers ``POST /v1/chat/completions`` (and Anthropic's ``POST /v1/messages``) with
token usage, deciding what to say from a ``[[task:NAME]]`` marker the fake's prompts
carry: generated experiment code (sometimes buggy), reviews, metric parsing, best-node
selection, stage checks, paper text, a review. Seeded, so a run is reproducible in
outline (the pool's scheduling still varies).
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_TASK = re.compile(r"\[\[task:([a-z_]+)\]\]")

EXPERIMENT = """import json, os, random
random.seed({seed})
os.makedirs("working", exist_ok=True)
accuracy = round(0.55 + random.random() * 0.4, 4)
{bug}json.dump({{"validation accuracy": accuracy}}, open("working/experiment_data.json", "w"))
print("epoch 1: loss 0.9")
print("validation accuracy:", accuracy)
"""
METRICS = """import json, os
data = json.load(open(os.path.join("working", "experiment_data.json")))
for name, value in data.items():
    print(f"{name}: {value}")
"""
PLOT = """import os
os.makedirs("working", exist_ok=True)
with open(os.path.join("working", "{name}.png"), "wb") as f:
    f.write(b"\\x89PNG\\r\\n\\x1a\\n" + b"0" * 64)
print("saved {name}.png")
"""


class Brain:
    """Decides the answers; one per server, thread-safe."""

    def __init__(self, seed: int = 7, bug_rate: float = 0.3) -> None:
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.bug_rate = bug_rate
        self.calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self._names = 0

    def _rand(self) -> float:
        with self._lock:
            return self._random.random()

    def _name(self, prefix: str) -> str:
        with self._lock:
            self._names += 1
            return f"{prefix}_{self._names}"

    def answer(self, prompt: str) -> tuple[str | None, dict[str, Any] | None]:
        """(text, tool call arguments) for a prompt."""
        match = _TASK.search(prompt)
        task = match.group(1) if match else "chat"
        if task == "code":
            bug = (
                "raise ValueError('simulated bug in generated code')\n"
                if self._rand() < self.bug_rate
                else ""
            )
            seed = int(self._rand() * 1e6)
            return (
                f"Plan: train a small model and report validation accuracy.\n\n```python\n{EXPERIMENT.format(seed=seed, bug=bug)}```\n",
                None,
            )
        if task == "metrics_code":
            return f"Plan: load the saved data and print the metrics.\n\n```python\n{METRICS}```\n", None
        if task == "plot_code":
            return f"Plan: plot the curves.\n\n```python\n{PLOT.format(name=self._name('plot'))}```\n", None
        if task == "review":
            buggy = "Traceback" in prompt or "Error" in prompt.split("Execution output", 1)[-1]
            return None, {
                "is_bug": buggy,
                "summary": "The code raised an exception." if buggy else "Runs and reports accuracy.",
            }
        if task == "metric_parse":
            found = re.findall(r"validation accuracy: ([0-9.]+)", prompt)
            if not found:
                return None, {"valid_metrics_received": False, "metric_names": []}
            value = float(found[-1])
            return None, {
                "valid_metrics_received": True,
                "metric_names": [
                    {
                        "metric_name": "validation accuracy",
                        "lower_is_better": False,
                        "data": [{"dataset_name": "synthetic", "final_value": value, "best_value": value}],
                    }
                ],
            }
        if task == "select_best":
            candidates = re.findall(r"ID: ([0-9a-f]+)\s+Metric: (?:[^\n]*?final=)?([0-9]+\.[0-9]+)", prompt)
            if not candidates:
                return None, {"selected_id": "", "reasoning": "no candidate"}
            best = max(candidates, key=lambda c: float(c[1]))
            return None, {"selected_id": best[0], "reasoning": f"highest validation accuracy {best[1]}"}
        if task == "stage_check":
            good = int((re.findall(r"Good nodes: (\d+)", prompt) or ["0"])[-1])
            first = "Sub-stage number: 1" in prompt
            complete = first and good >= 2
            return None, {
                "is_complete": complete,
                "reasoning": f"{good} working implementations",
                "missing_criteria": [] if complete else ["more stable results"],
            }
        if task == "substage_goal":
            return None, {"goals": "Tune the learning rate further.", "sub_stage_name": "refinement"}
        if task == "idea":
            return f"Name: {self._name('idea')}\nDescription: vary one component and compare.", None
        if task == "review_paper":
            review = {
                "Summary": "A small study of simulated models.",
                "Originality": 2,
                "Quality": 3,
                "Clarity": 3,
                "Significance": 2,
                "Soundness": 3,
                "Presentation": 3,
                "Contribution": 2,
                "Overall": 5,
                "Confidence": 4,
                "Decision": "Reject",
            }
            return f"THOUGHT: fine.\n\nREVIEW JSON:\n```json\n{json.dumps(review)}\n```\n", None
        return "A short answer: the experiment is progressing as planned.", None


def _prompt_of(body: dict[str, Any]) -> str:
    parts = [str(body.get("system") or "")]
    for message in body.get("messages") or ():
        content = message.get("content")
        parts.append(content if isinstance(content, str) else json.dumps(content))
    return "\n".join(parts)


class _Handler(BaseHTTPRequestHandler):
    server_version = "llm-stub/1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        brain: Brain = self.server.brain  # type: ignore[attr-defined]
        prompt = _prompt_of(body)
        latency = self.server.latency  # type: ignore[attr-defined]
        if latency > 0:
            time.sleep(latency)  # a real model's time to answer
        text, arguments = brain.answer(prompt)
        model = str(body.get("model") or "stub-model")
        input_tokens = max(1, len(prompt) // 4)
        output_tokens = max(1, len(text or json.dumps(arguments)) // 4)
        with brain._lock:
            brain.calls += 1
            brain.input_tokens += input_tokens
            brain.output_tokens += output_tokens
        created = int(time.time())
        if self.path.rstrip("/").endswith("/messages"):
            reply: dict[str, Any] = {
                "id": f"msg_{created}_{brain.calls}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text or json.dumps(arguments)}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            }
        else:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            finish = "stop"
            if arguments is not None:
                tools = body.get("tools") or [{"function": {"name": "respond"}}]
                message["tool_calls"] = [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {
                            "name": tools[0]["function"]["name"],
                            "arguments": json.dumps(arguments),
                        },
                    }
                ]
                finish = "tool_calls"
            reply = {
                "id": f"chatcmpl-{created}-{brain.calls}",
                "object": "chat.completion",
                "created": created,
                "model": f"{model}-2025-01-01",
                "system_fingerprint": "fp_stub",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {
                    "prompt_tokens": input_tokens,
                    "completion_tokens": output_tokens,
                    "total_tokens": input_tokens + output_tokens,
                },
            }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class LLMStub:
    """``with LLMStub() as stub: stub.base_url``: the server runs on a daemon thread."""

    def __init__(self, seed: int = 7, bug_rate: float = 0.3, latency: float = 0.0) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.latency = latency  # type: ignore[attr-defined]  # seconds per answer
        self.server.brain = Brain(seed, bug_rate)  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self.server.serve_forever, name="llm-stub", daemon=True)

    @property
    def brain(self) -> Brain:
        return self.server.brain  # type: ignore[attr-defined, no-any-return]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> LLMStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> LLMStub:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
