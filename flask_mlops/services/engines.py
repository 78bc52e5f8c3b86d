"""Engines over the log's Parquet layout: `compact_parquet` keeps `<log_dir>/parquet` (`store/parquet.py`)
up to date with the closed days of the log."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ..store import parquet

if TYPE_CHECKING:
    from .state import MLOpsState

logger = logging.getLogger(__name__)


def compact_parquet(state: MLOpsState) -> dict[str, Any]:
    """Write the Parquet partitions of every closed day that has none or whose sources changed."""
    stats = parquet.compact(state.log_dir)
    logger.info("parquet compaction: %s", stats)
    return asdict(stats)


__all__ = ["compact_parquet"]
