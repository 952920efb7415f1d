"""Where a watcher's positions survive a restart: two small JSON files per run and root.

``{state_dir}/{run_id}-{root hash}.logs.json`` holds, per tailed file, its inode and the
offset after the last delivered line with a fingerprint of the bytes before it;
``...artifacts.json`` holds, per artifact, its size, mtime, SHA-256, version and whether
it was uploaded. Both are replaced atomically (write, fsync, rename), so a crash leaves
the previous version, never half a file. A resumed run (same OTEL_AI_RUN_ID and data
directory) neither repeats nor skips lines, and does not upload the same content twice.

Secrets stay out of these files too: a path or name holding one is stored redacted, with
a digest of the real one so it is still found on resume.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..redaction import REDACTED, default_redactor

FORMAT = 1


def stored_key(key: str) -> str:
    """``key`` as written to disk: redacted, plus a digest of the real key when that
    changed it (so a lookup by the real key still finds it)."""
    redacted = default_redactor().redact(key)
    if redacted == key and REDACTED not in key:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return f"{redacted}#{digest}"


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return default_redactor().redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


class Entries(dict[str, dict[str, Any]]):
    """Saved entries, found by the real path or name though stored redacted."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(stored_key(key), default)

    def __contains__(self, key: object) -> bool:
        return super().__contains__(stored_key(key) if isinstance(key, str) else key)


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
            return Entries()
        if (
            not isinstance(data, dict)
            or data.get("format") != FORMAT
            or not isinstance(data.get("files"), dict)
        ):
            return Entries()
        return Entries({str(k): v for k, v in data["files"].items() if isinstance(v, dict)})

    def _save(self, path: Path, entries: dict[str, dict[str, Any]]) -> None:
        files = {stored_key(key): _redacted(value) for key, value in entries.items()}
        content = {"format": FORMAT, "root": _redacted(self.root), "files": files}
        text = json.dumps(content, separators=(",", ":"), sort_keys=True)
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
