"""The AI-Scientist-v2 instrumentor: the tree search, its LLM calls, the paper and review.

``otel-ai run`` applies it in every Python child that imports ``ai_scientist``;
``opentelemetry-instrument`` loads it through the ``opentelemetry_instrumentor`` entry
point; or call it yourself::

    from otel_ai.instrumentation import AIScientistInstrumentor
    AIScientistInstrumentor().instrument()

What it emits (names in docs/semconv.md, section "AI-Scientist instrumentation"):

- ``ai.stage {stage}`` per ``ParallelAgent`` (a stage or sub-stage of ``AgentManager``),
  with the completion checks as ``ai.stage.decision`` events, progress from the step
  callback, ``ai.node.selected_best`` when ``Journal.get_best_node`` picks another node;
- ``ai.node {kind}`` per node, made in the process-pool worker that makes the node (fork
  or spawn), under its stage, linked to its parent node; ``ai.node.execute`` per
  ``Interpreter.run`` (``ai.node.exec.purpose`` experiment | metrics | plotting);
  ``seed_agg`` nodes in the main process; a best node copied into the next stage too;
- ``chat {model}`` per OpenAI or Anthropic call, under the node or stage it serves, tokens
  rolled up onto node, stage and run (``ai.llm.input_tokens``, ``ai.llm.output_tokens``);
- ``ai.paper`` per ``perform_writeup``, ``ai.validation`` per ``perform_review``.

Every hook is optional: what this version of AI-Scientist lacks is skipped and listed by
:func:`hook_report` (``otel-ai doctor``). Nothing is imported before its target is.
"""

from __future__ import annotations

import sys
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from ..bootstrap.importhook import when_imported
from ..model.tokens import set_run_totals
from ..pools import add_task_hook, instrument_process_pool, uninstrument_process_pool
from ..version import __version__
from . import _llm, _papers, _search
from ._nodes import task_context
from ._patching import Hook, HookStatus, Patcher

__all__ = ["AIScientistInstrumentor", "HookStatus", "hook_report", "set_run_totals"]

POOL_MODULE = "concurrent.futures.process"


def _hooks() -> list[Hook]:
    return [*_search.hooks(), *_llm.hooks(), *_papers.hooks()]


class AIScientistInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instruments AI-Scientist-v2 (SakanaAI's and forks of the same shape).

    ``instrument()`` patches each target when its module is imported (at once if it
    already is); calling it twice is a no-op; ``uninstrument()`` restores every original
    object. It also carries trace context into ``ProcessPoolExecutor`` tasks (what
    ``otel-ai run`` does for every child), so pool workers join the stage that submitted
    them under ``opentelemetry-instrument`` too.
    """

    __version__ = __version__
    _patcher: Patcher | None = None
    _pool_patched = False

    def instrumentation_dependencies(self) -> Collection[str]:
        # AI-Scientist-v2 is run from its repository, not installed as a distribution,
        # and openai / anthropic are each optional: nothing for pip metadata to check.
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        self._patcher = Patcher(_hooks())
        self._patcher.start()
        add_task_hook(task_context)  # a node task carries its stage and parent node
        when_imported(POOL_MODULE, self._instrument_pool)

    def _instrument_pool(self, module: Any) -> None:
        executor = getattr(module, "ProcessPoolExecutor", None)
        if executor is None or getattr(executor.submit, "_otel_ai_wrapped", False):
            return  # otel-ai run's bootstrap did it already
        instrument_process_pool(module)
        self._pool_patched = self._patcher is not None

    def _uninstrument(self, **kwargs: Any) -> None:
        patcher, self._patcher = self._patcher, None
        if patcher is not None:
            patcher.stop()
        pool = sys.modules.get(POOL_MODULE)
        if self._pool_patched and pool is not None:  # patched, so imported
            uninstrument_process_pool(pool)
            self._pool_patched = False

    def hook_report(self, probe: bool = False) -> list[HookStatus]:
        patcher = self._patcher or Patcher(_hooks())
        return patcher.report(probe)


def hook_report(probe: bool = False) -> list[HookStatus]:
    """Each hook's target (``module:Class.method``) and status: ``patched``, ``found``
    (present, not instrumented in this process), ``missing`` (this version lacks it),
    ``not imported`` or ``unavailable`` (the module cannot be imported). With ``probe``,
    target modules are imported to check them (what ``otel-ai doctor`` does)."""
    return AIScientistInstrumentor().hook_report(probe)
