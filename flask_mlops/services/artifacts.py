"""The local artifact cache: where a registered version's file lives, and its sha256.

Serving loads from here (never from MLflow); the registry fills it at registration. The
verified read and the production pointers are in `store/artifacts.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..store import artifacts
from ..store.artifacts import file_sha256

if TYPE_CHECKING:
    from .state import MLOpsState


def cache_path(state: MLOpsState, name: str, version: int) -> Path:
    return artifacts.cache_path(state.config.model_cache_dir or "", name, version)


__all__ = ["cache_path", "file_sha256"]
