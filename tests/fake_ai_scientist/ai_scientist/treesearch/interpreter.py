"""Runs generated code in a fresh child process (as ai_scientist/treesearch/interpreter.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class ExecutionResult:
    term_out: list[str]
    exec_time: float
    exc_type: str | None
    exc_info: dict[str, Any] | None = None


class Interpreter:
    def __init__(
        self,
        working_dir: str | Path,
        timeout: float = 3600,
        format_tb_ipython: bool = False,
        agent_file_name: str = "runfile.py",
        env_vars: dict[str, str] | None = None,
    ) -> None:
        self.working_dir = Path(working_dir).resolve()
        self.working_dir.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.agent_file_name = agent_file_name
        self.env_vars = env_vars or {}

    def cleanup_session(self) -> None:
        pass

    def run(self, code: str, reset_session: bool = True) -> ExecutionResult:
        path = self.working_dir / self.agent_file_name
        path.write_text(code)
        env = {**os.environ, **{k: v for k, v in self.env_vars.items() if v is not None}}
        started = time.time()
        try:
            done = subprocess.run(
                [sys.executable, str(path)],
                cwd=self.working_dir,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                env=env,
            )
        except subprocess.TimeoutExpired:
            return ExecutionResult(["TimeoutError"], time.time() - started, "TimeoutError")
        elapsed = time.time() - started
        exc_type = None
        if done.returncode != 0:
            found = re.findall(r"^(\w+(?:Error|Exception|Interrupt)):", done.stderr, re.MULTILINE)
            exc_type = found[-1] if found else "RuntimeError"
        return ExecutionResult(
            (done.stdout + done.stderr).splitlines(keepends=True),
            elapsed,
            exc_type,
            {"returncode": done.returncode} if exc_type else None,
        )
