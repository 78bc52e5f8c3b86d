"""Feature engineering that lives inside the saved model, so serving passes raw feature rows.

`FeatureEngineer` is a scikit-learn transformer working on a numpy 2-D array whose columns
are the model's declared features, in declared order. What it does is configured per
model through `spec.extra["feature_engineering"]`: a preset name (``"pima"``, ``"none"``)
or a mapping with the keys below. The generic default only imputes missing numeric
values with the training median and one-hot encodes categorical features, which is safe
on any data.

Keys (all optional):
- ``zeros_as_missing``: numeric features where 0 means "not measured" (become NaN).
- ``products``: ``[[a, b], ...]`` adds ``a*b``.
- ``ratios``: ``[[a, b], ...]`` adds ``a/b`` (NaN where ``b`` is 0 or missing).
- ``log1p``: numeric features replaced by ``log1p(max(x, 0))``.
- ``missing_indicators``: add a 0/1 column per ``zeros_as_missing`` feature.
- ``impute``: ``"median"`` (default) or ``"none"`` (leave NaN for models that handle it).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ..errors import ConfigError
from ..specs import ModelSpec

PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    # Pima Indians Diabetes: zeros in these columns mean "not measured" (see data/README).
    "pima": {
        "zeros_as_missing": ["Glucose", "BloodPressure", "SkinThickness", "Insulin", "BMI"],
        "products": [["BMI", "Age"]],
        "ratios": [["Glucose", "Insulin"]],
        "missing_indicators": False,
        "impute": "median",
    },
}
_KEYS = {"zeros_as_missing", "products", "ratios", "log1p", "missing_indicators", "impute"}


def resolve_fe_config(spec: ModelSpec) -> dict[str, Any]:
    """The feature-engineering mapping for a model (preset expanded, names checked)."""
    raw = spec.extra.get("feature_engineering")
    if raw is None:
        raw = "none"
    if isinstance(raw, str):
        if raw not in PRESETS:
            raise ConfigError(
                f"model {spec.name!r}: unknown feature_engineering preset {raw!r}; "
                f"known presets: {', '.join(sorted(PRESETS))}"
            )
        raw = PRESETS[raw]
    if not isinstance(raw, Mapping):
        raise ConfigError(f"model {spec.name!r}: feature_engineering must be a preset name or a mapping")
    cfg = dict(raw)
    if "preset" in cfg:
        base = resolve_fe_config(
            ModelSpec(name=spec.name, features=spec.features, extra={"feature_engineering": cfg.pop("preset")})
        )
        cfg = {**base, **cfg}
    unknown = set(cfg) - _KEYS
    if unknown:
        raise ConfigError(
            f"model {spec.name!r}: unknown feature_engineering key(s) {sorted(unknown)}; known: {sorted(_KEYS)}"
        )
    numeric = {f.name for f in spec.features if f.type == "numeric"}
    used: set[str] = set(cfg.get("zeros_as_missing", [])) | set(cfg.get("log1p", []))
    for pair in list(cfg.get("products", [])) + list(cfg.get("ratios", [])):
        if not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2:
            raise ConfigError(f"model {spec.name!r}: products/ratios take pairs of feature names, got {pair!r}")
        used |= set(pair)
    # Features a preset names that this model lacks are dropped, so a preset is reusable
    # on a subset of columns; an explicit mapping must name declared numeric features.
    if isinstance(spec.extra.get("feature_engineering"), str) or "preset" in (
        spec.extra.get("feature_engineering") or {}
    ):
        cfg = _restrict(cfg, numeric)
    elif used - numeric:
        raise ConfigError(
            f"model {spec.name!r}: feature_engineering names unknown or non-numeric feature(s) "
            f"{sorted(used - numeric)}; numeric features: {sorted(numeric)}"
        )
    if cfg.get("impute", "median") not in ("median", "none"):
        raise ConfigError(f"model {spec.name!r}: feature_engineering.impute must be 'median' or 'none'")
    return cfg


def _restrict(cfg: dict[str, Any], numeric: set[str]) -> dict[str, Any]:
    out = dict(cfg)
    for key in ("zeros_as_missing", "log1p"):
        if key in out:
            out[key] = [n for n in out[key] if n in numeric]
    for key in ("products", "ratios"):
        if key in out:
            out[key] = [list(p) for p in out[key] if set(p) <= numeric]
    return out


def make_feature_engineer(spec: ModelSpec) -> FeatureEngineer:
    """A fresh, unfitted transformer for this model's declared features."""
    cfg = resolve_fe_config(spec)
    categories = {
        f.name: list(f.categories) if f.categories is not None else None
        for f in spec.features
        if f.type == "categorical"
    }
    return FeatureEngineer(
        feature_names=tuple(spec.feature_names),
        categorical=categories,
        zeros_as_missing=tuple(cfg.get("zeros_as_missing", ())),
        products=tuple(tuple(p) for p in cfg.get("products", ())),
        ratios=tuple(tuple(p) for p in cfg.get("ratios", ())),
        log1p=tuple(cfg.get("log1p", ())),
        missing_indicators=bool(cfg.get("missing_indicators", False)),
        impute=str(cfg.get("impute", "median")),
    )


class FeatureEngineer(TransformerMixin, BaseEstimator):
    """Raw declared-feature columns -> numeric model matrix (engineered, imputed, one-hot)."""

    def __init__(
        self,
        feature_names: tuple[str, ...] = (),
        categorical: Mapping[str, list[str] | None] | None = None,
        zeros_as_missing: tuple[str, ...] = (),
        products: tuple[tuple[str, str], ...] = (),
        ratios: tuple[tuple[str, str], ...] = (),
        log1p: tuple[str, ...] = (),
        missing_indicators: bool = False,
        impute: str = "median",
    ) -> None:
        self.feature_names = feature_names
        self.categorical = categorical
        self.zeros_as_missing = zeros_as_missing
        self.products = products
        self.ratios = ratios
        self.log1p = log1p
        self.missing_indicators = missing_indicators
        self.impute = impute

    # -- scikit-learn API ------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> FeatureEngineer:
        X = self._as_2d(X)
        cats = dict(self.categorical or {})
        self.categories_ = {
            name: list(known) if known is not None else sorted({str(v) for v in X[:, self._col(name)] if v is not None})
            for name, known in cats.items()
        }
        # Medians of the measured values; derived columns are built from the imputed base
        # columns and get medians of their own (for a ratio whose denominator is a real 0).
        self.base_medians_ = _medians(self._base(X))
        self.medians_ = _medians(self._numeric(X))
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        X = self._as_2d(X)
        if X.shape[1] != len(self.feature_names):
            raise ValueError(f"expected {len(self.feature_names)} columns {list(self.feature_names)}, got {X.shape[1]}")
        numeric = self._numeric(X)
        if self.impute == "median":
            numeric = _fill(numeric, self.medians_)
        parts = [numeric]
        for name, cats in self.categories_.items():
            col = np.array([str(v) if v is not None else "" for v in X[:, self._col(name)]], dtype=object)
            parts.append(np.stack([(col == c).astype(float) for c in cats], axis=1) if cats else np.zeros((len(X), 0)))
        return np.hstack(parts) if len(parts) > 1 else numeric

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        names = [n for n in self.feature_names if n not in (self.categorical or {})]
        names += [f"{n}_missing" for n in self.zeros_as_missing] if self.missing_indicators else []
        names += [f"{a}*{b}" for a, b in self.products]
        names += [f"{a}/{b}" for a, b in self.ratios]
        for name, cats in getattr(self, "categories_", {}).items():
            names += [f"{name}={c}" for c in cats]
        return np.array(names, dtype=object)

    # -- internals ---------------------------------------------------------------------
    def _col(self, name: str) -> int:
        return list(self.feature_names).index(name)

    @staticmethod
    def _as_2d(X: Any) -> np.ndarray:
        arr = np.asarray(X, dtype=object if getattr(getattr(X, "dtype", None), "kind", "") == "O" else None)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2:
            raise ValueError(f"expected a 2-D array of feature rows, got shape {arr.shape}")
        return arr

    def _base(self, X: np.ndarray) -> np.ndarray:
        """Numeric columns in declared order, missing markers as NaN, log1p applied."""
        cats = set(self.categorical or {})
        names = [n for n in self.feature_names if n not in cats]
        idx = [self._col(n) for n in names]
        base = _to_float(X[:, idx]) if idx else np.zeros((len(X), 0))
        col = {n: i for i, n in enumerate(names)}
        for n in self.zeros_as_missing:
            base[base[:, col[n]] == 0, col[n]] = np.nan
        for n in self.log1p:
            base[:, col[n]] = np.log1p(np.clip(base[:, col[n]], 0, None))
        return base

    def _numeric(self, X: np.ndarray) -> np.ndarray:
        """Base columns, then missing indicators, products and ratios (from imputed base values)."""
        raw = self._base(X)
        base = _fill(raw, self.base_medians_) if self.impute == "median" and hasattr(self, "base_medians_") else raw
        cats = set(self.categorical or {})
        col = {n: i for i, n in enumerate(n for n in self.feature_names if n not in cats)}
        extra: list[np.ndarray] = []
        if self.missing_indicators:
            extra += [np.isnan(raw[:, col[n]]).astype(float) for n in self.zeros_as_missing]
        with np.errstate(divide="ignore", invalid="ignore"):
            extra += [base[:, col[a]] * base[:, col[b]] for a, b in self.products]
            for a, b in self.ratios:
                den = base[:, col[b]]
                extra.append(np.where((den == 0) | np.isnan(den), np.nan, base[:, col[a]] / den))
        return np.column_stack([base, *extra]) if extra else base


def _medians(block: np.ndarray) -> np.ndarray:
    if block.shape[1] == 0 or len(block) == 0:
        return np.zeros(block.shape[1])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column -> 0 below
        med = np.nanmedian(np.where(np.isfinite(block), block, np.nan), axis=0)
    return np.where(np.isnan(med), 0.0, med)


def _fill(block: np.ndarray, medians: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(block)
    return np.where(bad, medians[None, :], block) if bad.any() else block


def _to_float(block: np.ndarray) -> np.ndarray:
    if block.dtype != object:
        return block.astype(float, copy=True)
    out = np.empty(block.shape, dtype=float)
    for i, v in np.ndenumerate(block):
        out[i] = np.nan if v is None else float(v)
    return out
