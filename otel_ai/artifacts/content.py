"""Content types and artifact kinds from file names, the same on every machine.

The system's ``mimetypes`` tables differ between hosts (``/etc/mime.types``); ours is a
fixed table for what AI-scientist runs produce, falling back to Python's built-in
defaults only.
"""

from __future__ import annotations

import mimetypes
from pathlib import PurePosixPath

OCTET_STREAM = "application/octet-stream"

_BY_SUFFIX: dict[str, str] = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".gif": "image/gif",
    ".pdf": "application/pdf",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".txt": "text/plain; charset=utf-8",
    ".log": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".py": "text/x-python; charset=utf-8",
    ".tex": "application/x-tex",
    ".bib": "application/x-bibtex",
    ".csv": "text/csv",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".html": "text/html; charset=utf-8",
    ".npy": OCTET_STREAM,
    ".npz": "application/zip",
    ".pt": OCTET_STREAM,
    ".pth": OCTET_STREAM,
    ".ckpt": OCTET_STREAM,
    ".safetensors": OCTET_STREAM,
    ".tar": "application/x-tar",
    ".gz": "application/gzip",
    ".zip": "application/zip",
}

_builtin = mimetypes.MimeTypes(filenames=())  # Python's defaults, never the host's files


def content_type_for(name: str) -> str:
    """The Content-Type of an artifact, from its file name (``plots/loss.png`` -> ``image/png``)."""
    lowered = name.lower()
    if lowered.endswith((".tar.gz", ".tgz")):
        return "application/gzip"
    suffix = PurePosixPath(lowered).suffix
    known = _BY_SUFFIX.get(suffix)
    if known is not None:
        return known
    guessed, _encoding = _builtin.guess_type(lowered, strict=True)
    return guessed or OCTET_STREAM
