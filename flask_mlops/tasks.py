"""What kind of prediction a model makes, and every choice that follows from it.

One `Task` per kind (`binary`, `multiclass`, `regression`) owns what used to be string
comparisons spread over the code: the metrics and their directions, the default
selection metric, the CV splitter, whether probabilities are calibrated (and so whether
CBPE applies), the default promotion gates and the "no worse than production" metrics,
the A/B outcome and its test, and the metrics monitoring reports and judges decay by.

`MLOPS_MODELS[name]["task"]` is `"classification"` (binary or multi-class, told apart by
the labels: two classes are binary), `"regression"`, or the kind itself. Pure: no Flask,
no heavy imports at module level.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

BINARY = "binary"
MULTICLASS = "multiclass"
REGRESSION = "regression"
KINDS = (BINARY, MULTICLASS, REGRESSION)
#: what `MLOPS_MODELS[name]["task"]` accepts
DECLARED = ("classification", *KINDS)

#: metric -> True when larger is better (every metric any task reports)
DIRECTIONS: dict[str, bool] = {
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "roc_auc": True,
    "balanced_accuracy": True,
    "f1_macro": True,
    "f1_weighted": True,
    "roc_auc_ovr": True,
    "r2": True,
    "log_loss": False,
    "brier": False,
    "mae": False,
    "rmse": False,
}


def higher_is_better(metric: str) -> bool:
    """Direction of a metric; `holdout_x` / `cv_x_mean` follow `x`. Unknown metrics: higher is better."""
    base = metric.removeprefix("holdout_").removeprefix("test_")
    if base.startswith("cv_") and base.endswith("_mean"):
        base = base[3:-5]
    return DIRECTIONS.get(base, True)


def is_better(metric: str, a: float, b: float) -> bool:
    """True when score `a` beats `b` for this metric."""
    return a > b if higher_is_better(metric) else a < b


@dataclass(frozen=True)
class Task:
    """The per-kind choices; see the module docstring."""

    kind: str
    metrics: tuple[str, ...]  # what training reports (CV and holdout); valid selection metrics
    selection_metric: str  # the default one
    default_gates: Mapping[str, float] = field(default_factory=dict)  # absolute gates when none are configured
    compare: tuple[str, ...] = ()  # "no worse than production" metrics
    performance_metrics: tuple[str, ...] = ()  # realised metrics monitoring shows (dashboard columns)
    decay_metric: str = "accuracy"
    ab_outcome: str = "accuracy"  # per labelled request: correct (0/1) or absolute error
    ab_test: str = "beta_binomial"  # beta_binomial (+ z-test) | welch
    calibrated: bool = False  # training calibrates probabilities (CBPE is valid)
    threshold: bool = False  # a decision threshold on the positive-class probability

    @property
    def is_classifier(self) -> bool:
        return self.kind != REGRESSION

    @property
    def cbpe(self) -> bool:
        """Performance can be estimated from probabilities without labels (binary, calibrated)."""
        return self.calibrated

    def splitter(self, folds: int, seed: int, *, grouped: bool = False) -> Any:
        """Stratified folds for classification, plain shuffled folds for regression; `grouped`:
        rows of one group (identical features) stay on one side (`split(X, y, groups)`)."""
        from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

        if grouped:
            if self.is_classifier:
                return StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
            return GroupKFold(folds, shuffle=True, random_state=seed)
        if self.is_classifier:
            return StratifiedKFold(folds, shuffle=True, random_state=seed)
        return KFold(folds, shuffle=True, random_state=seed)

    def check_metric(self, metric: str, what: str = "selection metric") -> str:
        if metric not in self.metrics:

            raise ConfigError(f"{what} {metric!r} is not a {self.kind} metric; known: {', '.join(self.metrics)}")
        return metric


TASKS: dict[str, Task] = {
    BINARY: Task(
        kind=BINARY,
        metrics=("accuracy", "precision", "recall", "f1", "roc_auc", "balanced_accuracy", "log_loss", "brier"),
        selection_metric="roc_auc",
        default_gates={"accuracy": 0.72, "roc_auc": 0.80, "f1": 0.65},
        compare=("f1", "roc_auc"),
        performance_metrics=("accuracy", "precision", "recall", "f1", "roc_auc"),
        decay_metric="accuracy",
        calibrated=True,
        threshold=True,
    ),
    MULTICLASS: Task(
        kind=MULTICLASS,
        metrics=("accuracy", "balanced_accuracy", "f1_macro", "f1_weighted", "log_loss", "roc_auc_ovr"),
        selection_metric="f1_macro",
        compare=("accuracy", "f1_macro"),
        performance_metrics=("accuracy", "f1_macro", "balanced_accuracy"),
        decay_metric="accuracy",
    ),
    REGRESSION: Task(
        kind=REGRESSION,
        metrics=("mae", "rmse", "r2"),
        selection_metric="mae",
        compare=("mae", "rmse"),
        performance_metrics=("mae", "rmse", "bias"),
        decay_metric="mae",
        ab_outcome="abs_error",
        ab_test="welch",
    ),
}


def get_task(kind: str) -> Task:
    try:
        return TASKS[kind]
    except KeyError:
        raise ValueError(f"unknown task {kind!r}; known: {', '.join(TASKS)}") from None


def infer_kind(declared: str, classes: Iterable[Any] | None = None) -> str:
    """The kind of a declared task: `classification` is binary with two classes (or unknown), else multi-class."""
    if declared in KINDS:
        return declared
    if declared == "regression":
        return REGRESSION
    if classes is not None and len(list(classes)) > 2:
        return MULTICLASS
    return BINARY


def task_for(declared: str, classes: Iterable[Any] | None = None, recorded: str | None = None) -> Task:
    """The Task of a model: the kind recorded with its version wins, else inferred from the classes."""
    if recorded in TASKS:
        return TASKS[recorded]  # type: ignore[index]
    return TASKS[infer_kind(declared, classes)]


__all__ = [
    "BINARY",
    "DECLARED",
    "DIRECTIONS",
    "KINDS",
    "MULTICLASS",
    "REGRESSION",
    "TASKS",
    "Task",
    "get_task",
    "higher_is_better",
    "infer_kind",
    "is_better",
    "task_for",
]
