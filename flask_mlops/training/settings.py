"""How a training run is configured (from `MLOpsConfig`) and what it returns."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from ..tasks import DIRECTIONS
from .candidates import get_candidate
from .device import DEVICES
from .metrics import THRESHOLD_OBJECTIVES
from .model import CALIBRATIONS

if TYPE_CHECKING:
    from ..config import MLOpsConfig


def _default_jobs() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class TrainingSettings:
    """Everything a run needs besides the data; validated on construction."""

    candidates: Mapping[str, Mapping[str, Any]] | None = None  # name -> hyper-params; None = all available
    selection_metric: str | None = None  # None: the task's default (tasks.py)
    cv_folds: int = 5
    holdout_size: float = 0.2
    random_seed: int = 42
    device: str = "auto"
    # additions beyond the registry's contract
    threshold_objective: str = "f1"  # what the CV-chosen decision threshold maximises
    calibration: str = "sigmoid"  # sigmoid | isotonic | none (cross-fitted on out-of-fold scores)
    n_jobs: int = field(default_factory=_default_jobs)
    importance_repeats: int = 5  # permutation-importance repeats on the holdout (0 = skip)
    make_plots: bool = True

    def __post_init__(self) -> None:
        cands = self.candidates
        if cands is not None:
            if isinstance(cands, str):
                cands = [c.strip() for c in cands.split(",") if c.strip()]
            if isinstance(cands, (list, tuple)):
                cands = {str(name): {} for name in cands}
            if not isinstance(cands, Mapping) or not cands:
                raise ConfigError("MLOPS_CANDIDATES must be a non-empty mapping name -> params or a list of names")
            for name, params in cands.items():
                get_candidate(name)
                if params is not None and not isinstance(params, Mapping):
                    raise ConfigError(f"MLOPS_CANDIDATES: params of {name!r} must be a mapping")
            object.__setattr__(self, "candidates", {str(k): dict(v or {}) for k, v in cands.items()})
        if self.selection_metric is not None and self.selection_metric not in DIRECTIONS:
            raise ConfigError(
                f"MLOPS_SELECTION_METRIC must be one of {', '.join(DIRECTIONS)}; got {self.selection_metric!r}"
            )
        if self.threshold_objective not in THRESHOLD_OBJECTIVES:
            raise ConfigError(f"threshold_objective must be one of {', '.join(THRESHOLD_OBJECTIVES)}")
        if self.calibration not in CALIBRATIONS:
            raise ConfigError(f"calibration must be one of {', '.join(CALIBRATIONS)}")
        if not 2 <= int(self.cv_folds) <= 50:
            raise ConfigError(f"MLOPS_CV_FOLDS must be between 2 and 50, got {self.cv_folds}")
        if not 0.0 < float(self.holdout_size) < 1.0:
            raise ConfigError(f"MLOPS_HOLDOUT_SIZE must be between 0 and 1, got {self.holdout_size}")
        if self.device not in DEVICES:
            raise ConfigError(f"MLOPS_DEVICE must be one of {', '.join(DEVICES)}, got {self.device!r}")

    @classmethod
    def from_config(cls, config: MLOpsConfig, **overrides: Any) -> TrainingSettings:
        values: dict[str, Any] = {
            "candidates": config.candidates,
            "selection_metric": config.selection_metric,
            "cv_folds": config.cv_folds,
            "holdout_size": config.holdout_size,
            "random_seed": config.random_seed,
            "device": config.device,
        }
        return cls(**{**values, **overrides})

    def as_params(self) -> dict[str, Any]:
        """Flat, loggable description (MLflow params)."""
        return {
            "candidates": ",".join(self.candidates) if self.candidates else "all",
            "selection_metric": self.selection_metric or "task default",
            "cv_folds": self.cv_folds,
            "holdout_size": self.holdout_size,
            "random_seed": self.random_seed,
            "device_requested": self.device,
            "threshold_objective": self.threshold_objective,
            "calibration": self.calibration,
        }


@dataclass
class TrainingResult:
    """The selected, refitted model and everything a reviewer or the registry needs."""

    estimator: Any  # TrainedModel / TrainedRegressor: predict(_proba) on raw numpy rows in feature order
    threshold: float | None
    candidate: str
    params: dict[str, Any]
    cv: dict[str, dict[str, float]]
    holdout: dict[str, Any]
    comparison: list[dict[str, Any]]
    artifacts: dict[str, Path]
    X_reference: np.ndarray
    y_reference: np.ndarray
    device: str
    # additions
    feature_names: list[str] = field(default_factory=list)
    selection_metric: str = "f1"
    calibration: str = "sigmoid"  # "none" outside binary classification
    task: str = "binary"  # binary | multiclass | regression (tasks.py)
    classes: list[Any] | None = None  # multi-class labels, in the model's column order
    data_sha256: str = ""  # hash of the full (X, y) given to run_training, for lineage
    n_train: int = 0
    n_holdout: int = 0
    notes: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    # the holdout rows (raw features, labels as the model predicts them): for "no worse than
    # production on the same holdout"
    X_holdout: np.ndarray | None = None
    y_holdout: np.ndarray | None = None

    def flat_metrics(self) -> dict[str, float]:
        """cv_<metric>_mean/std and holdout_<metric>: ready for `mlflow.log_metrics`."""
        out: dict[str, float] = {}
        for name, stats in self.cv.items():
            out[f"cv_{name}_mean"] = stats["mean"]
            out[f"cv_{name}_std"] = stats["std"]
        for name, value in self.holdout.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"holdout_{name}"] = float(value)
        if self.threshold is not None:
            out["threshold"] = float(self.threshold)
        return out
