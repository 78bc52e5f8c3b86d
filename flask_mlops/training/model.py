"""The saved model: feature pipeline + estimator, a probability calibrator and the threshold
(binary), the class labels (multi-class), or a regressor.

Calibration is cross-fitted: the calibrator is fitted on the selected candidate's
out-of-fold probabilities from cross-validation (never on the holdout), then applied to
the pipeline refitted on the whole training split, like scikit-learn's
`CalibratedClassifierCV(ensemble=False)` but without extra fits. Both calibrations keep
the ranking: isotonic is monotone, and the sigmoid's slope is constrained positive. Calibrated probabilities
matter downstream: performance estimation without labels (CBPE) assumes them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

CALIBRATIONS = ("sigmoid", "isotonic", "none")
_EPS = 1e-6
#: Platt scaling's slope is constrained to at least this: a calibrator must never invert
#: the ranking (on out-of-fold scores with no signal, half the folds would get a negative
#: slope, and the "calibrated" AUC would rise above chance)
MIN_SLOPE = 1e-3


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _intercept_given_slope(x: np.ndarray, y: np.ndarray, slope: float) -> float:
    """Maximum-likelihood intercept of a logistic model with a fixed slope (Newton steps)."""
    rate = float(np.clip(np.mean(y), _EPS, 1 - _EPS)) if y.size else 0.5
    b = math.log(rate / (1 - rate)) - slope * float(np.mean(x)) if x.size else 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(slope * x + b)))
        grad = float(np.sum(p - y))
        hess = float(np.sum(p * (1 - p)))
        if hess <= 0 or abs(grad) < 1e-10:
            break
        b -= grad / hess
    return b


class Calibrator:
    """Maps raw positive-class scores to calibrated probabilities (sigmoid, isotonic or identity)."""

    def __init__(self, method: str = "sigmoid") -> None:
        if method not in CALIBRATIONS:
            raise ValueError(f"unknown calibration {method!r}; known: {', '.join(CALIBRATIONS)}")
        self.method = method
        self.a_ = 1.0
        self.b_ = 0.0
        self.iso_: Any = None

    def fit(self, proba: np.ndarray, y: np.ndarray) -> Calibrator:
        if self.method == "sigmoid":
            from sklearn.linear_model import LogisticRegression

            x = _logit(proba)
            target = np.asarray(y).astype(int)
            lr = LogisticRegression(C=1e4, max_iter=1000)
            lr.fit(x.reshape(-1, 1), target)
            self.a_, self.b_ = float(lr.coef_[0, 0]), float(lr.intercept_[0])
            if self.a_ < MIN_SLOPE:
                # The slope's constrained optimum is on the boundary: a score that carries no
                # (or inverted) signal on these folds gets the base rate, its order kept.
                self.a_, self.b_ = MIN_SLOPE, _intercept_given_slope(x, target, MIN_SLOPE)
        elif self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            self.iso_ = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
            self.iso_.fit(np.asarray(proba, dtype=float), np.asarray(y, dtype=float))
        return self

    def transform(self, proba: np.ndarray) -> np.ndarray:
        proba = np.asarray(proba, dtype=float)
        if self.method == "sigmoid":
            # clipped: on separable data the fitted slope is huge and exp() would overflow
            return 1.0 / (1.0 + np.exp(-np.clip(self.a_ * _logit(proba) + self.b_, -500.0, 500.0)))
        if self.method == "isotonic":
            return np.asarray(self.iso_.predict(proba), dtype=float)
        return proba


class TrainedModel(ClassifierMixin, BaseEstimator):
    """What serving loads for a classifier: `predict_proba(X)` and `predict(X)`.

    Binary (`classes` None): calibrated positive-class probabilities, labels 0/1 at `threshold`.
    Multi-class: the pipeline was fitted on labels encoded 0..K-1; `classes` holds the
    original labels in that order and `predict` answers the most probable one.
    `X` is a numpy 2-D array (or one row) of raw features in `feature_names` order.
    """

    classes: tuple[Any, ...] | None = None  # models pickled before multi-class support load as binary

    def __init__(
        self,
        pipeline: Any = None,
        calibrator: Calibrator | None = None,
        threshold: float | None = 0.5,
        feature_names: tuple[str, ...] = (),
        candidate: str = "",
        classes: tuple[Any, ...] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.calibrator = calibrator
        self.threshold = threshold
        self.feature_names = feature_names
        self.candidate = candidate
        self.classes = classes

    @property
    def classes_(self) -> np.ndarray:
        return np.array([0, 1]) if self.classes is None else np.asarray(self.classes)

    @property
    def n_features_in_(self) -> int:
        return len(self.feature_names)

    def __sklearn_is_fitted__(self) -> bool:
        return self.pipeline is not None

    def fit(self, X: Any, y: Any) -> TrainedModel:  # pragma: no cover - built by run_training
        raise TypeError("a TrainedModel is assembled by flask_mlops.training.run_training, not refitted")

    def raw_proba(self, X: Any) -> np.ndarray:
        """Uncalibrated positive-class score of the underlying estimator."""
        return np.asarray(self.pipeline.predict_proba(_rows(X))[:, 1], dtype=float)

    def predict_proba(self, X: Any) -> np.ndarray:
        if self.classes is not None:
            return np.asarray(self.pipeline.predict_proba(_rows(X)), dtype=float)
        raw = self.raw_proba(X)
        p = self.calibrator.transform(raw) if self.calibrator is not None else raw
        p = np.clip(p, 0.0, 1.0)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        proba = self.predict_proba(X)
        if self.classes is not None:
            return np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)]
        return (proba[:, 1] >= (0.5 if self.threshold is None else self.threshold)).astype(int)


class TrainedRegressor(RegressorMixin, BaseEstimator):
    """What serving loads for a regression model: `predict(X)` on raw feature rows."""

    def __init__(self, pipeline: Any = None, feature_names: tuple[str, ...] = (), candidate: str = "") -> None:
        self.pipeline = pipeline
        self.feature_names = feature_names
        self.candidate = candidate

    @property
    def n_features_in_(self) -> int:
        return len(self.feature_names)

    def __sklearn_is_fitted__(self) -> bool:
        return self.pipeline is not None

    def fit(self, X: Any, y: Any) -> TrainedRegressor:  # pragma: no cover - built by run_training
        raise TypeError("a TrainedRegressor is assembled by flask_mlops.training.run_training, not refitted")

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.pipeline.predict(_rows(X)), dtype=float)


def _rows(X: Any) -> np.ndarray:
    X = np.asarray(X, dtype=object if _has_object(X) else float)
    return X.reshape(1, -1) if X.ndim == 1 else X


def _has_object(X: Any) -> bool:
    dtype = getattr(X, "dtype", None)
    if dtype is not None:
        return bool(dtype.kind == "O")
    return any(isinstance(v, str) for row in np.atleast_2d(np.asarray(X, dtype=object)) for v in row)


TRUSTED_PREFIXES = ("flask_mlops.", "sklearn.", "xgboost.", "numpy.", "scipy.")


def skops_trusted_types(estimator: Any) -> list[str]:
    """Types MLflow's skops serialisation must be told to trust for this estimator.

    MLflow (3.x) saves scikit-learn models with skops, which refuses types it does not know;
    ours and those of the libraries the candidates use are trusted, nothing else.
    """
    try:
        import skops.io as sio
    except ImportError:
        return []
    found = sio.get_untrusted_types(data=sio.dumps(estimator))
    return [t for t in found if t.startswith(TRUSTED_PREFIXES)]
