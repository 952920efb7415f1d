"""A pool task carries what the submitting process adds to its context (the stage and
parent node of an AI-Scientist node task), to workers started by fork and by spawn."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from otel_ai import pools


def carried_in_worker(label: str) -> dict[str, Any]:
    """Runs in the worker: what its task came with."""
    return {"label": label, "pid": os.getpid(), "carrier": dict(pools.task_carrier())}


def _node_hook(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Mapping[str, str]:
    if fn is not carried_in_worker:
        return {}
    if args == ("broken",):
        raise RuntimeError("a failing hook adds nothing; the task still runs")
    return {"otel-ai-parent-node": f"parent-of-{args[0]}"}


@pytest.fixture
def pool_module() -> Iterator[Any]:
    import concurrent.futures.process as module

    already = getattr(module.ProcessPoolExecutor.submit, "_otel_ai_wrapped", False)
    pools.instrument_process_pool(module)
    pools.add_task_hook(_node_hook)
    yield module
    pools.remove_task_hook(_node_hook)
    if not already:
        pools.uninstrument_process_pool(module)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_each_task_carries_its_own_context_to_the_worker(pool_module: Any, method: str) -> None:
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context(method)) as pool:
        futures = [pool.submit(carried_in_worker, label) for label in ("a", "b", "broken")]
        results = [future.result(timeout=60) for future in futures]
    assert all(result["pid"] != os.getpid() for result in results)
    by_label = {result["label"]: result["carrier"] for result in results}
    assert by_label["a"]["otel-ai-parent-node"] == "parent-of-a"
    assert by_label["b"]["otel-ai-parent-node"] == "parent-of-b"
    assert "otel-ai-parent-node" not in by_label["broken"]
    assert pools.task_carrier() == {}  # outside a task: nothing
