"""Data and prediction drift of a window of logged predictions against a reference profile.

`DriftCalculator(profile, thresholds).calculate(window_columns)` returns a `DriftReport`
whose `to_dict()` is the API's drift answer. Each feature gets a level
``ok < monitor < warning < critical``; a feature *drifted* when its level is warning or
critical; the report's level is the worst feature (or prediction) level.

How a feature is judged — and the report says which statistic decided and why:

* **Small samples** (fewer than ``drift_large_sample`` non-missing values, default
  1,000, in the reference or the window): significance tests, as DESIGN.md says.
  Numeric: KS of the profile's sample against the window; drift (warning) when
  ``p < drift_ks_pvalue`` *and* ``D > drift_ks_statistic``, critical when the PSI is
  also past its critical threshold, monitor when only the p-value is small.
  Categorical: chi-square goodness of fit against the reference shares; drift when
  ``p < drift_ks_pvalue`` and the PSI reaches its monitor threshold (a material effect).
* **Large samples**: p-values flag everything once n is large, so the level is the
  effect size — the worse of
  - PSI on the reference's quantile bins (plus a missing-value bin), graded by
    ``drift_psi_thresholds`` (0.1 / 0.2 / 0.3), and
  - numeric: the normed Wasserstein distance (W1 / reference std), graded by
    0.05 / 0.1 / 0.2 — 0.1 is Evidently's drift threshold. Being scaled by the
    reference's own spread, it catches the shifts PSI on 10 bins misses: a ×1.5
    spread (≈0.4) and a ×1.1 multiplicative change (≈0.1 × mean / std);
  - categorical: the Jensen–Shannon distance, graded by 0.05 / 0.1 / 0.2.
  The Wasserstein / Jensen–Shannon grade only counts when the difference is also
  statistically real (KS or chi-square ``p < drift_ks_pvalue``), so sampling noise near
  the cut-off never raises a level on its own. PSI needs no such guard: its
  no-drift expectation, about (bins - 1) × (1/n_ref + 1/n_cur), is < 0.02 here.

Every threshold can be overridden per feature with ``drift_feature_thresholds``
(``{feature: {"psi": [..], "wasserstein": [..], "jensenshannon": [..],
"ks_pvalue": x, "ks_statistic": y}}``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from .profile import OTHER, _category_keys
from .stattests import chi_square, jensen_shannon, ks, psi, wasserstein_normed

if TYPE_CHECKING:
    from ..config import MLOpsConfig

LEVELS = ("ok", "monitor", "warning", "critical")
DRIFTED = frozenset({"warning", "critical"})
Levels = tuple[float, float, float]


def worst(levels: Sequence[str | None]) -> str:
    """The most severe of `levels` (None ignored); "ok" when there are none."""
    ranked = [LEVELS.index(level) for level in levels if level is not None]
    return LEVELS[max(ranked)] if ranked else "ok"


def grade(value: float | None, thresholds: Levels) -> str:
    """ok below the first threshold, then monitor / warning / critical at or above each."""
    if value is None or math.isnan(value):
        return "ok"
    level = "ok"
    for name, limit in zip(LEVELS[1:], thresholds, strict=False):
        if value >= limit:
            level = name
    return level


@dataclass(frozen=True)
class FeatureThresholds:
    psi: Levels = (0.1, 0.2, 0.3)
    wasserstein: Levels = (0.05, 0.1, 0.2)
    jensenshannon: Levels = (0.05, 0.1, 0.2)
    ks_pvalue: float = 0.05
    ks_statistic: float = 0.1

    def override(self, key: str, raw: Mapping[str, Any]) -> FeatureThresholds:
        allowed = {f.name for f in fields(self)} | {"js"}
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if name not in allowed:
                raise ConfigError(f"{key}: unknown threshold {name!r}; expected one of {', '.join(sorted(allowed))}")
            name = "jensenshannon" if name == "js" else name
            if name in ("ks_pvalue", "ks_statistic"):
                values[name] = float(value)
            else:
                if not isinstance(value, (list, tuple)) or len(value) != 3 or not value[0] <= value[1] <= value[2]:
                    raise ConfigError(f"{key}: {name} must be three increasing numbers, got {value!r}")
                values[name] = tuple(float(v) for v in value)
        return FeatureThresholds(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **values})


@dataclass(frozen=True)
class DriftThresholds:
    """Every number drift is judged by; `from_config` reads them from `MLOpsConfig`."""

    default: FeatureThresholds = field(default_factory=FeatureThresholds)
    per_feature: Mapping[str, FeatureThresholds] = field(default_factory=dict)
    large_sample: int = 1000
    min_samples: int = 100

    def for_feature(self, name: str) -> FeatureThresholds:
        return self.per_feature.get(name, self.default)

    @classmethod
    def build(
        cls,
        *,
        psi: Sequence[float] = (0.1, 0.2, 0.3),
        ks_pvalue: float = 0.05,
        ks_statistic: float = 0.1,
        large_sample: int = 1000,
        min_samples: int = 100,
        per_feature: Mapping[str, Mapping[str, Any]] | None = None,
        **extra: Any,
    ) -> DriftThresholds:
        default = FeatureThresholds().override(
            "drift thresholds", {"psi": list(psi), "ks_pvalue": ks_pvalue, "ks_statistic": ks_statistic, **extra}
        )
        key = "MLOPS_DRIFT_FEATURE_THRESHOLDS"
        if per_feature is not None and not isinstance(per_feature, Mapping):
            raise ConfigError(f"{key} must map feature -> thresholds")
        overrides = {name: default.override(f"{key}[{name!r}]", raw) for name, raw in (per_feature or {}).items()}
        return cls(default, overrides, int(large_sample), int(min_samples))

    @classmethod
    def from_config(cls, config: MLOpsConfig) -> DriftThresholds:
        return cls.build(
            psi=config.drift_psi_thresholds,
            ks_pvalue=config.drift_ks_pvalue,
            ks_statistic=config.drift_ks_statistic,
            large_sample=config.drift_large_sample,
            min_samples=config.drift_min_samples,
            per_feature=config.drift_feature_thresholds,
        )


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class FeatureDrift:
    """The verdict on one feature (or on the prediction) and every statistic behind it."""

    name: str
    type: str
    level: str
    test: str  # the method of this sample size: "ks", "chisquare" or "effect_size"
    decided_by: str
    why: str
    n_reference: int
    n_current: int
    psi: float | None = None
    ks_stat: float | None = None
    ks_pvalue: float | None = None
    chi2_stat: float | None = None
    chi2_pvalue: float | None = None
    js: float | None = None
    wasserstein: float | None = None
    missing_rate: float = 0.0
    reference_missing_rate: float = 0.0
    out_of_range_rate: float = 0.0
    histogram: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def drifted(self) -> bool:
        return self.level in DRIFTED

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = _num(value) if isinstance(value, float) else value
        out["drifted"] = self.drifted
        return out


@dataclass
class DriftReport:
    status: str  # "ok" | "insufficient_data"
    level: str | None
    window: dict[str, Any]
    features: dict[str, FeatureDrift]
    prediction: FeatureDrift | None
    n_rows: int
    message: str = ""
    computed_ms: float = 0.0

    @property
    def drifted_features(self) -> list[str]:
        return [name for name, f in self.features.items() if f.drifted]

    @property
    def share_drifted(self) -> float | None:
        return len(self.drifted_features) / len(self.features) if self.features else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "level": self.level,
            "window": {**self.window, "n": self.n_rows},
            "features": {name: f.to_dict() for name, f in self.features.items()},
            "prediction": self.prediction.to_dict() if self.prediction is not None else None,
            "n_features": len(self.features),
            "n_drifted": len(self.drifted_features),
            "drifted_features": self.drifted_features,
            "share_drifted": self.share_drifted,
            "message": self.message,
            "computed_ms": round(self.computed_ms, 3),
        }


def _length(values: Any) -> int:
    codes = getattr(values, "codes", None)
    return len(codes) if codes is not None else len(values)


def _float_values(values: Any) -> np.ndarray:
    """Current numeric values as float64 (NaN = missing); coded string columns are parsed."""
    from .profile import to_float_array

    codes = getattr(values, "codes", None)
    if codes is not None:
        lut = np.append(to_float_array(np.asarray(list(values.categories), dtype=object)), np.nan)
        return lut[np.where(np.asarray(codes) < 0, len(lut) - 1, codes)]
    return to_float_array(values)


def _category_counts(values: Any, keys: list[str]) -> np.ndarray:
    """Counts over [reference categories..., other, missing] for any column shape."""
    index = {k: i for i, k in enumerate(keys)}
    other, missing = len(keys), len(keys) + 1
    codes = getattr(values, "codes", None)
    if codes is not None:
        categories = list(values.categories)
    else:
        arr = np.asarray(values)
        if arr.dtype.kind in "fiub":
            uniq, codes = np.unique(arr.astype(np.float64, copy=False), return_inverse=True)
            categories = [None if math.isnan(u) else u for u in uniq.tolist()]
        else:
            import pandas as pd

            codes, uniq_obj = pd.factorize(arr.astype(object), use_na_sentinel=True)
            categories = list(uniq_obj)
    cat_keys = _category_keys(np.asarray(categories, dtype=object)) if categories else []
    lut = np.array([missing] + [missing if k is None else index.get(k, other) for k in cat_keys], dtype=np.int64)
    return np.bincount(lut[np.asarray(codes, dtype=np.int64) + 1], minlength=len(keys) + 2)


class DriftCalculator:
    """Judges windows against one reference profile (parsed once, reused for every window)."""

    def __init__(self, profile: Mapping[str, Any], thresholds: DriftThresholds | None = None) -> None:
        self.profile = profile
        self.thresholds = thresholds or DriftThresholds()
        self._samples: dict[str, np.ndarray] = {}
        self._edges: dict[str, np.ndarray] = {}
        for name, prof in [*profile["features"].items(), ("__prediction__", profile.get("prediction"))]:
            if prof is not None and prof["type"] == "numeric":
                self._samples[name] = np.asarray(prof["sample"], dtype=np.float64)
                self._edges[name] = np.asarray(prof["edges"], dtype=np.float64)

    @classmethod
    def from_config(cls, profile: Mapping[str, Any], config: MLOpsConfig) -> DriftCalculator:
        return cls(profile, DriftThresholds.from_config(config))

    def calculate(
        self,
        window_columns: Mapping[str, Any],
        *,
        prediction: Any = None,
        window: Mapping[str, Any] | None = None,
        n_rows: int | None = None,
    ) -> DriftReport:
        """Judge every profiled feature (and `prediction`, when given) on the window's columns."""
        started = time.perf_counter()
        if n_rows is None:
            lengths = [_length(v) for v in window_columns.values()]
            n_rows = max(lengths) if lengths else 0
        info = dict(window or {})
        minimum = self.thresholds.min_samples
        if n_rows < minimum:
            return DriftReport(
                "insufficient_data",
                None,
                info,
                {},
                None,
                n_rows,
                message=f"{n_rows} records in the window; at least {minimum} are needed to judge drift (MLOPS_DRIFT_MIN_SAMPLES)",
                computed_ms=(time.perf_counter() - started) * 1000,
            )
        features: dict[str, FeatureDrift] = {}
        for name, prof in self.profile["features"].items():
            values = window_columns.get(name)
            if values is None:
                values = np.full(n_rows, np.nan) if prof["type"] == "numeric" else np.full(n_rows, None, dtype=object)
            features[name] = self._judge(name, name, prof, values)
        pred = None
        pred_prof = self.profile.get("prediction")
        if prediction is not None and pred_prof is not None:
            pred = self._judge("__prediction__", pred_prof.get("of", "prediction"), pred_prof, prediction)
        level = worst([f.level for f in features.values()] + ([pred.level] if pred is not None else []))
        report = DriftReport("ok", level, info, features, pred, n_rows)
        drifted = report.drifted_features
        report.message = (
            f"{len(drifted)} of {len(features)} features drifted" + (f": {', '.join(drifted)}" if drifted else "")
        )
        report.computed_ms = (time.perf_counter() - started) * 1000
        return report

    # -- per feature -------------------------------------------------------------------
    def _judge(self, key: str, name: str, prof: Mapping[str, Any], values: Any) -> FeatureDrift:
        th = self.thresholds.for_feature(name)
        if prof["type"] == "numeric":
            return self._numeric(key, name, prof, values, th)
        return self._categorical(name, prof, values, th)

    def _numeric(self, key: str, name: str, prof: Mapping[str, Any], values: Any, th: FeatureThresholds) -> FeatureDrift:
        xs = np.sort(_float_values(values))  # NaN sorts last, -inf first, +inf before NaN
        n_total = int(xs.size)
        lo = int(np.searchsorted(xs, -np.inf, side="right"))
        hi = int(np.searchsorted(xs, np.inf, side="left"))
        valid = xs[lo:hi]
        n = int(valid.size)
        edges = self._edges[key]
        cuts = np.searchsorted(valid, edges, side="left")
        counts = np.diff(np.concatenate(([0], cuts, [n])))
        counts = np.append(counts, n_total - n)
        ref_props = np.asarray(prof["proportions"], dtype=float)
        stats = prof["stats"]
        bound_lo, bound_hi = (prof.get("range") or [None, None])
        bound_lo = stats.get("min") if bound_lo is None else bound_lo
        bound_hi = stats.get("max") if bound_hi is None else bound_hi
        outside = 0
        if n and bound_lo is not None:
            outside += int(np.searchsorted(valid, bound_lo, side="left"))
        if n and bound_hi is not None:
            outside += n - int(np.searchsorted(valid, bound_hi, side="right"))
        result = FeatureDrift(
            name=name,
            type="numeric",
            level="ok",
            test="effect_size",
            decided_by="psi",
            why="",
            n_reference=int(stats["count"]),
            n_current=n,
            psi=psi(ref_props, counts),
            js=jensen_shannon(ref_props, counts),
            missing_rate=(n_total - n) / max(n_total, 1),
            reference_missing_rate=float(stats["missing_rate"]),
            out_of_range_rate=outside / n if n else 0.0,
            histogram=_histogram(_numeric_labels(edges), ref_props, counts),
        )
        sample = self._samples[key]
        if n == 0 or sample.size == 0:
            result.level = grade(result.psi, th.psi)
            result.why = f"no non-missing values to compare; PSI {result.psi:.3g} (missing values) gives {result.level}"
            return result
        result.ks_stat, result.ks_pvalue = ks(sample, valid)
        scale = stats.get("std") or max(abs(stats.get("mean") or 0.0), 1.0)
        result.wasserstein = wasserstein_normed(sample, valid, scale)
        significant = result.ks_pvalue < th.ks_pvalue
        if min(result.n_reference, n) < self.thresholds.large_sample:
            self._small_sample(result, th, significant, "ks", f"KS D={result.ks_stat:.3g}, p={result.ks_pvalue:.3g}")
            return result
        self._effect_size(result, th, significant, "wasserstein", result.wasserstein, th.wasserstein, "KS")
        return result

    def _categorical(self, name: str, prof: Mapping[str, Any], values: Any, th: FeatureThresholds) -> FeatureDrift:
        keys = list(prof["categories"])
        ref_props = np.asarray([*prof["categories"].values(), prof["other"], prof["missing"]], dtype=float)
        counts = _category_counts(values, keys)
        n_total = int(counts.sum())
        n = n_total - int(counts[-1])
        stat, pvalue = chi_square(ref_props, counts)
        result = FeatureDrift(
            name=name,
            type="categorical",
            level="ok",
            test="effect_size",
            decided_by="psi",
            why="",
            n_reference=int(prof["stats"]["count"]),
            n_current=n,
            psi=psi(ref_props, counts),
            js=jensen_shannon(ref_props, counts),
            chi2_stat=stat,
            chi2_pvalue=pvalue,
            missing_rate=int(counts[-1]) / max(n_total, 1),
            reference_missing_rate=float(prof["stats"]["missing_rate"]),
            out_of_range_rate=int(counts[-2]) / n if n else 0.0,
            histogram=_histogram([*keys, OTHER, "missing"], ref_props, counts),
        )
        significant = pvalue < th.ks_pvalue
        if min(result.n_reference, n) < self.thresholds.large_sample:
            assert result.psi is not None
            effect = result.psi >= th.psi[0]
            self._small_sample(result, th, significant, "chisquare", f"chi-square p={pvalue:.3g}", effect=effect)
            return result
        self._effect_size(result, th, significant, "jensenshannon", result.js, th.jensenshannon, "chi-square")
        return result

    def _small_sample(
        self, result: FeatureDrift, th: FeatureThresholds, significant: bool, test: str, what: str, effect: bool | None = None
    ) -> None:
        assert result.psi is not None
        if effect is None:
            effect = result.ks_stat is not None and result.ks_stat > th.ks_statistic
        result.test = result.decided_by = test
        size = f"{min(result.n_reference, result.n_current)} values < {self.thresholds.large_sample}: judged by p-value"
        if not significant:
            result.level, why = "ok", f"{what} >= {th.ks_pvalue}: no significant difference"
        elif not effect:
            material = f"D <= {th.ks_statistic}" if test == "ks" else f"PSI {result.psi:.3g} < {th.psi[0]}"
            result.level, why = "monitor", f"{what} < {th.ks_pvalue} but the effect is small ({material})"
        elif result.psi >= th.psi[2]:
            result.level, why = "critical", f"{what} < {th.ks_pvalue} and PSI {result.psi:.3g} >= {th.psi[2]}"
        else:
            result.level, why = "warning", f"{what} < {th.ks_pvalue}, effect past its threshold"
        result.why = f"{why} ({size})"

    def _effect_size(
        self,
        result: FeatureDrift,
        th: FeatureThresholds,
        significant: bool,
        distance_name: str,
        distance: float | None,
        distance_levels: Levels,
        test_name: str,
    ) -> None:
        assert result.psi is not None
        psi_level = grade(result.psi, th.psi)
        raw_level = grade(distance, distance_levels)
        dist_level = raw_level if significant else "ok"
        result.test = "effect_size"
        size = f"n_ref={result.n_reference}, n_cur={result.n_current} >= {self.thresholds.large_sample}: judged by effect size"
        shown = f"{distance_name} {distance:.3g}" if distance is not None else distance_name
        if LEVELS.index(dist_level) > LEVELS.index(psi_level):
            result.level, result.decided_by = dist_level, distance_name
            limit = distance_levels[LEVELS.index(dist_level) - 1]
            why = f"{shown} >= {limit} ({dist_level}); PSI {result.psi:.3g}"
        elif psi_level != "ok":
            result.level, result.decided_by = psi_level, "psi"
            why = f"PSI {result.psi:.3g} >= {th.psi[LEVELS.index(psi_level) - 1]} ({psi_level}); {shown}"
        else:
            result.level, result.decided_by = "ok", distance_name
            why = f"PSI {result.psi:.3g} < {th.psi[0]} and {shown} < {distance_levels[0]}"
        if raw_level != "ok" and not significant:
            why += f"; {shown} alone would be {raw_level} but {test_name} finds no significant difference"
        result.why = f"{why} ({size})"


def _numeric_labels(edges: np.ndarray) -> list[str]:
    if edges.size == 0:
        return ["all", "missing"]
    e = [f"{v:.4g}" for v in edges.tolist()]
    return [f"< {e[0]}"] + [f"[{a}, {b})" for a, b in zip(e, e[1:], strict=False)] + [f">= {e[-1]}", "missing"]


def _histogram(labels: list[str], reference: np.ndarray, counts: np.ndarray) -> dict[str, list[Any]]:
    total = counts.sum()
    current = counts / total if total else counts.astype(float)
    return {
        "labels": labels,
        "reference": [round(float(v), 6) for v in reference],
        "current": [round(float(v), 6) for v in current],
    }


__all__ = ["DRIFTED", "LEVELS", "DriftCalculator", "DriftReport", "DriftThresholds", "FeatureDrift", "FeatureThresholds", "grade", "worst"]
