"""Watching a run's directories: lossless log tailing, artifact detection and upload.

:class:`Watcher` is the whole API: ``otel-ai run --watch DIR`` drives one, and a pod
worker that runs its experiment in-process can too::

    with otel_ai.run(run_id) as run:
        with Watcher(run, roots=[experiment_dir], artifacts_uri="s3://lab/ai-scientist"):
            perform_experiments_bfts(config_path)

Every complete line of ``*.log`` and ``logs/**/*.txt`` becomes a log record of the run;
plots, papers, checkpoints, data and the best nodes' code become ``ai.artifact.detected``
events once their size settles, and are uploaded when an artifacts URI is set. See
:class:`Watcher` for the options and :mod:`otel_ai.watch.tailer` for the guarantees.
"""

from __future__ import annotations

from ..model.lines import Line, detect_level
from .patterns import (
    DEFAULT_ARTIFACT_PATTERNS,
    DEFAULT_EXCLUDE,
    DEFAULT_LOG_PATTERNS,
    ArtifactRules,
    PathPatterns,
)
from .sink import LogQueueGate, RunLogSink
from .tailer import LineSink, LogTailer, TailSource
from .watcher import Watcher, WatchSummary

__all__ = [
    "DEFAULT_ARTIFACT_PATTERNS",
    "DEFAULT_EXCLUDE",
    "DEFAULT_LOG_PATTERNS",
    "ArtifactRules",
    "Line",
    "LineSink",
    "LogQueueGate",
    "LogTailer",
    "PathPatterns",
    "RunLogSink",
    "TailSource",
    "WatchSummary",
    "Watcher",
    "detect_level",
]
