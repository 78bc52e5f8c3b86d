"""A lean single-row path for a served binary classifier: the fitted steps evaluated directly in numpy.

scikit-learn's `predict_proba` on one row spends most of its time in per-call machinery
(input validation, feature-name checks, configuration contexts) around a few microseconds of
arithmetic. For the steps we know — StandardScaler, SimpleImputer, our FeatureEngineer,
then LogisticRegression, MLPClassifier or XGBoost — `compile_row` builds a function from a
1-D float row to the positive class's probability from the fitted parameters. It is trusted
only after `verify` found it equal to the original estimator on rows drawn from the
version's reference profile; anything else (another step, a mismatch) keeps the original,
with the reason logged. Pure numpy: no scikit-learn import here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

Row = Callable[[np.ndarray], float]
Step = Callable[[np.ndarray], np.ndarray]

_ACTIVATIONS: dict[str, Step] = {
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "logistic": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "identity": lambda z: z,
}


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _transform(step: Any) -> Step | None:
    kind = type(step).__name__
    if kind == "StandardScaler":
        mean = getattr(step, "mean_", None) if step.with_mean else None
        scale = getattr(step, "scale_", None) if step.with_std else None
        mean = None if mean is None else np.asarray(mean, dtype=float)
        scale = None if scale is None else np.asarray(scale, dtype=float)

        def scaler(x: np.ndarray) -> np.ndarray:
            if mean is not None:
                x = x - mean
            return x / scale if scale is not None else x

        return scaler
    if kind == "SimpleImputer":
        stats = np.asarray(getattr(step, "statistics_", []), dtype=float)
        missing = step.missing_values
        if step.add_indicator or not (isinstance(missing, float) and math.isnan(missing)) or np.isnan(stats).any():
            return None
        return lambda x: np.where(np.isnan(x), stats, x)
    if kind == "FeatureEngineer" and not getattr(step, "categories_", None):
        return lambda x: step.transform(x.reshape(1, -1))[0]  # our own numpy code, no validation layers
    return None


def _final(model: Any) -> Row | None:
    kind = type(model).__name__
    classes = getattr(model, "classes_", None)
    if classes is None or len(classes) != 2:
        return None
    if kind == "LogisticRegression" and np.asarray(model.coef_).shape[0] == 1:
        w = np.asarray(model.coef_[0], dtype=float)
        b = float(model.intercept_[0])
        return lambda x: _sigmoid(float(x @ w) + b)
    if kind == "MLPClassifier" and getattr(model, "out_activation_", None) == "logistic" and model.activation in _ACTIVATIONS:
        act = _ACTIVATIONS[model.activation]
        layers = [(np.asarray(w, dtype=float), np.asarray(b, dtype=float)) for w, b in zip(model.coefs_, model.intercepts_, strict=True)]
        hidden, (w_out, b_out) = layers[:-1], layers[-1]

        def mlp(x: np.ndarray) -> float:
            for w, b in hidden:
                x = act(x @ w + b)
            return _sigmoid(float((x @ w_out + b_out)[0]))

        return mlp
    if kind == "XGBClassifier" and getattr(model, "objective", None) in (None, "binary:logistic"):
        booster = model.get_booster()
        return lambda x: float(booster.inplace_predict(x.reshape(1, -1), validate_features=False)[0])
    return None


def compile_row(estimator: Any) -> tuple[Row | None, str]:
    """(row function, "") for a supported binary pipeline, else (None, why not)."""
    steps = [s for _, s in estimator.steps] if type(estimator).__name__ == "Pipeline" else [estimator]
    transforms: list[Step] = []
    for step in steps[:-1]:
        if step is None or step == "passthrough":
            continue
        fn = _transform(step)
        if fn is None:
            return None, f"step {type(step).__name__} has no lean form"
        transforms.append(fn)
    final = _final(steps[-1])
    if final is None:
        return None, f"final estimator {type(steps[-1]).__name__} has no lean form"

    def run(x: np.ndarray) -> float:
        for fn in transforms:
            x = fn(x)
        return final(x)

    return run, ""


def reference_rows(profile: Mapping[str, Any] | None, names: Sequence[str], n: int = 256, seed: int = 0) -> np.ndarray | None:
    """Rows drawn from each feature's reference sample (numeric features only; None without a profile)."""
    features = (profile or {}).get("features") or {}
    rng = np.random.default_rng(seed)
    columns = []
    for name in names:
        sample = (features.get(name) or {}).get("sample")
        if features.get(name, {}).get("type", "numeric") != "numeric" or not sample:
            return None
        columns.append(rng.choice(np.asarray(sample, dtype=float), size=n))
    return np.column_stack(columns) if columns else None


def verify(run: Row, estimator: Any, rows: np.ndarray, threshold: float) -> str:
    """"" when the lean path equals `predict_proba` on every row (and so every label at `threshold`), else why not."""
    expected = np.asarray(estimator.predict_proba(rows), dtype=float)[:, -1]
    got = np.asarray([run(row) for row in rows], dtype=float)
    if not np.allclose(got, expected, rtol=1e-6, atol=1e-9):
        worst = int(np.nanargmax(np.abs(got - expected)))
        return f"differs from predict_proba on the reference rows (row {worst}: {got[worst]!r} vs {expected[worst]!r})"
    if ((got >= threshold) != (expected >= threshold)).any():
        return "a label differs at the decision threshold"
    return ""


__all__ = ["compile_row", "reference_rows", "verify"]
