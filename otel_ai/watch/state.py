"""Where a watcher's positions survive a restart: two small JSON files per run and root.

``{state_dir}/{run_id}-{root hash}.logs.json`` holds, per tailed file, its inode and the
offset after the last delivered line with a fingerprint of the bytes before it;
``...artifacts.json`` holds, per artifact, its size, mtime, SHA-256, version and whether
it was uploaded. Both are replaced atomically (write, fsync, rename), so a crash leaves
the previous version, never half a file. A resumed run (same OTEL_AI_RUN_ID and data
directory) neither repeats nor skips lines, and does not upload the same content twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

FORMAT = 1


class WatchState:
    def __init__(self, directory: str | os.PathLike[str], run_id: str, root: str) -> None:
        safe_run = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)[:128] or "run"
        digest = hashlib.sha256(os.path.realpath(root).encode("utf-8", "surrogateescape")).hexdigest()[:12]
        base = Path(directory) / f"{safe_run}-{digest}"
        self.root = root
        self.logs_path = base.with_name(base.name + ".logs.json")
        self.artifacts_path = base.with_name(base.name + ".artifacts.json")
        self._last: dict[Path, str] = {}

    @property
    def exists(self) -> bool:
        return self.logs_path.exists() or self.artifacts_path.exists()

    def load_logs(self) -> dict[str, dict[str, Any]]:
        return self._load(self.logs_path)

    def load_artifacts(self) -> dict[str, dict[str, Any]]:
        return self._load(self.artifacts_path)

    def save_logs(self, entries: dict[str, dict[str, Any]]) -> None:
        self._save(self.logs_path, entries)

    def save_artifacts(self, entries: dict[str, dict[str, Any]]) -> None:
        self._save(self.artifacts_path, entries)

    def _load(self, path: Path) -> dict[str, dict[str, Any]]:
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
            return {}
        return {str(k): v for k, v in data["files"].items() if isinstance(v, dict)}

    def _save(self, path: Path, entries: dict[str, dict[str, Any]]) -> None:
        text = json.dumps({"format": FORMAT, "root": self.root, "files": entries}, separators=(",", ":"), sort_keys=True)
        if self._last.get(path) == text:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        self._last[path] = text
