"""The reference profile of a model version: what drift is measured against, as plain JSON.

Built once at registration from the training data (and the model's scores on it) and
stored in `mlops_model_versions.profile` — never pickled. Per numeric column:

* ``edges``: interior bin edges. A value holding at least a bin's share of the rows
  (the zeros of a zero-inflated feature, a constant, the levels of a discrete one) gets
  a point bin ``[v, nextafter(v))`` of its own; the other values get quantile bins
  (default 10 bins, so 9 edges; outer bins open-ended, duplicate edges merged). Bin
  ``i`` holds ``edges[i-1] <= x < edges[i]`` — `np.searchsorted(edges, x, side="right")`.
  Profiles stored before point bins existed read the same way.
* ``proportions``: share of *all* rows in each bin, then one last entry for missing
  values, so a jump in missing values moves the PSI too;
* ``stats`` (count, mean, std, min, max, percentiles) and a seeded ``sample`` of at most
  ``sample_cap`` values, sorted, for KS and Wasserstein.

Per categorical column: ``categories`` (value -> share of rows) for the most frequent
values, ``other`` for the long tail (and, at drift time, values never seen) and
``missing``. ``prediction`` profiles the model's probability (or regression output, or
class) the same way.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..specs import ModelSpec

PROFILE_FORMAT = 1
MAX_CATEGORIES = 50
MIN_CATEGORY_SHARE = 0.001
OTHER = "__other__"
_PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def to_float_array(values: Any) -> np.ndarray:
    """A float64 array with NaN for anything missing or not a number (None, "", "abc")."""
    arr = np.asarray(values)
    if arr.dtype.kind in "fiub":
        return arr.astype(np.float64, copy=False)
    out = np.full(arr.shape[0], np.nan)
    for i, value in enumerate(arr.tolist()):
        if isinstance(value, bool) or value is None:
            continue
        try:
            out[i] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def is_numeric(values: Any) -> bool:
    """Whether a column without a declared type looks numeric (bools and strings do not)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "fiu":
        return True
    if arr.dtype.kind != "O":
        return False
    seen = [v for v in arr.tolist() if v is not None]
    return bool(seen) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen)


def numeric_profile(values: Any, *, bins: int = 10, sample_cap: int = 5000, seed: int = 42) -> dict[str, Any]:
    """Quantile bins, proportions (+ missing), summary stats and a sorted capped sample."""
    x = to_float_array(values)
    n_total = int(x.size)
    valid = np.sort(x[np.isfinite(x)])
    n = int(valid.size)
    missing = n_total - n
    if n == 0:
        edges = np.empty(0)
        counts = np.zeros(1, dtype=np.int64)
    else:
        edges = _bin_edges(valid, bins)
        cuts = np.searchsorted(valid, edges, side="left")
        counts = np.diff(np.concatenate(([0], cuts, [n])))
    denom = max(n_total, 1)
    proportions = [float(c) / denom for c in counts] + [missing / denom]
    if n > sample_cap:
        rng = np.random.default_rng(seed)
        sample = np.sort(valid[rng.choice(n, size=sample_cap, replace=False)])
    else:
        sample = valid
    stats: dict[str, Any] = {"count": n, "missing": missing, "missing_rate": missing / denom}
    if n:
        stats.update(
            mean=_finite(valid.mean()),
            std=_finite(valid.std()),
            min=_finite(valid[0]),
            max=_finite(valid[-1]),
            **{f"p{p:02d}": _finite(v) for p, v in zip(_PERCENTILES, np.percentile(valid, _PERCENTILES), strict=False)},
        )
    return {
        "type": "numeric",
        "n": n_total,
        "edges": [float(e) for e in edges],
        "proportions": proportions,
        "stats": stats,
        "sample": [float(v) for v in sample],
    }


def _bin_edges(valid: np.ndarray, bins: int) -> np.ndarray:
    """Interior edges: a point bin for every value holding a bin's share, quantiles of the rest.

    A point bin is ``[v, nextafter(v))``, so it holds exactly v and the usual
    ``edges[i-1] <= x < edges[i]`` rule still applies (old profiles read the same way).
    Without point bins, a zero-inflated or constant feature collapses into one or two
    bins and PSI cannot see anything but the heavy value.
    """
    values, counts = np.unique(valid, return_counts=True)
    heavy = values[counts >= valid.size / bins]
    rest = valid[~np.isin(valid, heavy)] if heavy.size else valid
    qs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    parts = [np.quantile(rest, qs)] if rest.size else []
    if heavy.size:
        parts += [heavy, np.nextafter(heavy, np.inf)]
    return np.unique(np.concatenate(parts)) if parts else np.empty(0)


def _category_keys(values: Any) -> list[str | None]:
    out: list[str | None] = []
    for v in np.asarray(values, dtype=object).tolist():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(None)
        elif isinstance(v, float) and v.is_integer():
            out.append(str(int(v)))
        else:
            out.append(str(v))
    return out


def categorical_profile(values: Any, *, max_categories: int = MAX_CATEGORIES) -> dict[str, Any]:
    """Shares of the most frequent categories; the tail goes to `other`, None to `missing`."""
    keys = _category_keys(values)
    n_total = len(keys)
    present = [k for k in keys if k is not None]
    missing = n_total - len(present)
    order = sorted(Counter(present).items(), key=lambda kc: (-kc[1], kc[0]))
    denom = max(n_total, 1)
    kept = [(k, c) for k, c in order[:max_categories] if c / denom >= MIN_CATEGORY_SHARE or len(order) <= max_categories]
    other = len(present) - sum(c for _, c in kept)
    return {
        "type": "categorical",
        "n": n_total,
        "categories": {k: c / denom for k, c in kept},
        "other": other / denom,
        "missing": missing / denom,
        "stats": {"count": len(present), "missing": missing, "missing_rate": missing / denom, "distinct": len(order)},
    }


def build_profile(
    columns: Mapping[str, Any],
    spec: ModelSpec | None = None,
    *,
    bins: int = 10,
    sample_cap: int = 5000,
    seed: int = 42,
    predictions: Any = None,
) -> dict[str, Any]:
    """The JSON-serialisable reference profile of `columns` (and of the model's predictions).

    Feature types come from `spec` when given, else from the data (numbers -> numeric).
    Declared numeric ranges (`min`/`max`) are recorded for the out-of-range rate.
    """
    if bins < 2:
        raise ValueError("bins must be at least 2")
    names = spec.feature_names if spec is not None else list(columns)
    features: dict[str, Any] = {}
    n_rows = 0
    for name in names:
        if name not in columns:
            raise ValueError(f"reference data has no column {name!r}")
        values = columns[name]
        declared = spec.feature(name) if spec is not None else None
        ftype = declared.type if declared is not None else ("numeric" if is_numeric(values) else "categorical")
        if ftype == "numeric":
            prof = numeric_profile(values, bins=bins, sample_cap=sample_cap, seed=seed)
            if declared is not None and (declared.min is not None or declared.max is not None):
                prof["range"] = [declared.min, declared.max]
        else:
            prof = categorical_profile(values)
        features[name] = prof
        n_rows = max(n_rows, prof["n"])
    profile: dict[str, Any] = {
        "format": PROFILE_FORMAT,
        "model": spec.name if spec is not None else None,
        "task": spec.task if spec is not None else None,
        "n_rows": n_rows,
        "bins": bins,
        "sample_cap": sample_cap,
        "seed": seed,
        "features": features,
        "prediction": None,
    }
    if predictions is not None:
        preds = np.asarray(predictions)
        if is_numeric(preds) and not (spec is not None and spec.task == "classification" and _looks_like_classes(preds)):
            prediction = numeric_profile(preds, bins=bins, sample_cap=sample_cap, seed=seed)
            prediction["of"] = "probability" if spec is not None and spec.task == "classification" else "prediction"
        else:
            prediction = categorical_profile(preds)
            prediction["of"] = "prediction"
        profile["prediction"] = prediction
    return profile


def _looks_like_classes(values: np.ndarray) -> bool:
    """Class labels (a classifier without probabilities), not scores: few integer values."""
    if values.dtype.kind in "iub":
        return True
    x = to_float_array(values)
    x = x[np.isfinite(x)]
    return bool(x.size) and bool(np.all(x == np.round(x))) and np.unique(x).size <= 20


def profile_to_json(profile: Mapping[str, Any]) -> str:
    """Strict JSON (no NaN) — the only form a profile is stored in."""
    return json.dumps(profile, allow_nan=False, separators=(",", ":"))


def profile_from_json(text: str | bytes) -> dict[str, Any]:
    profile = json.loads(text)
    if not isinstance(profile, dict) or profile.get("format") != PROFILE_FORMAT or "features" not in profile:
        raise ValueError(f"not a flask-mlops reference profile (format {PROFILE_FORMAT})")
    return profile


__all__ = [
    "OTHER",
    "PROFILE_FORMAT",
    "build_profile",
    "categorical_profile",
    "numeric_profile",
    "profile_from_json",
    "profile_to_json",
]
