"""Training data from a CSV: the declared features as a numpy matrix, the target per task."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..errors import ConfigError, MLOpsError
from ..specs import ModelSpec


def load_training_data(
    spec: ModelSpec, csv_path: str | Path | None = None, target: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read `csv_path` (default `spec.data`): X in `spec.feature_names` order, y.

    Numeric features become floats (empty cells NaN); categorical features stay strings
    (X is then an object array). For binary classification y is 1 where the target equals
    `spec.positive_label` and 0 elsewhere; multi-class labels (more than two values) are kept
    as written; rows without a target are dropped.
    """
    import pandas as pd

    path = csv_path if csv_path is not None else spec.data
    target = target or spec.target
    if path is None:
        raise ConfigError(f"model {spec.name!r}: no training data (set 'data' in MLOPS_MODELS or pass a CSV path)")
    if not target:
        raise ConfigError(f"model {spec.name!r}: no target column (set 'target' in MLOPS_MODELS)")
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise MLOpsError(f"cannot read training data {str(path)!r}: {exc}") from exc
    missing = [c for c in [*spec.feature_names, target] if c not in frame.columns]
    if missing:
        raise MLOpsError(
            f"training data {str(path)!r} lacks column(s) {missing}",
            details={"missing": missing, "columns": list(frame.columns)},
        )
    frame = frame[frame[target].notna()]
    return frame_to_xy(spec, frame, target)


def frame_to_xy(spec: ModelSpec, frame: object, target: str) -> tuple[np.ndarray, np.ndarray]:
    """A pandas DataFrame with the feature and target columns -> (X, y)."""
    import pandas as pd

    assert isinstance(frame, pd.DataFrame)
    has_cat = any(f.type == "categorical" for f in spec.features)
    cols = []
    for f in spec.features:
        col = frame[f.name]
        if f.type == "numeric":
            cols.append(pd.to_numeric(col, errors="coerce").to_numpy(dtype=float))
        else:
            cols.append(np.array([None if pd.isna(v) else str(v) for v in col], dtype=object))
    X = np.column_stack(cols).astype(object if has_cat else float) if cols else np.zeros((len(frame), 0))
    raw_y = frame[target]
    if spec.task == "multiclass" or (spec.task == "classification" and raw_y.nunique() > 2):
        numeric_y = pd.to_numeric(raw_y, errors="coerce")
        if numeric_y.notna().all() and bool((numeric_y == numeric_y.round()).all()):
            y = numeric_y.to_numpy().astype(int)  # class labels as written: 0, 1, 2
        else:
            y = raw_y.astype(str).str.strip().to_numpy().astype(object)
    elif spec.task in ("classification", "binary"):
        numeric_y = pd.to_numeric(raw_y, errors="coerce")
        try:
            positive = float(spec.positive_label)
        except (TypeError, ValueError):
            positive = None
        if positive is not None and numeric_y.notna().all():
            y = (numeric_y.to_numpy(dtype=float) == positive).astype(int)
        else:
            y = (raw_y.astype(str).str.strip() == str(spec.positive_label)).to_numpy().astype(int)
        if y.min(initial=1) == y.max(initial=0):
            raise MLOpsError(
                f"model {spec.name!r}: the target {target!r} has a single class with positive_label "
                f"{spec.positive_label!r}; values seen: {sorted(map(str, raw_y.unique()))[:10]}"
            )
    else:
        y = pd.to_numeric(raw_y, errors="coerce").to_numpy(dtype=float)
    return X, y


def data_hash(X: np.ndarray, y: np.ndarray) -> str:
    """sha256 of the training data (values, shape and dtype), a lineage tag."""
    h = hashlib.sha256()
    for arr in (X, y):
        arr = np.ascontiguousarray(arr)
        h.update(str((arr.shape, str(arr.dtype))).encode())
        h.update(arr.tobytes() if arr.dtype != object else repr(arr.tolist()).encode())
    return h.hexdigest()
