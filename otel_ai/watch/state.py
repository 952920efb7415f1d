"""Where a watcher's positions survive a restart: two journals per run and root.

``{state_dir}/{run_id}-{root hash}.logs.jsonl`` holds, per tailed file, its inode and the
offset after the last delivered line with a fingerprint of the bytes before it;
``...artifacts.jsonl`` holds, per artifact, its size, mtime, SHA-256, version and whether
it was uploaded.

A run can tail thousands of files and see tens of thousands of artifacts (every plot of
every node, and the files that matched when watching started). So neither file is
rewritten every second: a save appends the entries that changed, one JSON line each
(``{"k": key, "v": entry}``, or ``"v": null`` for a file no longer followed), and
fsyncs. The last line of an entry wins; a line cut short (power loss) is skipped, and
the journal is rewritten before anything is appended after it. When a journal holds more
than twice the lines it needs, it is rewritten whole, atomically (write, fsync, rename):
a save costs the same, amortized, however long the run. The ``.logs.json`` and
``.artifacts.json`` of earlier versions (one JSON object, rewritten whole) are read and
replaced by the journals at the first save.

A resumed run (same OTEL_AI_RUN_ID and data directory) neither repeats nor skips lines,
and does not upload the same content twice.

Secrets stay out of these files too: a path or name holding one is stored redacted, with
a digest of the real one so it is still found on resume.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..redaction import REDACTED, default_redactor

FORMAT = 1  # the whole-file state of earlier versions
JOURNAL_FORMAT = 2
# lines an artifact journal may hold beyond twice its entries before it is rewritten
JOURNAL_SLACK = 256


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


class Journal:
    """Entries by key, on disk as a journal of what changed (see the module's docstring)."""

    def __init__(self, path: Path, legacy_path: Path, root: str) -> None:
        self.path = path
        self.legacy_path = legacy_path  # an earlier version's whole-file state
        self._root = root
        # each entry's last line (by stored key), the lines the file holds, and whether
        # it must be rewritten whole at the next save
        self._lines: dict[str, str] = {}
        self._journal_lines = 0
        self._rewrite = True

    def load(self) -> Entries:
        """The saved entries, from the journal (else from an earlier version's file)."""
        journal = self._load_journal()
        if journal is not None:
            return journal
        entries = _load_whole(self.legacy_path)
        for key, value in entries.items():
            self._lines[key] = _entry_line(key, value)
        self._rewrite = True
        return entries

    def save(self, changed: dict[str, dict[str, Any] | None]) -> None:
        """Append the ``changed`` entries (None: the entry is gone) to the journal,
        rewritten whole when it holds too many lines; OSError when it cannot be written,
        the entries then written at the next save that can."""
        new = []
        for key, value in changed.items():
            stored = key if key in self._lines else stored_key(key)  # a stored key: as it is
            if value is None:
                if self._lines.pop(stored, None) is not None:
                    new.append(_entry_line(stored, None))
                continue
            line = _entry_line(stored, _redacted(value))
            if self._lines.get(stored) != line:
                self._lines[stored] = line
                new.append(line)
        if not new and not self._rewrite:
            return
        if self._rewrite or self._journal_lines + len(new) > 2 * len(self._lines) + JOURNAL_SLACK:
            self._rewrite = True
            self._rewrite_journal()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write("".join(f"{line}\n" for line in new))
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            self._rewrite = True  # whatever part was written, the next save writes it all
            raise
        self._journal_lines += len(new)

    def _rewrite_journal(self) -> None:
        header = json.dumps({"format": JOURNAL_FORMAT, "root": _redacted(self._root)}, separators=(",", ":"))
        lines = [header, *self._lines.values()]
        _replace(self.path, "".join(f"{line}\n" for line in lines))
        self._journal_lines = len(lines) - 1
        self._rewrite = False
        with contextlib.suppress(OSError):
            self.legacy_path.unlink()

    def _load_journal(self) -> Entries | None:
        """The journal's entries, None when there is none (or not of this format)."""
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except OSError:
            return None
        lines = text.splitlines()
        try:
            header = json.loads(lines[0]) if lines else None
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != JOURNAL_FORMAT:
            return None
        entries = Entries()
        damaged = not text.endswith("\n")
        for line in lines[1:]:
            try:
                item = json.loads(line)
            except ValueError:
                item = None  # cut short by a crash of the machine
            if not isinstance(item, dict) or not isinstance(item.get("k"), str):
                damaged = True
            elif item.get("v") is None and "v" in item:  # no longer followed
                entries.pop(item["k"], None)
                self._lines.pop(item["k"], None)
            elif isinstance(item.get("v"), dict):
                entries[item["k"]] = item["v"]
                self._lines[item["k"]] = line
            else:
                damaged = True
        self._journal_lines = len(lines) - 1
        # a damaged journal is rewritten before anything is appended to it (a line
        # appended to a line cut short would be lost with it)
        self._rewrite = damaged
        return entries


class WatchState:
    def __init__(self, directory: str | os.PathLike[str], run_id: str, root: str) -> None:
        safe_run = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)[:128] or "run"
        digest = hashlib.sha256(os.path.realpath(root).encode("utf-8", "surrogateescape")).hexdigest()[:12]
        base = Path(directory) / f"{safe_run}-{digest}"
        self.logs = Journal(
            base.with_name(base.name + ".logs.jsonl"), base.with_name(base.name + ".logs.json"), root
        )
        self.artifacts = Journal(
            base.with_name(base.name + ".artifacts.jsonl"),
            base.with_name(base.name + ".artifacts.json"),
            root,
        )

    @property
    def logs_path(self) -> Path:
        return self.logs.path

    @property
    def artifacts_path(self) -> Path:
        return self.artifacts.path

    @property
    def exists(self) -> bool:
        journals = (self.logs, self.artifacts)
        return any(p.exists() for journal in journals for p in (journal.path, journal.legacy_path))

    def load_logs(self) -> Entries:
        return self.logs.load()

    def load_artifacts(self) -> Entries:
        return self.artifacts.load()

    def save_logs(self, changed: dict[str, dict[str, Any] | None]) -> None:
        """The tailing positions that changed (None: a file no longer followed)."""
        self.logs.save(changed)

    def save_artifacts(self, changed: dict[str, dict[str, Any]]) -> None:
        """The artifacts that changed."""
        self.artifacts.save(dict(changed))


def _load_whole(path: Path) -> Entries:
    """An earlier version's state file: one JSON object of all entries."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return Entries()
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
        return Entries()
    return Entries({str(k): v for k, v in data["files"].items() if isinstance(v, dict)})


def _entry_line(stored: str, value: dict[str, Any] | None) -> str:
    return json.dumps({"k": stored, "v": value}, separators=(",", ":"), sort_keys=True)


def _replace(path: Path, text: str) -> None:
    """``path`` holds ``text``, or (on OSError) what it held before: write, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
