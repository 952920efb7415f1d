#!/usr/bin/env python3
"""Run the REAL pod worker of agencyenterprise/AI-Scientist-v2 offline on otel_ai's drop-ins.

Usage (with a Python environment that has the fork's requirements and otel_ai)::

    python tools/try_pod_worker.py /path/to/clone/of/AI-Scientist-v2 [--timeout 1500] [--keep]

What it does, all on 127.0.0.1 and in a temporary copy of the clone (the clone is not
touched; nothing fetched is kept):

- the pod worker's two emitters migrated as the README shows: ``event_emitter.py``
  replaced by a module exporting ``otel_ai.EventEmitter`` as ``CloudEventEmitter`` (and
  ``otel_ai.BatchEventEmitter`` as ``EventEmitter``), and the one line
  ``from event_emitter import EventEmitter`` put before ``emitter = EventEmitter(...)``;
- MongoDB: a ``pymongo`` stand-in (in memory, one queued experiment and its hypothesis;
  it stops the worker's polling loop once that experiment is done);
- the control plane (artifact presign and upload) and an OpenAI-compatible LLM: one small
  HTTP server. The LLM answers every function call from the tool's JSON schema (no bug,
  stage complete, a metric...), a prompt asking for ``<JSON>`` or ``'KEYWORD: ...'`` lines
  with those, and every other prompt with a plan and a short training script that saves
  ``experiment_data.npy`` and a plot;
- ``torch``, only when it is not installed: a stand-in with what the fork's seed-node
  prefix calls (``manual_seed``, ``cuda.is_available``);
- ``bfts_config.yaml``: a small tree search (2 workers, 1-2 nodes per stage);
- telemetry: the embedded default, OTLP/JSON files in the work directory.

Then it reads the files back and prints the checks of docs/pod-worker.md: one trace with
stage and node spans, the run's outcome and error, no exception from otel_ai reaching the
pod worker, a strictly increasing ``ai.event.seq`` per process. Exit code 0 when every
check passes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RUN_ID = "try-pod-run-1"
HYPOTHESIS_ID = "try-pod-hypothesis-1"

EVENT_EMITTER_SHIM = '''"""event_emitter, migrated to otel_ai (tools/try_pod_worker.py)."""
from otel_ai import BatchEventEmitter as EventEmitter  # noqa: F401
from otel_ai import EventEmitter as CloudEventEmitter  # noqa: F401
'''

# --- a pymongo stand-in: in memory, shared by every MongoClient of the process -------------
FAKE_PYMONGO = r'''"""pymongo stand-in for tools/try_pod_worker.py: in memory, seeded from and dumped to
the JSON file named by TRY_POD_MONGO_STATE."""
import atexit
import copy
import json
import os
import threading

_lock = threading.RLock()
_state = None


class ReturnDocument:
    BEFORE = False
    AFTER = True


def _load():
    global _state
    if _state is None:
        path = os.environ["TRY_POD_MONGO_STATE"]
        with open(path) as f:
            _state = json.load(f)
        atexit.register(_dump)
    return _state


def _dump():
    with _lock:
        with open(os.environ["TRY_POD_MONGO_STATE"] + ".final", "w") as f:
            json.dump(_state, f, default=str, indent=1)


def _get(doc, dotted):
    for part in dotted.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None, False
        doc = doc[part]
    return doc, True


def _match(doc, query):
    for key, want in (query or {}).items():
        if key == "$or":
            if not any(_match(doc, q) for q in want):
                return False
            continue
        value, present = _get(doc, key)
        if isinstance(want, dict) and any(k.startswith("$") for k in want):
            if "$exists" in want and present != bool(want["$exists"]):
                return False
            if "$regex" in want and not (isinstance(value, str) and __import__("re").search(want["$regex"], value)):
                return False
            continue
        if value != want:
            return False
    return True


def _apply(doc, update):
    for op, fields in update.items():
        for key, value in fields.items():
            parts = key.split(".")
            target = doc
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            if op == "$set":
                target[parts[-1]] = value
            elif op == "$unset":
                target.pop(parts[-1], None)
            elif op == "$inc":
                target[parts[-1]] = target.get(parts[-1], 0) + value


class Collection:
    def __init__(self, db, name):
        self._docs = _load().setdefault(db, {}).setdefault(name, [])
        self.name = name

    def find_one(self, query=None, projection=None, **kwargs):
        with _lock:
            for doc in self._docs:
                if _match(doc, query):
                    return copy.deepcopy(doc)
        return None

    def find(self, query=None, projection=None, **kwargs):
        with _lock:
            return [copy.deepcopy(d) for d in self._docs if _match(d, query)]

    def count_documents(self, query=None, **kwargs):
        with _lock:
            return sum(1 for d in self._docs if _match(d, query))

    def find_one_and_update(self, query, update, sort=None, return_document=False, **kwargs):
        with _lock:
            for doc in self._docs:
                if _match(doc, query):
                    before = copy.deepcopy(doc)
                    _apply(doc, update)
                    return copy.deepcopy(doc) if return_document else before
        if self.name == "runs" and "pendingWriteupRetry" in (query or {}):
            # the queued experiment is done and no retry is asked for: end the worker's loop
            raise KeyboardInterrupt("try_pod_worker: the queued experiment was processed")
        return None

    def update_one(self, query, update, upsert=False, **kwargs):
        with _lock:
            for doc in self._docs:
                if _match(doc, query):
                    _apply(doc, update)
                    return
            if upsert:
                doc = {k: v for k, v in query.items() if not k.startswith("$")}
                _apply(doc, update)
                self._docs.append(doc)

    def insert_one(self, doc, **kwargs):
        with _lock:
            self._docs.append(copy.deepcopy(doc))


class Database:
    def __init__(self, name):
        self.name = name

    def __getitem__(self, name):
        return Collection(self.name, name)

    __getattr__ = __getitem__

    def command(self, *args, **kwargs):
        return {"ok": 1}


class MongoClient:
    def __init__(self, *args, **kwargs):
        _load()
        self.admin = Database("admin")

    def __getitem__(self, name):
        return Database(name)

    def close(self):
        pass
'''

# torch, only where it is not installed: the fork prefixes every seed node's script with
# ``import torch; torch.manual_seed(...)``; the LLM stand-in's scripts need nothing else of it
FAKE_TORCH = '''"""torch stand-in for tools/try_pod_worker.py (no GPU, no tensors)."""
import random as _random


def manual_seed(seed):
    _random.seed(seed)


class cuda:
    @staticmethod
    def is_available():
        return False

    @staticmethod
    def manual_seed(seed):
        pass

    @staticmethod
    def device_count():
        return 0
'''

# --- the small tree search ---------------------------------------------------------------
CONFIG_EDITS = {
    ("agent", "num_workers"): 2,
    ("agent", "steps"): 1,
    ("agent", "stages", "stage1_max_iters"): 2,
    ("agent", "stages", "stage2_max_iters"): 1,
    ("agent", "stages", "stage3_max_iters"): 1,
    ("agent", "stages", "stage4_max_iters"): 1,
    ("agent", "multi_seed_eval", "num_seeds"): 1,
    ("agent", "search", "num_drafts"): 1,
    ("exec", "timeout"): 120,
}
MODEL = "gpt-4o-2024-11-20"

TRAINING_SCRIPT = """import os
import numpy as np
working_dir = os.path.join(os.getcwd(), "working")
os.makedirs(working_dir, exist_ok=True)
rng = np.random.default_rng(0)
losses = [float(1.0 / (epoch + 1) + 0.01 * rng.random()) for epoch in range(5)]
accuracy = float(0.6 + 0.3 * rng.random())
for epoch, loss in enumerate(losses):
    print(f"Epoch {epoch}: validation_loss = {loss:.4f}")
print(f"validation accuracy: {accuracy:.4f}")
experiment_data = {"synthetic": {"metrics": {"val": [accuracy]}, "losses": {"val": losses}}}
np.save(os.path.join(working_dir, "experiment_data.npy"), experiment_data, allow_pickle=True)
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.plot(losses)
    plt.title("synthetic: validation loss")
    plt.savefig(os.path.join(working_dir, "synthetic_val_loss.png"))
    plt.close()
except Exception as exc:
    print("no plot:", exc)
"""


def _from_schema(schema: dict[str, Any], name: str, prompt: str) -> Any:
    """A plausible value for a JSON schema: no bug, complete, metrics present..."""
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {key: _from_schema(sub, key, prompt) for key, sub in schema.get("properties", {}).items()}
    if kind == "boolean":
        return name != "is_bug"
    if kind in ("number", "integer"):
        return (
            1
            if name == "max_iterations"
            else (0.85 if name == "best_value" else (0.8 if kind == "number" else 1))
        )
    if kind == "array":
        items = schema.get("items", {"type": "string"})
        if name == "selected_plots":
            return sorted(set(re.findall(r"[\w/.-]+\.png", prompt)))[:10]
        return [_from_schema(items, name, prompt)]
    if name == "selected_id":
        ids = re.findall(r"\b[0-9a-f]{32}\b", prompt)
        return ids[0] if ids else ""
    if name in ("metric_name",):
        return "validation accuracy"
    if name == "dataset_name":
        return "synthetic"
    if name in ("sub_stage_name", "name"):
        return "next"
    return f"{name}: looks fine"


def _text(messages: Any) -> str:
    parts = []
    for message in messages or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [p.get("text", "") for p in content if isinstance(p, dict)]
    return "\n".join(parts)


def _plain_answer(prompt: str) -> str:
    """A JSON block where the prompt asks for <JSON>, 'KEYWORD: ...' lines where it asks
    for those, else a plan and a training script."""
    if "<JSON>" in prompt or "```json" in prompt:
        fields = dict.fromkeys(re.findall(r'^\s*-\s*"([A-Za-z_ ]+)"', prompt, re.MULTILINE)) or {
            "summary": None
        }
        answer = {name: f"{name}: a short synthetic study" for name in fields}
        return f"THOUGHT: fine.\n\nREVIEW JSON:\n```json\n{json.dumps(answer)}\n```\n"
    keywords = list(dict.fromkeys(re.findall(r"'([A-Z][A-Z_ ]*[A-Z]):", prompt)))
    if keywords:
        return "\n".join(f"{keyword}: synthetic" for keyword in keywords)
    return f"A small, fast experiment on synthetic data.\n\n```python\n{TRAINING_SCRIPT}```\n"


def llm_answer(request: dict[str, Any]) -> dict[str, Any]:
    prompt = _text(request.get("messages"))
    tools = request.get("tools") or []
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if tools:
        function = tools[0].get("function", tools[0])
        arguments = _from_schema(function.get("parameters", {}), "", prompt)
        message["tool_calls"] = [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": function["name"], "arguments": json.dumps(arguments)},
            }
        ]
        finish = "tool_calls"
    else:
        message["content"] = _plain_answer(prompt)
        finish = "stop"
    return {
        "id": "chatcmpl-try",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", MODEL),
        "system_fingerprint": "try-pod",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": len(prompt) // 4,
            "completion_tokens": 50,
            "total_tokens": len(prompt) // 4 + 50,
            "completion_tokens_details": {"reasoning_tokens": 0},
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }


class StandIns(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, llm_latency: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.counts: dict[str, int] = defaultdict(int)
        self.llm_latency = llm_latency  # seconds per LLM answer (a real API takes seconds)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: StandIns

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        path = self.path.split("?")[0]
        if path.endswith("/chat/completions"):
            self.server.counts["llm"] += 1
            if self.server.llm_latency > 0:
                time.sleep(self.server.llm_latency)
            self._reply(200, llm_answer(json.loads(body or b"{}")))
        elif path.endswith("/artifacts/presign"):
            self.server.counts["presign"] += 1
            name = json.loads(body or b"{}").get("filename", "artifact")
            self._reply(200, {"url": f"{self.server.url}/upload/{name}"})
        elif path.startswith("/api/ingest/"):
            self.server.counts["ingest"] += 1  # the seed's emitters would POST here; the drop-ins must not
            self._reply(200, {"ok": True})
        else:
            self.server.counts["unknown"] += 1
            self._reply(404, {"error": "not found"})

    def do_PUT(self) -> None:  # noqa: N802
        self._body()
        self.server.counts["upload"] += 1
        self._reply(200, {})


# --- preparing the copy --------------------------------------------------------------------
def small_config(path: Path, edits: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    """The clone's ``bfts_config.yaml`` with ``edits`` (key path -> value) applied and
    every model set to the stand-in's."""
    import yaml

    config: dict[str, Any] = yaml.safe_load(path.read_text())
    for keys, value in edits.items():
        target = config
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value
    for section in ("code", "feedback", "vlm_feedback"):
        config["agent"].setdefault(section, {})["model"] = MODEL
    config["report"]["model"] = MODEL
    return config


def prepare(clone: Path, work: Path) -> tuple[Path, Path, str]:
    repo = work / "repo"
    shutil.copytree(
        clone,
        repo,
        ignore=shutil.ignore_patterns(".git", "orchestrator", "node_modules", "experiments", "logs"),
    )
    commit = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    # the README's migration, second line (the first is the event_emitter module below)
    worker = repo / "pod_worker.py"
    source = worker.read_text()
    line = "emitter = EventEmitter(CONTROL_PLANE_URL, POD_ID)\n"
    if source.count(line) != 1:
        raise SystemExit(
            f"pod_worker.py has no single line {line!r}: this fork differs from the one documented"
        )
    worker.write_text(
        source.replace(line, "from event_emitter import EventEmitter  # otel_ai.BatchEventEmitter\n" + line)
    )
    (repo / "event_emitter.py").write_text(EVENT_EMITTER_SHIM)
    standins = work / "stand_ins"
    (standins / "pymongo").mkdir(parents=True)
    (standins / "pymongo" / "__init__.py").write_text(FAKE_PYMONGO)
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        (standins / "torch").mkdir()
        (standins / "torch" / "__init__.py").write_text(FAKE_TORCH)
    import yaml

    config_path = repo / "bfts_config.yaml"
    config = small_config(config_path, CONFIG_EDITS)
    config["writeup"] = {"big_model": MODEL, "small_model": MODEL, "plot_model": MODEL, "page_limit": 4}
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    state = work / "mongo.json"
    idea = {
        "Name": "tiny_synthetic",
        "Title": "A tiny synthetic study",
        "Short Hypothesis": "Smaller learning rates help.",
        "Abstract": "We train a tiny model on synthetic data.",
        "Experiments": ["Train", "Evaluate"],
        "Risk Factors and Limitations": ["Synthetic data only"],
    }
    state.write_text(
        json.dumps(
            {
                "ai-scientist": {
                    "runs": [
                        {
                            "_id": RUN_ID,
                            "hypothesisId": HYPOTHESIS_ID,
                            "status": "QUEUED",
                            "claimedBy": None,
                            "createdAt": "2026-01-01T00:00:00Z",
                            "retryCount": 0,
                        }
                    ],
                    "hypotheses": [
                        {
                            "_id": HYPOTHESIS_ID,
                            "title": idea["Title"],
                            "idea": idea["Abstract"],
                            "ideaJson": idea,
                        }
                    ],
                    "ideation_requests": [],
                    "stages": [],
                    "paper_backups": [],
                    "artifacts": [],
                }
            }
        )
    )
    return repo, standins, commit


# --- the checks ----------------------------------------------------------------------------
def check(
    data_dir: Path, output: str, state: dict[str, Any], counts: dict[str, int]
) -> list[tuple[bool, str]]:
    from otel_ai import semconv
    from otel_ai.read import load_directory

    telemetry = load_directory(data_dir)
    spans, logs = telemetry.spans, telemetry.logs
    results: list[tuple[bool, str]] = []

    def note(ok: bool, text: str) -> None:
        results.append((bool(ok), text))

    runs = [s for s in spans if s.name == semconv.SPAN_RUN]
    note(len(runs) == 1, f"one ai.run span: {len(runs)}")
    if not runs:
        return results
    run = runs[0]
    traces = {s.trace_id for s in spans}
    note(traces == {run.trace_id}, f"one trace: {len(traces)} trace id(s) among {len(spans)} spans")
    by_id = {s.span_id: s for s in spans}
    orphans = [s.name for s in spans if s.parent_span_id and s.parent_span_id not in by_id]
    note(not orphans, f"no span whose parent is missing: {orphans[:5]}")
    stages = sorted(
        s.attributes.get(semconv.STAGE_NAME, "?")
        for s in spans
        if s.name.startswith(semconv.SPAN_STAGE + " ")
    )
    note(bool(stages), f"stage spans: {stages}")
    search_stages = [name for name in stages if name[:1].isdigit()]
    note(bool(search_stages), f"the tree search's own stage spans: {search_stages}")
    nodes = [s for s in spans if s.name.startswith(semconv.SPAN_NODE + " ")]
    main_pid = run.resource.get(semconv.PROCESS_PID)
    worker_nodes = [n for n in nodes if n.resource.get(semconv.PROCESS_PID) != main_pid]
    kinds = sorted({n.attributes.get(semconv.NODE_KIND, "?") for n in nodes})
    note(bool(nodes), f"node spans: {len(nodes)} ({len(worker_nodes)} made in pool workers), kinds {kinds}")
    outcome = run.attributes.get(semconv.RUN_OUTCOME)
    failed = [
        r
        for r in logs
        if r.event_name == semconv.RUN_FAILED and not r.attributes.get(semconv.EVENT_DUPLICATE)
    ]
    message = failed[0].attributes.get(semconv.EXCEPTION_MESSAGE) if failed else None
    run_doc = next((r for r in state.get("ai-scientist", {}).get("runs", []) if r.get("_id") == RUN_ID), {})
    status = run_doc.get("status")
    expected = {
        "COMPLETED": semconv.OUTCOME_COMPLETED,
        "FAILED": semconv.OUTCOME_FAILED,
        "CANCELED": semconv.OUTCOME_CANCELED,
    }
    note(
        outcome == expected.get(str(status)),
        f"run outcome {outcome!r}, the pod worker's own status {status!r} "
        f"(error {run_doc.get('errorMessage')!r})",
    )
    if outcome == semconv.OUTCOME_FAILED:
        note(
            bool(message),
            f"failure: stage {run.attributes.get(semconv.RUN_FAILED_STAGE)!r}, "
            f"{failed[0].attributes.get(semconv.ERROR_TYPE) if failed else None}: {message!r}",
        )
    leaks = [
        line
        for line in output.splitlines()
        if re.search(
            r"(AttributeError|TypeError).*(seq_counter|emitter|run_failed)|otel_ai: internal error", line
        )
    ]
    note(not leaks, f"no otel_ai error reached or was reported to the pod worker: {leaks[:3]}")
    by_pid: dict[Any, list[int]] = defaultdict(list)
    for record in logs:
        by_pid[record.resource.get(semconv.PROCESS_PID)].append(record.attributes.get(semconv.EVENT_SEQ))
    repeats = {pid: len(v) - len(set(v)) for pid, v in by_pid.items() if len(v) != len(set(v))}
    note(
        not repeats,
        f"ai.event.seq never repeats in a process ({len(by_pid)} processes, {len(logs)} records): {repeats}",
    )
    note(
        counts.get("ingest", 0) == 0,
        f"nothing POSTed to the control plane's ingest API: {counts.get('ingest', 0)}",
    )
    note(True, f"stand-ins: {dict(counts)}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clone", type=Path, help="a local clone of agencyenterprise/AI-Scientist-v2")
    parser.add_argument(
        "--timeout", type=float, default=1500.0, help="seconds before the pod worker is stopped"
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="work directory (default: a new temporary one)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)

    work = (args.work or Path(tempfile.mkdtemp(prefix="try-pod-worker-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    repo, standins, commit = prepare(args.clone.resolve(), work)
    print(f"fork commit {commit}; work directory {work}")
    server = StandIns()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "TRACEPARENT", "OPENAI_", "ANTHROPIC_", "S2_"))
    }
    env.update(
        PYTHONPATH=os.pathsep.join([str(standins), str(repo)]),
        TRY_POD_MONGO_STATE=str(work / "mongo.json"),
        MONGODB_URL="mongodb://127.0.0.1:1/fake",
        CONTROL_PLANE_URL=server.url,
        OPENAI_API_KEY="sk-try-pod-worker-offline",
        OPENAI_BASE_URL=f"{server.url}/v1",
        GIT_AUTO_PULL_ENABLED="false",
        RUNPOD_POD_ID="try-pod",
        OTEL_AI_DATA_DIR=str(work / "runs"),
        OTEL_SERVICE_NAME="pod-worker",
        MPLBACKEND="Agg",
    )
    log_path = work / "pod_worker.out"
    started = time.monotonic()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "pod_worker.py", "--mode", "experiment"],
            cwd=repo,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = process.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)  # the pod worker's own handler marks the run canceled
            try:
                code = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                code = process.wait()
            print(f"the pod worker did not finish within {args.timeout:.0f}s: stopped with SIGTERM")
    server.shutdown()
    output = log_path.read_text(errors="replace")
    print(f"pod worker exit code {code} after {time.monotonic() - started:.0f}s; output in {log_path}")
    final = work / "mongo.json.final"
    state = json.loads(final.read_text()) if final.exists() else {}
    results = check(work / "runs", output, state, server.counts)
    for ok, text in results:
        print(f"  [{'ok' if ok else 'FAIL'}] {text}")
    if not args.keep and all(ok for ok, _ in results):
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
