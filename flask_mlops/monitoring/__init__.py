"""Monitoring statistics (no Flask): reference profiles, drift, performance and decay, health.

Everything here takes data and config values as arguments and returns dataclasses; the
API, CLI and scheduled jobs read the log and the database and call these functions.
"""

from __future__ import annotations

from .drift import LEVELS, DriftCalculator, DriftReport, DriftThresholds, FeatureDrift, worst
from .health import Component, Health, assess_health, decide_alert, health_of
from .performance import (
    classification_metrics,
    decay,
    estimate_performance,
    operational_metrics,
    regression_metrics,
)
from .profile import build_profile, profile_from_json, profile_to_json
from .stattests import STATTESTS, FeatureData, StatResult, get_stattest, register_stattest

__all__ = [
    "LEVELS",
    "STATTESTS",
    "Component",
    "DriftCalculator",
    "DriftReport",
    "DriftThresholds",
    "FeatureData",
    "FeatureDrift",
    "Health",
    "StatResult",
    "assess_health",
    "build_profile",
    "classification_metrics",
    "decay",
    "decide_alert",
    "estimate_performance",
    "get_stattest",
    "health_of",
    "operational_metrics",
    "profile_from_json",
    "profile_to_json",
    "regression_metrics",
    "register_stattest",
    "worst",
]
