"""Persistence: the `mlops` tables and the JSONL prediction log. Nothing else touches them directly."""

from __future__ import annotations

from . import aggregates, experiments, feedback, fleet, leases, models, monitoring, ratelimit, retraining, sessions  # noqa: F401  (registers the tables on Base.metadata)
from .base import BIND_KEY, Base
from .predictions import PredictionLogWriter, ReadStats, read_records

__all__ = ["BIND_KEY", "Base", "PredictionLogWriter", "ReadStats", "read_records"]
