"""The local artifact cache: where a registered version's file lives, and its sha256.

Serving loads from here (never from MLflow); the registry fills it at registration.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .state import MLOpsState


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_path(state: MLOpsState, name: str, version: int) -> Path:
    return Path(state.config.model_cache_dir or "") / name / str(version) / "model.joblib"
