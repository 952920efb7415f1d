"""A small pod worker with the seed pod worker's shape, on otel_ai's drop-ins.

It makes every call the agencyenterprise fork's ``pod_worker.py`` makes, in the same
order and with the same argument shapes, with its two emitters migrated as the README
shows (``CloudEventEmitter`` -> ``otel_ai.EventEmitter``, its batching ``EventEmitter``
-> ``otel_ai.BatchEventEmitter``), both built at import as there (so spawned pool workers,
which re-import the main module, build them too):

- ``set_seq_counter(EVENT_SEQ)`` with the batching emitter's counter (behind ours), then
  ``EVENT_SEQ = event_emitter.seq_counter`` around each artifact upload and before the
  paper, as the fork does;
- ``run_started``, ``StageContext`` (``stage_started`` / ``stage_completed`` and the
  batched ``ai.run.stage_completed`` "backup"), ``log(run_id, message, level, source)``,
  a heartbeat thread, an experiment monitor thread (``ai.artifact.detected`` through the
  batching emitter, then an upload);
- the tree search in this process (the fake AI-Scientist of ``tests/fake_ai_scientist``,
  pool workers started by spawn as in the fork) with the fork's picklable
  ``event_callback`` (``functools.partial`` of a module-level handler that emits through
  the batching emitter and flushes after every event);
- then, by ``--outcome``: ``paper-failed`` (the writeup fails: the two-argument
  ``run_failed(run_id, "Paper generation failed")``), ``crash`` (an exception in stage 2:
  the five-argument ``run_failed``), ``completed`` (paper, review, ``run_completed``).

It prints one JSON line: the ``seq_counter`` values it read, and any exception that
reached it from a telemetry call (there must be none).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FAKE = HERE / "fake_ai_scientist"
sys.path.insert(0, str(FAKE))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(FAKE), os.environ.get("PYTHONPATH")) if p)

# the README's two-line migration of a pod worker
from otel_ai import BatchEventEmitter as EventEmitter  # noqa: E402
from otel_ai import EventEmitter as CloudEventEmitter  # noqa: E402

CONTROL_PLANE_URL = "http://control-plane.invalid"
POD_ID = "pod-program"
CURRENT_RUN_ID: str | None = None
CURRENT_STAGE: str | None = None
EVENT_SEQ = 0

event_emitter = CloudEventEmitter(CONTROL_PLANE_URL, POD_ID)
emitter = EventEmitter(CONTROL_PLANE_URL, POD_ID)

RESULT: dict[str, Any] = {"seq_reads": [], "errors": []}


def guarded(call: Any, *args: Any, **kwargs: Any) -> Any:
    """A telemetry call; an exception reaching the pod worker is noted (there must be none)."""
    try:
        return call(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - what we check for
        RESULT["errors"].append(f"{getattr(call, '__qualname__', call)}: {type(exc).__name__}: {exc}")
        return None


def emit_event(event_type: str, data: dict[str, Any]) -> None:
    if not CURRENT_RUN_ID:
        return
    guarded(emitter.emit, event_type, data, CURRENT_RUN_ID)


def _handle_experiment_event(
    run_id: str, emit_event_func: Any, emitter_obj: Any, db_obj: Any, event_type: str, data: dict
) -> None:
    data["run_id"] = run_id
    emit_event_func(event_type, data)
    guarded(emitter_obj.flush)


class StageContext:
    def __init__(self, stage_name: str, run_id: str) -> None:
        self.stage = stage_name
        self.run_id = run_id
        self.start_time = 0.0

    def __enter__(self) -> StageContext:
        global CURRENT_STAGE
        CURRENT_STAGE = self.stage
        self.start_time = time.time()
        guarded(event_emitter.stage_started, self.run_id, self.stage, f"description of {self.stage}")
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is not None:
            return False
        duration_s = time.time() - self.start_time
        guarded(event_emitter.stage_completed, self.run_id, self.stage, int(duration_s))
        emit_event(
            "ai.run.stage_completed",
            {"run_id": self.run_id, "stage": self.stage, "duration_s": int(duration_s)},
        )
        guarded(emitter.flush)
        return False


def upload_artifact(run_id: str, path: Path, kind: str) -> bool:
    global EVENT_SEQ
    data = path.read_bytes()
    guarded(event_emitter.set_seq_counter, EVENT_SEQ)  # the batching emitter's counter: behind ours
    ok = guarded(
        event_emitter.artifact_registered,
        run_id,
        f"runs/{run_id}/{path.name}",
        len(data),
        hashlib.sha256(data).hexdigest(),
        "image/png",
        kind,
    )
    EVENT_SEQ = guarded(lambda: event_emitter.seq_counter)
    RESULT["seq_reads"].append(EVENT_SEQ)
    guarded(
        event_emitter.log, run_id, f"Artifact uploaded: {path.name} ({len(data)} bytes)", "info", "upload"
    )
    return bool(ok)


def run_experiment_pipeline(run_id: str, outcome: str, workdir: Path, start_method: str) -> None:
    global CURRENT_RUN_ID, EVENT_SEQ
    CURRENT_RUN_ID = run_id
    EVENT_SEQ = 0
    guarded(event_emitter.set_seq_counter, EVENT_SEQ)
    monitor_stop = threading.Event()
    heartbeat_stop = threading.Event()
    try:
        guarded(event_emitter.run_started, run_id, POD_ID, "unknown", "unknown")
        idea_dir = workdir / "experiments" / f"idea_run_{run_id}"
        idea_dir.mkdir(parents=True, exist_ok=True)
        plot = idea_dir / "figures" / "loss.png"

        def monitor_loop() -> None:
            # the fork's ExperimentMonitor: a new plot is detected, then uploaded
            while not monitor_stop.is_set():
                if plot.exists():
                    emit_event(
                        "ai.artifact.detected",
                        {
                            "run_id": run_id,
                            "path": "figures/loss.png",
                            "type": "plot",
                            "size_bytes": plot.stat().st_size,
                        },
                    )
                    upload_artifact(run_id, plot, "plot")
                    return
                monitor_stop.wait(0.05)

        def heartbeat_loop() -> None:
            while not heartbeat_stop.is_set():
                guarded(event_emitter.run_heartbeat, run_id)
                guarded(emitter.flush)
                heartbeat_stop.wait(0.5)

        monitor = threading.Thread(target=monitor_loop, daemon=True)
        heartbeat = threading.Thread(target=heartbeat_loop, daemon=True)
        monitor.start()
        heartbeat.start()
        callback = partial(_handle_experiment_event, run_id, emit_event, emitter, None)

        with StageContext("Stage_1", run_id):
            guarded(
                event_emitter.log,
                run_id,
                "Starting preliminary investigation (BFTS experiments)",
                "info",
                "Stage_1",
            )
            from ai_scientist.treesearch.perform_experiments_bfts_with_agentmanager import (
                perform_experiments_bfts,
            )
            from ai_scientist.treesearch.utils.config import Config

            cfg = Config(
                workspace_dir=str(idea_dir / "workspaces" / "0-run"), log_dir=str(idea_dir / "logs" / "0-run")
            )
            cfg.agent.num_workers = 2
            cfg.agent.start_method = start_method
            for stage in range(1, 5):
                setattr(cfg.agent.stages, f"stage{stage}_max_iters", 2)
            result = perform_experiments_bfts(cfg, event_callback=callback)
            RESULT["search"] = {"stages": len(result["stages"]), "nodes": sum(result["nodes"].values())}
            guarded(event_emitter.log, run_id, "Stage_1 experiments completed", "info", "Stage_1")
            guarded(emitter.flush)

        with StageContext("Stage_2", run_id):
            plot.parent.mkdir(parents=True, exist_ok=True)
            plot.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 256)
            monitor.join(10)
            if outcome == "crash":
                raise RuntimeError("CUDA error: an illegal memory access was encountered")

        with StageContext("Stage_3", run_id):
            guarded(event_emitter.set_seq_counter, EVENT_SEQ)
            guarded(event_emitter.paper_started, run_id)
            EVENT_SEQ = guarded(lambda: event_emitter.seq_counter)
            RESULT["seq_reads"].append(EVENT_SEQ)
            if outcome == "paper-failed":
                guarded(
                    event_emitter.log,
                    run_id,
                    "Writeup generation failed - run will be marked as failed",
                    "error",
                    "Stage_3",
                )
                guarded(event_emitter.run_failed, run_id, "Paper generation failed")
                guarded(emitter.flush)
                return
            guarded(event_emitter.paper_generated, run_id, f"runs/{run_id}/paper.pdf")

        with StageContext("Stage_4", run_id):
            guarded(event_emitter.validation_auto_started, run_id, "gpt-4o-2024-11-20")
            guarded(
                event_emitter.validation_auto_completed,
                run_id,
                "pass",
                {"Overall": 6.0},
                json.dumps({"Decision": "Accept"}),
            )
        guarded(event_emitter.run_completed, run_id, 12)
        guarded(emitter.flush)
    except Exception as exc:  # noqa: BLE001 - as the fork: report, then go on polling
        guarded(
            event_emitter.run_failed,
            run_id,
            CURRENT_STAGE or "unknown",
            type(exc).__name__,
            str(exc),
            traceback.format_exc(),
        )
        guarded(emitter.flush)
    finally:
        monitor_stop.set()
        heartbeat_stop.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-id", default="run-pod-1")
    parser.add_argument("--outcome", choices=("paper-failed", "crash", "completed"), default="paper-failed")
    parser.add_argument("--start-method", choices=("fork", "spawn"), default="spawn")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)

    from llm_stub import LLMStub

    stub = LLMStub(seed=3, bug_rate=0.25).start()
    os.environ["OPENAI_BASE_URL"] = stub.base_url
    os.environ.setdefault("OPENAI_API_KEY", "sk-local-stub")
    try:
        workdir = Path(args.workdir or tempfile.mkdtemp(prefix="pod-worker-program-"))
        run_experiment_pipeline(args.run_id, args.outcome, workdir, args.start_method)
    finally:
        stub.stop()
    print(json.dumps(RESULT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
