"""The local model cache: verified loads (hash and unpickle the same bytes) and production pointers.

A version's serving artifact is read into memory once; its sha256 is compared with the one
recorded at registration and those very bytes are unpickled, so a file swapped on disk
between the check and the load is never loaded. A copy that fails the check is removed
(the caller fetches it again from the registry).

Beside the cache, one small JSON file per model (`<cache>/<name>/production.json`) names
the production version last loaded, with its sha256 and threshold: a worker that boots
while the database is unreachable serves that version from the verified cache. It is
read only then; the database stays the source of truth.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ARTIFACT = "model.joblib"
POINTER = "production.json"

#: test hook (tests/test_faults.py): called with the artifact's path after its bytes were
#: read and checked, before they are unpickled; it makes the check/load race deterministic
after_read: Callable[[Path], None] | None = None


def cache_path(cache_dir: str | Path, name: str, version: int) -> Path:
    return Path(cache_dir) / name / str(version) / ARTIFACT


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checked(path: Path, sha256: str) -> bytes | None:
    """The cached bytes when their sha256 is `sha256`; None when absent, or when they differ
    (the bad copy is then removed, so the next fetch replaces it)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    actual = sha256_bytes(data)
    if actual != sha256:
        logger.error(
            "cached artifact %s fails its check (sha256 %s… != registered %s…); removing it", path, actual[:12], sha256[:12]
        )
        path.unlink(missing_ok=True)
        return None
    return data


def unpickle(path: Path, data: bytes) -> Any:
    """Load the checked bytes (never the file again)."""
    hook = after_read
    if hook is not None:
        hook(path)
    import joblib

    return joblib.load(io.BytesIO(data))


def stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when a cached file is replaced (a failed version is retried then)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class Pointer:
    """The last production version this cache served for a model."""

    model: str
    version: int
    sha256: str
    threshold: float | None
    task: str | None = None  # the task kind it was served as
    spec: dict[str, Any] | None = None  # the spec stored with the version (undeclared models, input layout)


def pointer_path(cache_dir: str | Path, name: str) -> Path:
    return Path(cache_dir) / name / POINTER


def write_pointer(cache_dir: str | Path, pointer: Pointer) -> None:
    """Atomically record `pointer` (skipped when it already says the same)."""
    path = pointer_path(cache_dir, pointer.model)
    body = json.dumps(asdict(pointer), sort_keys=True)
    with contextlib.suppress(OSError, UnicodeDecodeError):  # no pointer yet (or unreadable): write it
        if path.read_text(encoding="utf-8") == body:
            return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{POINTER}.{os.getpid()}.tmp")
        tmp.write_text(body, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # the cache is a convenience for outages: never fail serving over it
        logger.warning("could not record the production pointer of %s: %s", pointer.model, exc)


def read_pointer(cache_dir: str | Path, name: str) -> Pointer | None:
    try:
        raw = json.loads(pointer_path(cache_dir, name).read_text(encoding="utf-8"))
        pointer = Pointer(
            str(raw["model"]), int(raw["version"]), str(raw["sha256"]), raw.get("threshold"), raw.get("task"), raw.get("spec")
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pointer if pointer.model == name else None


__all__ = ["Pointer", "after_read", "cache_path", "file_sha256", "read_checked", "read_pointer", "stamp", "unpickle", "write_pointer"]
