"""Model performance: realised metrics from labelled feedback, decay, CBPE estimates, operations.

Pure functions over numpy arrays that return dataclasses (no Flask, no database):

* `classification_metrics` (binary) / `multiclass_metrics` / `regression_metrics` on labelled predictions;
* `decay`: relative drop of a metric against the version's training-time baseline,
  graded by ``decay_thresholds`` (2 / 5 / 10 %) once it is larger than the sampling
  error of both the baseline (holdout rows) and the window (labelled rows) explains;
* `estimate_performance`: confidence-based performance estimation (CBPE, as NannyML
  does) for windows whose labels have not arrived. With *calibrated* probabilities p,
  a positive prediction is right with probability p and a negative one with 1 - p, so
  the expected confusion matrix — and accuracy, precision, recall, F1 and ROC-AUC —
  follow from the probabilities alone. This is only as good as the calibration:
  training calibrates its models (isotonic / Platt with a positive slope) for that
  reason. CBPE cannot see concept shift: when p(y|x) changes but the inputs do not, the
  probabilities — and so the estimate — stay where they were; only labels show it;
* `operational_metrics`: volume, error rate, latency percentiles, graded by
  ``error_rate_thresholds`` and ``latency_p95_thresholds_ms``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..jsonable import jsonable
from .aggregates import latency_quantiles
from .drift import grade

Levels = Sequence[float]


def _to_dict(obj: Any) -> dict[str, Any]:
    return dict(jsonable(asdict(obj)))


def _positive(values: Any, positive: Any) -> np.ndarray:
    """Booleans: is each value the positive label (compared as numbers or as text)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "fiub":
        try:
            return arr.astype(float) == float(positive)
        except (TypeError, ValueError):
            return arr.astype(str) == str(positive)
    text = np.asarray([str(v) for v in arr.tolist()], dtype=object)
    options = {str(positive)}
    with contextlib.suppress(TypeError, ValueError):  # a non-numeric label matches as text only
        number = float(positive)
        options |= {str(int(number)) if number.is_integer() else str(number), repr(number)}
    return np.isin(text, list(options))


def roc_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann–Whitney, ties averaged); None with one class only."""
    from scipy.stats import rankdata

    y = np.asarray(y, dtype=bool)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(np.asarray(score, dtype=float))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@dataclass
class ClassificationMetrics:
    n_labelled: int
    accuracy: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    roc_auc: float | None
    positive_rate: float | None

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


def _confusion_scores(tp: float, fp: float, fn: float, tn: float) -> tuple[float | None, float | None, float | None, float | None]:
    n = tp + fp + fn + tn
    accuracy = (tp + tn) / n if n else None
    precision = tp / (tp + fp) if tp + fp else 0.0 if n else None
    recall = tp / (tp + fn) if tp + fn else 0.0 if n else None
    f1 = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0 if n else None
    return accuracy, precision, recall, f1


def classification_metrics(y_true: Any, y_pred: Any, probability: Any = None, *, positive: Any = 1) -> ClassificationMetrics:
    """Accuracy, precision, recall, F1 (for `positive`) and ROC-AUC (when probabilities are given)."""
    truth = _positive(y_true, positive)
    pred = _positive(y_pred, positive)
    if truth.size != pred.size:
        raise ValueError("y_true and y_pred differ in length")
    tp = float(np.sum(truth & pred))
    fp = float(np.sum(~truth & pred))
    fn = float(np.sum(truth & ~pred))
    tn = float(np.sum(~truth & ~pred))
    accuracy, precision, recall, f1 = _confusion_scores(tp, fp, fn, tn)
    auc = None
    if probability is not None and truth.size:
        proba = np.asarray(probability, dtype=float)
        known = np.isfinite(proba)
        auc = roc_auc(truth[known], proba[known]) if known.any() else None
    return ClassificationMetrics(int(truth.size), accuracy, precision, recall, f1, auc, float(truth.mean()) if truth.size else None)


@dataclass
class MulticlassMetrics:
    n_labelled: int
    accuracy: float | None
    f1_macro: float | None
    balanced_accuracy: float | None

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


def multiclass_metrics(y_true: Any, y_pred: Any) -> MulticlassMetrics:
    """Accuracy, macro F1 (over the classes seen in labels or predictions) and balanced accuracy.

    Labels and predictions are compared as text with integral numbers as integers, so 1, 1.0
    and "1" are one class.
    """
    truth = np.asarray([_class_text(v) for v in np.asarray(y_true, dtype=object).tolist()], dtype=object)
    pred = np.asarray([_class_text(v) for v in np.asarray(y_pred, dtype=object).tolist()], dtype=object)
    if truth.size != pred.size:
        raise ValueError("y_true and y_pred differ in length")
    if truth.size == 0:
        return MulticlassMetrics(0, None, None, None)
    f1s, recalls = [], []
    for c in sorted(set(truth.tolist()) | set(pred.tolist())):
        tp = float(np.sum((truth == c) & (pred == c)))
        fp = float(np.sum((truth != c) & (pred == c)))
        fn = float(np.sum((truth == c) & (pred != c)))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
        if tp + fn:
            recalls.append(tp / (tp + fn))
    return MulticlassMetrics(int(truth.size), float(np.mean(truth == pred)), float(np.mean(f1s)), float(np.mean(recalls)) if recalls else None)


def _class_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass
class RegressionMetrics:
    n_labelled: int
    mae: float | None
    rmse: float | None
    bias: float | None

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


def regression_metrics(y_true: Any, y_pred: Any) -> RegressionMetrics:
    """Mean absolute error, root mean squared error and mean error (prediction - truth)."""
    truth = np.asarray(y_true, dtype=float)
    pred = np.asarray(y_pred, dtype=float)
    if truth.size == 0:
        return RegressionMetrics(0, None, None, None)
    err = pred - truth
    return RegressionMetrics(int(truth.size), float(np.mean(np.abs(err))), float(np.sqrt(np.mean(err**2))), float(np.mean(err)))


#: metrics where a larger value is worse (their "drop" is a rise)
LOWER_IS_BETTER = frozenset({"mae", "rmse", "log_loss", "brier"})


@dataclass
class Decay:
    metric: str
    baseline: float | None
    current: float | None
    relative_drop: float | None
    level: str
    n_baseline: int | None = None
    n_current: int | None = None
    #: the smallest relative drop sampling error of both baseline and window cannot explain
    min_detectable_drop: float | None = None
    #: two-sided (1 - 2 alpha) interval of the relative drop
    interval: tuple[float, float] | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = _to_dict(self)
        out["interval"] = None if self.interval is None else jsonable(list(self.interval))
        return out


#: sd of |e| / mean |e| for normal errors (half-normal): the MAE's spread when only the MAE is known
_HALF_NORMAL_CV = math.sqrt(math.pi / 2.0 - 1.0)


def _standard_error(metric: str, value: float, n: int) -> float | None:
    """Sampling standard error of `metric` measured on `n` rows (None where unknown)."""
    if n <= 0:
        return None
    if metric in ("accuracy", "precision", "recall", "balanced_accuracy", "positive_rate"):
        p = min(max(value, 0.0), 1.0)
        # a measured 1.0 or 0.0 still has error: use the rule-of-three bound on the unseen rate
        p = min(max(p, 1.5 / n), 1.0 - 1.5 / n) if n > 3 else 0.5
        return math.sqrt(p * (1.0 - p) / n)
    if metric == "mae":
        return abs(value) * _HALF_NORMAL_CV / math.sqrt(n)
    return None


def decay(
    metric: str,
    current: float | None,
    baseline: float | None,
    thresholds: Levels = (0.02, 0.05, 0.10),
    *,
    n_current: int | None = None,
    n_baseline: int | None = None,
    alpha: float = 0.005,
) -> Decay:
    """Relative drop of `current` from `baseline` (a rise, for error metrics), graded by `thresholds`.

    With the row counts behind both numbers, a level is raised only for a drop larger
    than sampling error explains: past its threshold *and* past the minimum detectable
    drop z(1 - alpha) * sqrt(se_baseline^2 + se_current^2) / baseline (one-sided). A
    baseline measured on a 154-row holdout cannot show a drop under ~10 % at any label
    count; that is the honest answer, not a missed decay. Without counts, no guard.
    """
    if current is None or baseline is None or not math.isfinite(current) or not baseline:
        return Decay(metric, baseline, current, None, "ok", n_baseline, n_current)
    if metric in LOWER_IS_BETTER:
        drop = (current - baseline) / abs(baseline)
    else:
        drop = (baseline - current) / abs(baseline)
    se_b = _standard_error(metric, baseline, n_baseline) if n_baseline else None
    se_c = _standard_error(metric, current, n_current) if n_current else None
    if se_b is None or se_c is None:
        note = "sampling error not judged (row counts of baseline or window unknown)"
        return Decay(metric, baseline, current, drop, grade(drop, tuple(thresholds)), n_baseline, n_current, note=note)  # type: ignore[arg-type]
    from scipy.stats import norm

    z = float(norm.isf(alpha))
    se = math.sqrt(se_b**2 + se_c**2) / abs(baseline)
    mdd = z * se
    level = grade(drop, tuple(max(t, mdd) for t in thresholds))  # type: ignore[arg-type]
    note = "" if level != "ok" or drop < thresholds[0] else f"a {drop:.1%} drop is within sampling error (detectable from {mdd:.1%})"
    return Decay(metric, baseline, current, drop, level, n_baseline, n_current, mdd, (drop - z * se, drop + z * se), note)


def baseline_rows(metrics: Mapping[str, Any]) -> int | None:
    """Rows the version's baseline metrics were measured on (its holdout), when recorded."""
    for key in ("n", "holdout_n"):
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return int(value)
    return None


def rolling_mean(values: Any, window: int) -> np.ndarray:
    """Mean of the last `window` values at each position (fewer at the start): rolling accuracy."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return x
    csum = np.concatenate(([0.0], np.cumsum(x)))
    idx = np.arange(1, x.size + 1)
    start = np.maximum(idx - window, 0)
    return (csum[idx] - csum[start]) / (idx - start)


@dataclass
class EstimatedMetrics:
    """Expected metrics of unlabelled predictions from calibrated probabilities (CBPE)."""

    n: int
    threshold: float
    accuracy: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    roc_auc: float | None
    method: str = "cbpe"

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


def estimate_performance(probability: Any, threshold: float = 0.5) -> EstimatedMetrics:
    """CBPE: the expected confusion matrix under calibrated probabilities, and its metrics.

    For predictions ``p >= threshold``: expected TP = sum(p), FP = sum(1 - p); below it
    FN = sum(p), TN = sum(1 - p). ROC-AUC: the expected ROC curve, each score ranked by
    itself, with expected TPR/FPR from the cumulative p and 1 - p.
    """
    p = np.asarray(probability, dtype=float)
    p = p[np.isfinite(p)]
    if p.size == 0:
        return EstimatedMetrics(0, threshold, None, None, None, None, None)
    p = np.clip(p, 0.0, 1.0)
    positive = p >= threshold
    tp = float(p[positive].sum())
    fp = float((1 - p[positive]).sum())
    fn = float(p[~positive].sum())
    tn = float((1 - p[~positive]).sum())
    accuracy, precision, recall, f1 = _confusion_scores(tp, fp, fn, tn)
    order = np.argsort(-p, kind="stable")
    ps = p[order]
    # group tied scores so a tie contributes a diagonal segment, as for realised ROC
    last_of_tie = np.r_[ps[1:] != ps[:-1], True]
    tps = np.cumsum(ps)[last_of_tie]
    fps = np.cumsum(1 - ps)[last_of_tie]
    total_p, total_n = tps[-1], fps[-1]
    auc = None
    if total_p > 0 and total_n > 0:
        tpr = np.r_[0.0, tps / total_p]
        fpr = np.r_[0.0, fps / total_n]
        auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
    return EstimatedMetrics(int(p.size), threshold, accuracy, precision, recall, f1, auc)


@dataclass
class OperationalMetrics:
    n_requests: int
    n_errors: int
    error_rate: float | None
    client_error_rate: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    latency_mean_ms: float | None
    requests_per_hour: float | None
    error_level: str
    latency_level: str

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


def operational_metrics(
    status: Any,
    latency_ms: Any,
    ts: Any = None,
    *,
    error_thresholds: Levels = (0.01, 0.05, 0.10),
    latency_thresholds: Levels = (200.0, 500.0, 1000.0),
) -> OperationalMetrics:
    """Volume, error rate (5xx; 4xx reported apart as client errors), latency percentiles, levels.

    `ts` (datetime64 or epoch seconds) gives the request rate over the covered span.
    """
    codes = np.asarray(status, dtype=float)
    lat = np.asarray(latency_ms, dtype=float)
    n = int(codes.size)
    if n == 0:
        return OperationalMetrics(0, 0, None, None, None, None, None, None, None, "ok", "ok")
    errors = int(np.sum(codes >= 500))
    client = int(np.sum((codes >= 400) & (codes < 500)))
    known = lat[np.isfinite(lat)]
    p50 = p95 = p99 = mean = None
    if known.size:
        p50, p95, p99 = (float(v) for v in np.percentile(known, [50, 95, 99]))
        mean = float(known.mean())
    rate = None
    if ts is not None and n > 1:
        stamps = np.asarray(ts)
        seconds = stamps.astype("datetime64[us]").astype(np.int64) / 1e6 if stamps.dtype.kind == "M" else stamps.astype(float)
        span = float(seconds.max() - seconds.min())
        rate = n / span * 3600.0 if span > 0 else None
    error_rate = errors / n
    return OperationalMetrics(
        n,
        errors,
        error_rate,
        client / n,
        p50,
        p95,
        p99,
        mean,
        rate,
        grade(error_rate, tuple(error_thresholds)),  # type: ignore[arg-type]
        grade(p95, tuple(latency_thresholds)),  # type: ignore[arg-type]
    )


def operational_from_counts(
    status: Mapping[int, int],
    latency_hist: Any,
    latency_sum: float,
    span_s: float | None,
    *,
    error_thresholds: Levels = (0.01, 0.05, 0.10),
    latency_thresholds: Levels = (200.0, 500.0, 1000.0),
) -> OperationalMetrics:
    """`operational_metrics` from hourly aggregates: status counts, the latency histogram
    (`aggregates.LATENCY_EDGES_MS`, quantiles within a bucket) and the covered span."""
    n = int(sum(status.values()))
    if n == 0:
        return OperationalMetrics(0, 0, None, None, None, None, None, None, None, "ok", "ok")
    errors = sum(c for code, c in status.items() if code >= 500)
    client = sum(c for code, c in status.items() if 400 <= code < 500)
    hist = np.asarray(latency_hist, dtype=np.int64)
    known = int(hist[:-1].sum())
    p50, p95, p99 = latency_quantiles(hist, (50, 95, 99))
    mean = latency_sum / known if known else None
    rate = n / span_s * 3600.0 if span_s and n > 1 else None
    error_rate = errors / n
    return OperationalMetrics(
        n, errors, error_rate, client / n, p50, p95, p99, mean, rate,
        grade(error_rate, tuple(error_thresholds)),  # type: ignore[arg-type]
        grade(p95, tuple(latency_thresholds)),  # type: ignore[arg-type]
    )


def group_indices(keys: Any) -> dict[str, np.ndarray]:
    """Row indices per key (model version, A/B variant); `None` keys are grouped under "none".

    Accepts a plain sequence or a coded column (`codes` + `categories`).
    """
    codes = getattr(keys, "codes", None)
    if codes is not None:
        categories = list(keys.categories)
        labels = np.asarray([*categories, "none"], dtype=object)[np.where(codes < 0, len(categories), codes)]
    else:
        labels = np.asarray(["none" if k is None else str(k) for k in np.asarray(keys, dtype=object).tolist()], dtype=object)
    out: dict[str, np.ndarray] = {}
    if labels.size == 0:
        return out
    uniq, inverse = np.unique(labels.astype(str), return_inverse=True)
    for i, key in enumerate(uniq.tolist()):
        out[key] = np.flatnonzero(inverse == i)
    return out


Realised = ClassificationMetrics | MulticlassMetrics | RegressionMetrics


def realised_metrics(task: str, y_true: Any, y_pred: Any, probability: Any = None, *, positive: Any = 1) -> Realised:
    """The task's realised metrics on labelled predictions: regression, multiclass, else binary."""
    if task == "regression":
        return regression_metrics(y_true, y_pred)
    if task == "multiclass":
        return multiclass_metrics(y_true, y_pred)
    return classification_metrics(y_true, y_pred, probability, positive=positive)


def metrics_by_group(
    keys: Any, y_true: Any, y_pred: Any, probability: Any = None, *, task: str = "classification", positive: Any = 1
) -> Mapping[str, Realised]:
    """Realised metrics per model version or variant."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    proba = None if probability is None else np.asarray(probability, dtype=float)
    return {
        key: realised_metrics(task, y_true[idx], y_pred[idx], None if proba is None else proba[idx], positive=positive)
        for key, idx in group_indices(keys).items()
    }


__all__ = [
    "ClassificationMetrics",
    "MulticlassMetrics",
    "Decay",
    "EstimatedMetrics",
    "OperationalMetrics",
    "RegressionMetrics",
    "classification_metrics",
    "baseline_rows",
    "decay",
    "estimate_performance",
    "group_indices",
    "metrics_by_group",
    "multiclass_metrics",
    "operational_metrics",
    "realised_metrics",
    "regression_metrics",
    "roc_auc",
    "rolling_mean",
]
