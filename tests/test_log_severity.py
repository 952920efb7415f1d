"""One line, one severity: the same text printed by the wrapped command and written to a
tailed log file becomes log records with the same severity (real `otel-ai run`, records
read back from the OTLP/JSON files it wrote)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

from test_run_wrapper import run_wrapped, telemetry

from otel_ai import semconv

LINES = [
    "ERROR: CUDA out of memory",
    "warning: gradient norm is large",
    "[INFO] epoch 3 done",
    "[warning] slow data loader",
    "level=error msg=boom",
    "torch.cuda.OutOfMemoryError: CUDA out of memory.",
    "/x/y.py:3: UserWarning: deprecated thing",
    "CRITICAL: disk full",
    "[DEBUG] batch 3",
    "epoch 3 val_error=0.31 train_loss 0.2",
    "0 errors, 2 failed nodes retried",
    "Fatal Python error: Segmentation fault",
    "Killed",
    # last: on stdout a traceback collects the lines after it until its exception line
    "Traceback (most recent call last):",
]

CHILD = textwrap.dedent(
    """
    import json, pathlib, sys
    lines = json.loads(sys.argv[1])
    with open(pathlib.Path("experiments") / "train.log", "a") as log:
        for line in lines:
            log.write(line + "\\n")
    for line in lines:
        print(line, flush=True)
    """
)


def test_a_line_has_one_severity_on_stdout_and_in_a_tailed_file(tmp_path: Path) -> None:
    (tmp_path / "child.py").write_text(CHILD)
    (tmp_path / "experiments").mkdir()
    result = run_wrapped(
        tmp_path,
        [sys.executable, "child.py", json.dumps(LINES)],
        "--run-id",
        "one-severity",
        "--watch",
        str(tmp_path / "experiments"),
    )
    assert result.returncode == 0, result.stderr.decode()
    logs = [r for r in telemetry(tmp_path).logs if not r.event_name]
    printed = {r.body: r for r in logs if r.attributes.get(semconv.LOG_IOSTREAM) == "stdout"}
    tailed = {r.body: r for r in logs if r.attributes.get(semconv.LOG_FILE_PATH)}
    assert sorted(printed) == sorted(LINES)
    assert sorted(tailed) == sorted(LINES)
    differ = {
        line: (
            (printed[line].severity_number, printed[line].severity_text),
            (tailed[line].severity_number, tailed[line].severity_text),
        )
        for line in LINES
        if (printed[line].severity_number, printed[line].severity_text)
        != (tailed[line].severity_number, tailed[line].severity_text)
    }
    assert differ == {}
    by_text = {line: printed[line].severity_text for line in LINES}
    assert by_text["ERROR: CUDA out of memory"] == "ERROR"
    assert by_text["Traceback (most recent call last):"] == "ERROR"
    assert by_text["warning: gradient norm is large"] == "WARN"
    assert by_text["[INFO] epoch 3 done"] == "INFO"
    assert by_text["0 errors, 2 failed nodes retried"] == "INFO"
