"""Training metrics per task: binary (at a decision threshold, and the choice of that threshold),
multi-class (from class probabilities) and regression."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..tasks import is_better as better

# name -> True when larger is better; every name is a valid `selection_metric`.
METRICS: dict[str, bool] = {
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "roc_auc": True,
    "balanced_accuracy": True,
    "log_loss": False,
    "brier": False,
}
THRESHOLD_OBJECTIVES = ("f1", "accuracy", "balanced_accuracy")
_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)


def binary_metrics(y: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, float]:
    """Every metric in METRICS for labels 0/1 and positive-class probabilities."""
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        brier_score_loss,
        f1_score,
        log_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y = np.asarray(y).astype(int)
    proba = np.clip(np.asarray(proba, dtype=float), 1e-7, 1 - 1e-7)
    pred = (proba >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, proba)) if both else float("nan"),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if both else float("nan"),
        "log_loss": float(log_loss(y, proba, labels=[0, 1])),
        "brier": float(brier_score_loss(y, proba)),
    }


def confusion(y: np.ndarray, proba: np.ndarray, threshold: float) -> list[list[int]]:
    """[[tn, fp], [fn, tp]] at the threshold."""
    y = np.asarray(y).astype(int)
    pred = (np.asarray(proba) >= threshold).astype(int)
    return [
        [int(((y == 0) & (pred == 0)).sum()), int(((y == 0) & (pred == 1)).sum())],
        [int(((y == 1) & (pred == 0)).sum()), int(((y == 1) & (pred == 1)).sum())],
    ]


def best_threshold(y: np.ndarray, proba: np.ndarray, objective: str = "f1") -> float:
    """The grid threshold (0.05..0.95 by 0.01) that maximises `objective` on these predictions.

    A coarse grid instead of every distinct score keeps the choice stable on small data;
    ties resolve to the threshold closest to 0.5.
    """
    if objective not in THRESHOLD_OBJECTIVES:
        raise ValueError(f"unknown threshold objective {objective!r}; known: {', '.join(THRESHOLD_OBJECTIVES)}")
    y = np.asarray(y).astype(int)
    proba = np.asarray(proba, dtype=float)
    pred = proba[None, :] >= _GRID[:, None]
    pos = y[None, :] == 1
    tp = (pred & pos).sum(axis=1).astype(float)
    fp = (pred & ~pos).sum(axis=1).astype(float)
    fn = (~pred & pos).sum(axis=1).astype(float)
    tn = (~pred & ~pos).sum(axis=1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if objective == "f1":
            score = np.nan_to_num(2 * tp / (2 * tp + fp + fn))
        elif objective == "accuracy":
            score = (tp + tn) / len(y)
        else:
            score = 0.5 * (np.nan_to_num(tp / (tp + fn)) + np.nan_to_num(tn / (tn + fp)))
    best = np.flatnonzero(np.isclose(score, score.max()))
    return float(_GRID[best[np.argmin(np.abs(_GRID[best] - 0.5))]])


def summarize(per_fold: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """metric -> {"mean", "std"} over folds (population std, like scikit-learn's cv reports)."""
    out: dict[str, dict[str, float]] = {}
    for name in per_fold[0]:
        values = np.array([fold[name] for fold in per_fold], dtype=float)
        out[name] = {"mean": float(np.nanmean(values)), "std": float(np.nanstd(values))}
    return out


def multiclass_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Every multi-class metric for labels encoded 0..K-1 and a (n, K) probability matrix."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, log_loss, roc_auc_score

    y = np.asarray(y).astype(int)
    proba = np.asarray(proba, dtype=float)
    k = proba.shape[1]
    pred = proba.argmax(axis=1)
    clipped = np.clip(proba, 1e-7, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    all_present = len(np.unique(y)) == k
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "f1_macro": float(f1_score(y, pred, average="macro", labels=list(range(k)), zero_division=0)),
        "f1_weighted": float(f1_score(y, pred, average="weighted", labels=list(range(k)), zero_division=0)),
        "log_loss": float(log_loss(y, clipped, labels=list(range(k)))),
        "roc_auc_ovr": float(roc_auc_score(y, clipped, multi_class="ovr", labels=list(range(k)))) if all_present else float("nan"),
    }


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R² of predictions."""
    y = np.asarray(y, dtype=float)
    err = np.asarray(pred, dtype=float) - y
    ss_tot = float(np.sum((y - y.mean()) ** 2)) if y.size else 0.0
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "r2": 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else float("nan"),
    }


def is_better(metric: str, a: float, b: float) -> bool:
    """True when score `a` beats `b` for this metric (lower is better for losses and errors)."""
    return better(metric, a, b)


def score_estimator(kind: str, estimator: Any, X: np.ndarray, y: np.ndarray, *, threshold: float | None = None, positive: Any = 1) -> dict[str, float]:
    """Metrics of any fitted estimator (ours or the user's) on labelled rows, for its task kind.

    Labels are matched to `estimator.classes_` as text, so 1, 1.0 and "1" agree; rows whose
    label the model does not know are left out of the multi-class metrics.
    """
    if kind == "regression":
        return regression_metrics(np.asarray(y, dtype=float), np.asarray(estimator.predict(X), dtype=float))
    proba = np.asarray(estimator.predict_proba(X), dtype=float)
    classes = [_text(c) for c in getattr(estimator, "classes_", range(proba.shape[1]))]
    labels = [_text(v) for v in np.asarray(y, dtype=object).tolist()]
    if kind == "binary":
        pos = classes.index(_text(positive)) if _text(positive) in classes else len(classes) - 1
        y01 = np.array([label == classes[pos] for label in labels], dtype=int)
        return binary_metrics(y01, proba[:, pos], 0.5 if threshold is None else float(threshold))
    index = {c: i for i, c in enumerate(classes)}
    known = np.array([label in index for label in labels], dtype=bool)
    encoded = np.array([index[label] for label in labels if label in index], dtype=int)
    return multiclass_metrics(encoded, proba[known])


def _text(value: Any) -> str:
    """A label as text, with integral floats as integers (1.0 -> "1")."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
