"""Data and prediction drift of a window of logged predictions against a reference profile.

`DriftCalculator(profile, thresholds).calculate(window_columns)` returns a `DriftReport`
whose `to_dict()` is the API's drift answer. Each feature gets a level
``ok < monitor < warning < critical``; a feature *drifted* when its level is warning or
critical; the report's level is the worst feature (or prediction) level.

How a feature is judged: every stat test configured for it (by name, through the
registry in `stattests.py`) grades its own statistic, and the feature's level is the
worst of them; ``decided_by`` names the test that set it (the first in the configured
order on a tie) and ``why`` says why. Defaults (`DEFAULT_STATTESTS`):

* numeric: ``missing_rate``, ``out_of_range`` (the reference's [min, max]),
  ``declared_range`` (the spec's min/max, where declared), ``ks``, ``ks_rest`` (KS of
  the values outside point bins: the non-zeros of a zero-inflated feature),
  ``wasserstein``, ``psi``;
* categorical: ``missing_rate``, ``out_of_range`` (categories the reference did not
  know), ``chisquare`` (two-sample, on reference counts), ``jensenshannon``, ``psi``.

A test raises a level only for a difference that is real at this window size: the
significance tests need ``p < alpha`` (``MLOPS_DRIFT_ALPHA``, 0.001), the effect sizes
their noise floor (what noise alone exceeds in a fraction alpha of windows, from the
reference and window sizes). The rates these give — false alarms and detections at
200 to 100,000 rows — are measured by ``bench/drift_power.py`` and listed in the README.

Configuration: ``MLOPS_DRIFT_STATTESTS`` chooses the tests (``{"numeric": [...],
"categorical": [...], "<feature>": [...]}``), ``MLOPS_DRIFT_FEATURE_THRESHOLDS`` overrides
a test's levels per feature (``{feature: {test: [monitor, warning, critical]}}``), and
``MLOPS_DRIFT_PSI_THRESHOLDS`` / ``MLOPS_DRIFT_KS_STATISTIC`` the PSI and KS levels
for every feature. Everything else is the registered test's default.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from .aggregates import Binned, category_index, numeric_values
from .profile import OTHER
from .stattests import (
    DEFAULT_STATTESTS,
    STATTESTS,
    FeatureData,
    Levels,
    StatResult,
    StatTest,
    check_stattest_names,
    grade,
    resolve_stattests,
)

if TYPE_CHECKING:
    from ..config import MLOpsConfig

LEVELS = ("ok", "monitor", "warning", "critical")
DRIFTED = frozenset({"warning", "critical"})
FEATURE_TYPES = ("numeric", "categorical")
#: the per-statistic keys the drift answer has always carried: key -> (test, attribute)
LEGACY_KEYS: dict[str, tuple[str, str]] = {
    "psi": ("psi", "value"),
    "ks_stat": ("ks", "value"),
    "ks_pvalue": ("ks", "pvalue"),
    "chi2_stat": ("chisquare", "statistic"),
    "chi2_pvalue": ("chisquare", "pvalue"),
    "js": ("jensenshannon", "value"),
    "wasserstein": ("wasserstein", "value"),
}
#: names accepted in a per-feature threshold override besides the registered tests
_ALIASES = {"js": "jensenshannon"}


def worst(levels: Sequence[str | None]) -> str:
    """The most severe of `levels` (None ignored); "ok" when there are none."""
    ranked = [LEVELS.index(level) for level in levels if level is not None]
    return LEVELS[max(ranked)] if ranked else "ok"


def _levels(key: str, value: Any) -> Levels:
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ) or not value[0] <= value[1] <= value[2]:
        raise ConfigError(f"{key} must be three increasing numbers (monitor, warning, critical), got {value!r}")
    return (float(value[0]), float(value[1]), float(value[2]))


def _ks_levels(key: str, statistic: Any) -> Levels:
    """KS levels from the one number users set: drift (warning) at D, monitor at D/2, critical at 2D."""
    try:
        d = float(statistic)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key} must be a number, got {statistic!r}") from exc
    return (d / 2.0, d, 2.0 * d)


def _overrides(key: str, raw: Mapping[str, Any]) -> dict[str, Levels]:
    """{test: levels} from a user mapping; `ks_statistic` and `js` are accepted aliases."""
    allowed = set(STATTESTS) | set(_ALIASES) | {"ks_statistic"}
    out: dict[str, Levels] = {}
    for name, value in raw.items():
        if name not in allowed:
            raise ConfigError(f"{key}: unknown threshold {name!r}; expected one of {', '.join(sorted(allowed))}")
        if name == "ks_statistic":
            out["ks"] = _ks_levels(f"{key}[{name!r}]", value)
        else:
            out[_ALIASES.get(name, name)] = _levels(f"{key}[{name!r}]", value)
    return out


@dataclass(frozen=True)
class DriftThresholds:
    """Which tests judge each feature and with which levels; `from_config` reads `MLOpsConfig`.

    Levels come from the registered test unless overridden for every feature
    (`overrides`) or for one (`per_feature`); `alpha` is the significance every test
    needs before it raises a level.
    """

    stattests: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_STATTESTS))
    overrides: Mapping[str, Levels] = field(default_factory=dict)
    per_feature: Mapping[str, Mapping[str, Levels]] = field(default_factory=dict)
    alpha: float = 0.001
    min_samples: int = 100

    def levels(self, feature: str, test: str) -> Levels:
        """The levels `test` grades `feature` by: per-feature override, global override, registered default."""
        own = self.per_feature.get(feature, {})
        if test in own:
            return own[test]
        return self.overrides.get(test) or STATTESTS[test].levels

    def tests_for(self, feature: str, feature_type: str) -> tuple[StatTest, ...]:
        """The tests run on `feature`, in tie-break order: its own list, else its type's."""
        key = "MLOPS_DRIFT_STATTESTS"
        if feature in self.stattests and feature not in FEATURE_TYPES:
            return resolve_stattests(self.stattests[feature], feature_type, f"{key}[{feature!r}]")
        names = self.stattests.get(feature_type, DEFAULT_STATTESTS[feature_type])
        return resolve_stattests(names, feature_type, f"{key}[{feature_type!r}]")

    def check_features(self, features: Sequence[tuple[str, str]]) -> None:
        """Resolve the tests of every (name, type) now, so a test that cannot apply fails at start-up."""
        for name, feature_type in features:
            if feature_type in FEATURE_TYPES:
                self.tests_for(name, feature_type)

    @classmethod
    def build(
        cls,
        *,
        psi: Sequence[float] | None = None,
        ks_statistic: float | None = None,
        alpha: float = 0.001,
        min_samples: int = 100,
        per_feature: Mapping[str, Mapping[str, Any]] | None = None,
        stattests: Mapping[str, Sequence[str]] | None = None,
    ) -> DriftThresholds:
        overrides: dict[str, Levels] = {}
        if psi is not None:
            overrides["psi"] = _levels("MLOPS_DRIFT_PSI_THRESHOLDS", psi)
        if ks_statistic is not None:
            overrides["ks"] = _ks_levels("MLOPS_DRIFT_KS_STATISTIC", ks_statistic)
        key = "MLOPS_DRIFT_FEATURE_THRESHOLDS"
        if per_feature is not None and not isinstance(per_feature, Mapping):
            raise ConfigError(f"{key} must map feature -> {{test: [monitor, warning, critical]}}")
        features: dict[str, dict[str, Levels]] = {}
        for name, raw in (per_feature or {}).items():
            if not isinstance(raw, Mapping):
                raise ConfigError(f"{key}[{name!r}] must map test -> [monitor, warning, critical]")
            features[name] = _overrides(f"{key}[{name!r}]", raw)
        chosen = dict(DEFAULT_STATTESTS)
        skey = "MLOPS_DRIFT_STATTESTS"
        if stattests is not None and not isinstance(stattests, Mapping):
            raise ConfigError(f"{skey} must map a feature type or feature name -> [stat test names]")
        for name, names in (stattests or {}).items():
            if name in FEATURE_TYPES:
                resolve_stattests(names, name, f"{skey}[{name!r}]")
            else:  # a feature's type is known from its profile only: names now, types at drift time
                check_stattest_names(names, f"{skey}[{name!r}]")
            chosen[name] = tuple(names)
        if not 0.0 < float(alpha) < 1.0:
            raise ConfigError(f"MLOPS_DRIFT_ALPHA must be between 0 and 1, got {alpha!r}")
        return cls(chosen, overrides, features, float(alpha), int(min_samples))

    @classmethod
    def from_config(cls, config: MLOpsConfig) -> DriftThresholds:
        return cls.build(
            psi=config.drift_psi_thresholds,
            ks_statistic=config.drift_ks_statistic,
            alpha=config.drift_alpha,
            min_samples=config.drift_min_samples,
            per_feature=config.drift_feature_thresholds,
            stattests=config.drift_stattests,
        )


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class FeatureDrift:
    """The verdict on one feature (or on the prediction) and every test behind it."""

    name: str
    type: str
    level: str
    test: str  # "effect_size" when effect sizes are stable at this size, else "ks" / "chisquare"
    decided_by: str
    why: str
    n_reference: int
    n_current: int
    missing_rate: float = 0.0
    reference_missing_rate: float = 0.0
    out_of_range_rate: float = 0.0
    histogram: dict[str, list[Any]] = field(default_factory=dict)
    tests: dict[str, StatResult] = field(default_factory=dict)

    @property
    def drifted(self) -> bool:
        return self.level in DRIFTED

    def stat(self, key: str) -> float | None:
        """A legacy per-statistic value (`psi`, `ks_pvalue`, ...) from the test that computes it."""
        test, attr = LEGACY_KEYS[key]
        result = self.tests.get(test)
        if result is None:
            return None
        value = result.extra.get(attr) if attr not in ("value", "pvalue") else getattr(result, attr)
        return None if value is None else float(value)

    psi = property(lambda self: self.stat("psi"))
    ks_stat = property(lambda self: self.stat("ks_stat"))
    ks_pvalue = property(lambda self: self.stat("ks_pvalue"))
    chi2_stat = property(lambda self: self.stat("chi2_stat"))
    chi2_pvalue = property(lambda self: self.stat("chi2_pvalue"))
    js = property(lambda self: self.stat("js"))
    wasserstein = property(lambda self: self.stat("wasserstein"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "level": self.level,
            "test": self.test,
            "decided_by": self.decided_by,
            "why": self.why,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
        }
        out.update({key: _num(self.stat(key)) for key in LEGACY_KEYS})
        out.update(
            missing_rate=_num(self.missing_rate),
            reference_missing_rate=_num(self.reference_missing_rate),
            out_of_range_rate=_num(self.out_of_range_rate),
            histogram=self.histogram,
            tests={name: result.to_dict() for name, result in self.tests.items()},
            drifted=self.drifted,
        )
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


def _category_counts(values: Any, keys: list[str]) -> np.ndarray:
    """Counts over [reference categories..., other, missing] for any column shape."""
    return np.bincount(category_index(values, keys), minlength=len(keys) + 2)


class DriftCalculator:
    """Judges windows against one reference profile (parsed once, reused for every window)."""

    def __init__(self, profile: Mapping[str, Any], thresholds: DriftThresholds | None = None) -> None:
        self.profile = profile
        self.thresholds = thresholds or DriftThresholds()
        self._samples: dict[str, np.ndarray] = {}
        self._edges: dict[str, np.ndarray] = {}
        self._points: dict[str, np.ndarray] = {}
        self._tests: dict[str, tuple[StatTest, ...]] = {}
        self._cache: dict[str, dict[str, Any]] = {}
        for key, prof in [*profile["features"].items(), ("__prediction__", profile.get("prediction"))]:
            if prof is None:
                continue
            if prof["type"] == "numeric":
                self._samples[key] = np.asarray(prof["sample"], dtype=np.float64)
                edges = self._edges[key] = np.asarray(prof["edges"], dtype=np.float64)
                self._points[key] = edges[:-1][edges[1:] == np.nextafter(edges[:-1], np.inf)]
            name = prof.get("of", "prediction") if key == "__prediction__" else key
            self._tests[key] = self.thresholds.tests_for(name, prof["type"])
            self._cache[key] = {}

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
        if prof["type"] == "numeric":
            data, labels = self._numeric_data(key, name, prof, values)
        else:
            data, labels = self._categorical_data(key, name, prof, values)
        th = self.thresholds
        results = {test.name: test.run(data, th.levels(name, test.name), th.alpha) for test in self._tests[key]}
        level = worst([r.level for r in results.values()])
        decided = _decisive(results, level, lambda test: th.levels(name, test))
        others = [f"{r.name} {r.level}" for r in results.values() if r.level != "ok" and r.name != decided]
        why = f"{decided}: {results[decided].why}" if decided else "no test ran"
        if others:
            why += f"; also {', '.join(others)}"
        psi_result = results.get("psi")
        stable = psi_result is not None and (psi_result.floor or 0.0) < th.levels(name, "psi")[0]
        regime = "judged by effect size, its noise floor below the levels" if stable else "effect sizes count only past their noise floor"
        return FeatureDrift(
            name=name,
            type=data.type,
            level=level,
            test="effect_size" if stable else ("ks" if data.type == "numeric" else "chisquare"),
            decided_by=decided,
            why=f"{why} (n_ref={data.n_reference}, n_cur={data.n_current}: {regime})",
            n_reference=data.n_reference,
            n_current=data.n_current,
            missing_rate=data.current_missing_rate,
            reference_missing_rate=data.reference_missing_rate,
            out_of_range_rate=data.n_out_of_range / data.n_current if data.n_current else 0.0,
            histogram=_histogram(labels, data.reference_bins, data.current_bins),
            tests=results,
        )

    def _numeric_data(self, key: str, name: str, prof: Mapping[str, Any], values: Any) -> tuple[FeatureData, list[str]]:
        edges = self._edges[key]
        stats = prof["stats"]
        if isinstance(values, Binned):  # counts from aggregates: exact; values from their sample
            counts = values.counts.bins
            n_total = int(counts.sum())
            n = n_total - int(counts[-1])
            sample_values = values.sample[np.isfinite(values.sample)]
            valid = np.sort(sample_values)
            outside, declared_out = values.counts.below + values.counts.above, values.counts.declared_out
        else:
            valid, counts, n_total, outside = self._count_values(edges, stats, values)
            n, declared_out = int(valid.size), None
        declared = prof.get("range")
        sample = self._samples[key]
        data = FeatureData(
            name=name,
            type="numeric",
            n_reference_rows=int(prof.get("n", stats["count"])),
            n_current_rows=n_total,
            n_reference=int(stats["count"]),
            n_current=n,
            reference_bins=np.asarray(prof["proportions"], dtype=float),
            current_bins=counts,
            reference_missing_rate=float(stats["missing_rate"]),
            current_missing_rate=(n_total - n) / max(n_total, 1),
            reference_sample=sample,
            current_values=valid,
            scale=stats.get("std") or max(abs(stats.get("mean") or 0.0), 1.0),
            declared_range=None if not declared or declared == [None, None] else (declared[0], declared[1]),
            n_out_of_range=outside,
            n_declared_out=declared_out,
            point_values=self._points[key],
            cache=self._cache[key],
        )
        return data, _numeric_labels(edges)

    @staticmethod
    def _count_values(edges: np.ndarray, stats: Mapping[str, Any], values: Any) -> tuple[np.ndarray, np.ndarray, int, int]:
        """(sorted finite values, bin counts + missing, rows, values outside the reference range)."""
        xs = np.sort(numeric_values(values, _length(values)))  # NaN sorts last, -inf first, +inf before NaN
        n_total = int(xs.size)
        lo = int(np.searchsorted(xs, -np.inf, side="right"))
        hi = int(np.searchsorted(xs, np.inf, side="left"))
        valid = xs[lo:hi]
        n = int(valid.size)
        cuts = np.searchsorted(valid, edges, side="left")
        counts = np.append(np.diff(np.concatenate(([0], cuts, [n]))), n_total - n)
        ref_min, ref_max = stats.get("min"), stats.get("max")
        outside = 0
        if n and ref_min is not None:
            outside += int(np.searchsorted(valid, ref_min, side="left"))
        if n and ref_max is not None:
            outside += n - int(np.searchsorted(valid, ref_max, side="right"))
        return valid, counts, n_total, outside

    def _categorical_data(self, key: str, name: str, prof: Mapping[str, Any], values: Any) -> tuple[FeatureData, list[str]]:
        keys = list(prof["categories"])
        ref_props = np.asarray([*prof["categories"].values(), prof["other"], prof["missing"]], dtype=float)
        counts = values.counts.bins if isinstance(values, Binned) else _category_counts(values, keys)
        n_total = int(counts.sum())
        n = n_total - int(counts[-1])
        stats = prof["stats"]
        data = FeatureData(
            name=name,
            type="categorical",
            n_reference_rows=int(prof.get("n", stats["count"])),
            n_current_rows=n_total,
            n_reference=int(stats["count"]),
            n_current=n,
            reference_bins=ref_props,
            current_bins=counts,
            reference_missing_rate=float(stats["missing_rate"]),
            current_missing_rate=int(counts[-1]) / max(n_total, 1),
            n_out_of_range=int(counts[-2]),
            cache=self._cache[key],
        )
        return data, [*keys, OTHER, "missing"]


def _decisive(results: Mapping[str, StatResult], level: str, levels_of: Any) -> str:
    """The first test at `level`; when all are ok, the one closest to its monitor level."""
    if not results:
        return ""
    if level != "ok":
        return next(name for name, r in results.items() if r.level == level)

    def closeness(r: StatResult) -> float:
        if r.value is None or not math.isfinite(r.value):
            return -1.0
        limit = max(levels_of(r.name)[0], r.floor or 0.0)
        return r.value / limit if limit > 0 else 0.0

    return max(results.values(), key=closeness).name


def _numeric_labels(edges: np.ndarray) -> list[str]:
    """Bin labels; a bin [v, nextafter(v)) holds the single value v (a point bin)."""
    if edges.size == 0:
        return ["all", "missing"]
    e = [f"{v:.4g}" for v in edges.tolist()]
    point_end = [i > 0 and float(edges[i]) == float(np.nextafter(edges[i - 1], np.inf)) for i in range(edges.size)]

    def left(i: int) -> str:
        return f"({e[i - 1]}" if point_end[i] else f"[{e[i]}"

    labels = [f"< {e[0]}"]
    for i in range(edges.size - 1):
        labels.append(f"= {e[i]}" if point_end[i + 1] else f"{left(i)}, {e[i + 1]})")
    labels.append(f"> {e[-2]}" if point_end[-1] else f">= {e[-1]}")
    return [*labels, "missing"]


def _histogram(labels: list[str], reference: np.ndarray, counts: np.ndarray) -> dict[str, list[Any]]:
    total = counts.sum()
    current = counts / total if total else counts.astype(float)
    return {
        "labels": labels,
        "reference": [round(float(v), 6) for v in reference],
        "current": [round(float(v), 6) for v in current],
    }


__all__ = [
    "DRIFTED",
    "LEGACY_KEYS",
    "LEVELS",
    "DriftCalculator",
    "DriftReport",
    "DriftThresholds",
    "FeatureDrift",
    "grade",
    "worst",
]
