"""Training (no Flask): candidates, cross-validation, selection, calibration, artifacts.

Nothing here imports Flask; the registry and the CLI call `run_training` and log its
`TrainingResult` to MLflow. Heavy libraries (xgboost, torch, matplotlib, pandas) are
imported inside the functions that need them.
"""

from __future__ import annotations

from .candidates import CANDIDATES, Candidate, get_candidate, register_candidate
from .data import data_hash, load_training_data
from .device import DeviceChoice, resolve_device
from .features import PRESETS, FeatureEngineer
from .model import Calibrator, TrainedModel
from .pipeline import format_comparison, run_training
from .settings import TrainingResult, TrainingSettings

__all__ = [
    "CANDIDATES",
    "PRESETS",
    "Calibrator",
    "Candidate",
    "DeviceChoice",
    "FeatureEngineer",
    "TrainedModel",
    "TrainingResult",
    "TrainingSettings",
    "data_hash",
    "format_comparison",
    "get_candidate",
    "load_training_data",
    "register_candidate",
    "resolve_device",
    "run_training",
]
