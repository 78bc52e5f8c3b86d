"""Drift tests: pure statistics, and the registry the drift calculator picks them from by name.

A registered test (`register_stattest`) is a function ``(data: FeatureData, levels,
alpha) -> StatResult``: it reads the prepared columns of one feature (reference bins and
sample, current counts and sorted values), computes its statistic and grades it against
its three levels (monitor, warning, critical). The levels live here, once, as the test's
defaults; configuration may override them per feature. `get_stattest` raises an error
listing the registered names for an unknown one (as Evidently's registry does).

Every test raises a level only for a difference that is *real at this sample size*:

* significance tests (kind ``"pvalue"``: ks, chisquare, missing_rate, out_of_range,
  declared_range) need ``p < alpha`` and their effect past the level;
* effect sizes (kind ``"distance"``: psi, jensenshannon, wasserstein) need their value
  past the level *and* past the noise floor — the value that sampling noise alone
  exceeds in a fraction ``alpha`` of windows of this size against this reference,
  derived from both sample sizes (so no fixed "large sample" cut is needed).

The statistic functions (`psi`, `ks`, ...) are plain functions of arrays, equal to
scipy's / Evidently's given the same inputs; the samples tests take *sorted* arrays.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError, MLOpsError

#: proportions are clipped to at least this before logs are taken (empty bins)
PSI_EPSILON = 1e-4
#: scipy's ks_2samp switches from the exact p-value to the asymptotic one above this size
KS_EXACT_MAX_N = 10_000
LEVEL_NAMES = ("ok", "monitor", "warning", "critical")

Levels = tuple[float, float, float]


class UnknownStatTestError(MLOpsError, KeyError):
    code_name = "unknown_stattest"


# -- what a test sees and what it answers ---------------------------------------------------
@dataclass
class FeatureData:
    """One feature of one window, prepared once by the drift calculator for every test.

    Bins: numeric features use the reference's bins plus a last missing bin; categorical
    ones ``[categories..., other, missing]``. ``reference_bins`` are proportions of all
    reference rows, ``current_bins`` counts of all window rows. Numeric features also
    carry the sorted reference sample and the sorted non-missing window values.
    """

    name: str
    type: str  # "numeric" | "categorical"
    n_reference_rows: int
    n_current_rows: int
    n_reference: int  # non-missing
    n_current: int
    reference_bins: np.ndarray
    current_bins: np.ndarray
    reference_missing_rate: float
    current_missing_rate: float
    reference_sample: np.ndarray | None = None
    current_values: np.ndarray | None = None
    scale: float | None = None
    declared_range: tuple[float | None, float | None] | None = None
    #: numeric: window values outside the reference's [min, max]; categorical: in "other"
    n_out_of_range: int = 0
    #: numeric, from aggregates: window values outside the declared range, counted exactly
    #: (else counted on `current_values`)
    n_declared_out: int | None = None
    #: numeric: the values with a point bin of their own (zeros of a zero-inflated feature)
    point_values: np.ndarray | None = None
    #: per-feature memo kept by the calculator across windows (reference-only quantities)
    cache: dict[str, Any] = field(default_factory=dict)


@dataclass
class StatResult:
    """A test's answer: its statistic, p-value and noise floor where it has them, and a level."""

    name: str
    value: float | None
    level: str = "ok"
    pvalue: float | None = None
    floor: float | None = None
    why: str = ""
    extra: dict[str, float | int | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": _finite(self.value), "level": self.level}
        if self.pvalue is not None:
            out["pvalue"] = _finite(self.pvalue)
        if self.floor is not None:
            out["floor"] = _finite(self.floor)
        out.update({k: _finite(v) if isinstance(v, float) else v for k, v in self.extra.items()})
        out["why"] = self.why
        return out


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


StatFunc = Callable[[FeatureData, Levels, float], StatResult]


@dataclass(frozen=True)
class StatTest:
    """A registered drift test: its function, where it applies and its default levels."""

    name: str
    func: StatFunc
    feature_types: tuple[str, ...]
    levels: Levels  # monitor, warning, critical, on the test's `value`
    kind: str  # "pvalue": needs p < alpha; "distance": needs value >= noise floor
    description: str

    def drifted(self, value: float, threshold: float | None = None) -> bool:
        """Whether `value` reaches the warning level (or `threshold`): drift, if it is also real."""
        return value >= (self.levels[1] if threshold is None else threshold)

    def run(self, data: FeatureData, levels: Levels | None = None, alpha: float = 0.001) -> StatResult:
        result = self.func(data, self.levels if levels is None else levels, alpha)
        result.name = self.name
        return result


STATTESTS: dict[str, StatTest] = {}

#: the tests run on a feature of each type unless configured otherwise, in tie-break order
DEFAULT_STATTESTS: dict[str, tuple[str, ...]] = {
    "numeric": ("missing_rate", "out_of_range", "declared_range", "ks", "ks_rest", "wasserstein", "psi"),
    "categorical": ("missing_rate", "out_of_range", "chisquare", "jensenshannon", "psi"),
}


def register_stattest(
    name: str, *, feature_types: tuple[str, ...], levels: Levels, kind: str
) -> Callable[[StatFunc], StatFunc]:
    """Decorator: add a test function to `STATTESTS` under `name` (its docstring describes it)."""
    if kind not in ("pvalue", "distance"):
        raise ValueError(f"kind must be 'pvalue' or 'distance', got {kind!r}")
    if len(levels) != 3 or not levels[0] <= levels[1] <= levels[2]:
        raise ValueError(f"levels must be three increasing numbers, got {levels!r}")

    def decorator(func: StatFunc) -> StatFunc:
        if name in STATTESTS:
            raise ValueError(f"stat test {name!r} is already registered")
        doc = (func.__doc__ or "").strip().splitlines()
        STATTESTS[name] = StatTest(name, func, tuple(feature_types), tuple(float(v) for v in levels), kind, doc[0] if doc else "")  # type: ignore[arg-type]
        return func

    return decorator


def get_stattest(name: str) -> StatTest:
    try:
        return STATTESTS[name]
    except KeyError:
        raise UnknownStatTestError(
            f"unknown stat test {name!r}; registered: {', '.join(sorted(STATTESTS))}",
            details={"registered": sorted(STATTESTS)},
        ) from None


def grade(value: float | None, levels: Levels, floor: float = 0.0) -> str:
    """The highest level whose threshold (and the noise floor) `value` reaches; "ok" for None/NaN."""
    if value is None or math.isnan(value):
        return "ok"
    level = "ok"
    for name, limit in zip(LEVEL_NAMES[1:], levels, strict=False):
        if value >= max(limit, floor):
            level = name
    return level


def _explain(result: StatResult, levels: Levels, alpha: float, what: str) -> StatResult:
    """Fill `why` from the level: which threshold was reached, or what kept it at ok."""
    value = result.value
    shown = f"{what} {value:.3g}" if value is not None and math.isfinite(value) else f"{what} n/a"
    if result.pvalue is not None:
        shown += f", p={result.pvalue:.3g}"
    if result.level != "ok":
        limit = levels[LEVEL_NAMES.index(result.level) - 1]
        result.why = f"{shown} >= {limit:.3g} ({result.level})"
        if result.floor is not None and result.floor > limit:
            result.why += f", past the noise floor {result.floor:.3g}"
    elif result.pvalue is not None and result.pvalue >= alpha and value is not None and value >= levels[0]:
        result.why = f"{shown}: not significant (p >= {alpha:g})"
    elif result.floor is not None and value is not None and value >= levels[0]:
        result.why = f"{shown} < noise floor {result.floor:.3g}"
    else:
        result.why = f"{shown} < {levels[0]:.3g}"
    return result


def _significant(result: StatResult, levels: Levels, alpha: float, what: str) -> StatResult:
    """Grade a significance test: its effect `value` counts only when p < alpha."""
    if result.pvalue is not None and result.pvalue < alpha:
        result.level = grade(result.value, levels)
    return _explain(result, levels, alpha, what)


def _beyond_noise(result: StatResult, levels: Levels, alpha: float, what: str) -> StatResult:
    """Grade an effect size: its value counts past both its level and its noise floor."""
    result.level = grade(result.value, levels, result.floor or 0.0)
    return _explain(result, levels, alpha, what)


# -- statistics ---------------------------------------------------------------------------------
def _as_proportions(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    total = arr.sum()
    return arr / total if total > 0 else arr


def psi(reference: Any, current: Any, *, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index: sum((c - r) * ln(c / r)) over bins, empty bins clipped to epsilon."""
    r = np.clip(_as_proportions(reference), epsilon, None)
    c = np.clip(_as_proportions(current), epsilon, None)
    return float(np.sum((c - r) * np.log(c / r)))


def jensen_shannon(reference: Any, current: Any) -> float:
    """Jensen–Shannon distance (natural log, as `scipy.spatial.distance.jensenshannon`)."""
    p = _as_proportions(reference)
    q = _as_proportions(current)
    m = (p + q) / 2.0

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log(a[mask] / m[mask])))

    return math.sqrt(max((kl(p) + kl(q)) / 2.0, 0.0))


def total_variation(reference: Any, current: Any) -> float:
    """Half the L1 distance of two distributions: the largest share any set of cells moved."""
    return float(0.5 * np.abs(_as_proportions(reference) - _as_proportions(current)).sum())


def chi_square(reference: Any, current_counts: Any, *, epsilon: float = PSI_EPSILON, n_reference: int | None = None) -> tuple[float, float]:
    """Chi-square of the current counts against the reference: (stat, p).

    Without `n_reference`: goodness of fit to the reference proportions taken as exact
    (as `scipy.stats.chisquare`). With it: the two-sample test of homogeneity on the 2 x K
    table of reference counts (proportions x n_reference) and current counts — the
    reference's own sampling error included — see `chi_square_two_sample`.
    """
    counts = np.asarray(current_counts, dtype=float)
    if n_reference is not None:
        stat, pvalue, _ = chi_square_two_sample(np.asarray(reference, dtype=float) * n_reference, counts)
        return stat, pvalue
    from scipy.stats import chisquare

    expected = np.clip(_as_proportions(reference), epsilon, None)
    expected = expected / expected.sum() * counts.sum()
    if counts.size < 2 or counts.sum() == 0:
        return 0.0, 1.0
    stat, pvalue = chisquare(counts, expected)
    return float(stat), float(pvalue)


def chi_square_two_sample(reference_counts: Any, current_counts: Any, *, min_expected: float = 5.0) -> tuple[float, float, int]:
    """Pearson's test of homogeneity of two count vectors: (stat, p, degrees of freedom).

    Cells empty in both samples do not exist and add no degree of freedom; cells whose
    expected count is under `min_expected` in either row are pooled into one (Cochran's
    rule), so rare categories cannot inflate the statistic.
    """
    from scipy.stats import chi2

    table = np.vstack([np.asarray(reference_counts, dtype=float), np.asarray(current_counts, dtype=float)])
    table = table[:, table.sum(axis=0) > 0]
    rows = table.sum(axis=1)
    if table.shape[1] < 2 or rows.min() <= 0:
        return 0.0, 1.0, 0
    expected_min = table.sum(axis=0) * rows.min() / rows.sum()
    sparse = expected_min < min_expected
    if sparse.any():
        pooled = table[:, sparse].sum(axis=1, keepdims=True)
        table = np.hstack([table[:, ~sparse], pooled])
        if table.shape[1] >= 2 and pooled.sum() * rows.min() / rows.sum() < min_expected:
            # still too small: merge the pooled cell into the smallest other one
            smallest = int(np.argmin(table[:, :-1].sum(axis=0)))
            table[:, smallest] += table[:, -1]
            table = table[:, :-1]
    if table.shape[1] < 2:
        return 0.0, 1.0, 0
    expected = np.outer(rows, table.sum(axis=0)) / rows.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    return stat, float(chi2.sf(stat, dof)), dof


def _ks_statistic_sorted(ref: np.ndarray, cur: np.ndarray) -> float:
    """max |F_ref - F_cur| over every point of both samples, evaluated at the reference points.

    Between two consecutive reference points F_ref is flat, so the extremes over the
    current points there are reached just at a reference point (<=) or just below the
    next one (<); both come from two `searchsorted`s of the reference into the window.
    This equals scipy's `ks_2samp` statistic exactly, ties included.
    """
    n1, n2 = ref.size, cur.size
    f1_le = np.searchsorted(ref, ref, side="right") / n1
    f1_lt = np.searchsorted(ref, ref, side="left") / n1
    below = np.searchsorted(cur, ref, side="left")
    upto = below.copy()
    # only reference points that occur in the window need the second (<=) search
    tied = cur[np.minimum(below, n2 - 1)] == ref
    if tied.any():
        upto[tied] = np.searchsorted(cur, ref[tied], side="right")
    f2_le = upto / n2
    f2_lt = below / n2
    return float(max(np.max(np.abs(f1_le - f2_le)), np.max(np.abs(f1_lt - f2_lt))))


def ks(reference_sorted: np.ndarray, current_sorted: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov (statistic, p-value) with `scipy.stats.ks_2samp` semantics.

    Both inputs must be sorted and free of NaN. Small samples (both <= 10,000) go to scipy
    itself (exact p-value); above that the statistic is computed from the sorted window
    in O(n_ref log n_cur) and the p-value from the same asymptotic formula scipy uses.
    """
    import warnings

    from scipy import stats

    n1, n2 = reference_sorted.size, current_sorted.size
    if n1 == 0 or n2 == 0:
        raise ValueError("ks needs non-empty samples")
    if max(n1, n2) <= KS_EXACT_MAX_N:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # exact -> asymp fallback notice
            result = stats.ks_2samp(reference_sorted, current_sorted)
        return float(result.statistic), float(result.pvalue)
    d = _ks_statistic_sorted(reference_sorted, current_sorted)
    m, n = sorted((float(n1), float(n2)), reverse=True)
    pvalue = float(np.clip(stats.kstwo.sf(d, np.round(m * n / (m + n))), 0.0, 1.0))
    return d, pvalue


def wasserstein_normed(reference_sorted: np.ndarray, current_sorted: np.ndarray, scale: float) -> float:
    """Earth mover's distance between the two distributions, divided by the reference std.

    W1 = integral over u of |Q_ref(u) - Q_cur(u)|, taken on the midpoints of a grid as fine
    as the larger of the two samples allows (capped at 20,000 points): exact when the
    sizes divide each other, within a grid cell otherwise.
    """
    n1, n2 = reference_sorted.size, current_sorted.size
    if n1 == 0 or n2 == 0:
        return float("nan")
    grid = min(max(n1, n2), 20_000)
    u = (np.arange(grid) + 0.5) / grid
    q1 = reference_sorted[np.minimum((u * n1).astype(np.int64), n1 - 1)]
    q2 = current_sorted[np.minimum((u * n2).astype(np.int64), n2 - 1)]
    distance = float(np.mean(np.abs(q1 - q2)))
    if not scale or not math.isfinite(scale):
        return 0.0 if distance == 0.0 else float("inf")
    return distance / scale


# -- noise floors ---------------------------------------------------------------------------------
def psi_noise_floor(reference: Any, n_reference: int, n_current: int, alpha: float) -> float:
    """PSI that noise alone exceeds with probability `alpha` at these sample sizes.

    Under no change, PSI (a symmetrised KL divergence) is close to the two-sample Pearson
    statistic divided by the effective size: (1/n_ref + 1/n_cur) * chi2(df), df = the bins
    the reference populates minus one. Where some bin expects fewer than 5 values in
    either sample, empty bins (clipped to epsilon) make PSI's tail heavier than that, so
    the floor is also simulated (both samples redrawn from the reference's shares) and
    the larger of the two is used.
    """
    return _noise_floors(reference, n_reference, n_current, alpha)[0]


def js_noise_floor(reference: Any, n_reference: int, n_current: int, alpha: float) -> float:
    """Jensen–Shannon distance that noise alone exceeds with probability `alpha`.

    The divergence is close to PSI / 8 near no change, so sqrt(PSI floor / 8); with sparse
    bins, the simulated quantile when larger.
    """
    return _noise_floors(reference, n_reference, n_current, alpha)[1]


#: draws of the simulated floor (its 1 - alpha quantile needs alpha * draws >= ~10)
_FLOOR_DRAWS = 10_000


def _noise_floors(reference: Any, n_reference: int, n_current: int, alpha: float) -> tuple[float, float]:
    from scipy.stats import chi2

    p = _as_proportions(np.asarray(reference, dtype=float))
    n_ref, n_cur = max(int(n_reference), 1), max(int(n_current), 1)
    dof = max(int(np.count_nonzero(p > 0)) - 1, 1)
    psi_floor = float((1.0 / n_ref + 1.0 / n_cur) * chi2.isf(alpha, dof))
    floors = (psi_floor, math.sqrt(psi_floor / 8.0))
    present = p[p > 0]
    if present.size < 2 or min(n_ref, n_cur) * float(present.min()) >= 5.0:
        return floors
    # sizes rounded down to two significant digits (a slightly higher, cached floor)
    simulated = _simulated_floors(tuple(np.round(p, 12).tolist()), _round_down(n_ref), _round_down(n_cur), float(alpha))
    return max(floors[0], simulated[0]), max(floors[1], simulated[1])


def _round_down(n: int) -> int:
    digits = max(len(str(n)) - 2, 0)
    return max((n // 10**digits) * 10**digits, 1)


@functools.lru_cache(maxsize=256)
def _simulated_floors(p: tuple[float, ...], n_ref: int, n_cur: int, alpha: float) -> tuple[float, float]:
    """The 1 - alpha quantiles of PSI and JS between two multinomial samples of the same shares."""
    shares = np.asarray(p) / np.sum(p)
    shares[:-1] *= 1.0 - 1e-12  # numpy checks sum(shares[:-1]) <= 1 without rounding slack
    rng = np.random.default_rng(20_261_202)
    ref = rng.multinomial(n_ref, shares, size=_FLOOR_DRAWS) / n_ref
    cur = rng.multinomial(n_cur, shares, size=_FLOOR_DRAWS) / n_cur
    r = np.clip(ref, PSI_EPSILON, None)
    c = np.clip(cur, PSI_EPSILON, None)
    psis = np.sum((c - r) * np.log(c / r), axis=1)
    m = (ref + cur) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_r = np.where(ref > 0, ref * np.log(ref / m), 0.0).sum(axis=1)
        kl_c = np.where(cur > 0, cur * np.log(cur / m), 0.0).sum(axis=1)
    js = np.sqrt(np.maximum((kl_r + kl_c) / 2.0, 0.0))
    q = 1.0 - max(alpha, 10.0 / _FLOOR_DRAWS)
    return float(np.quantile(psis, q)), float(np.quantile(js, q))


#: multiples of the standard deviation above the mean of the Wasserstein null that reach
#: its 1 - alpha quantile, measured on normal, exponential, log-normal and zero-inflated
#: data (bench/drift_power.py); the z of a normal tail plus a margin for the skew
_W_SKEW_MARGIN = 1.4


def _wasserstein_null_moments(sample: np.ndarray, grid: int = 100) -> tuple[float, float]:
    """Mean and sd of the integral of |B(F(x))| dx for a Brownian bridge B, F the reference cdf.

    sqrt(n_eff) * W1 converges to it under no change. E|B(s)||B(t)| for the Gaussian pair
    is (2/pi) sd_s sd_t (sqrt(1 - rho^2) + rho arcsin rho); the integral is taken over
    `grid` quantile cells of the reference sample, weighted by their width in x.
    """
    n = sample.size
    if n < 2:
        return 0.0, 0.0
    u = np.arange(1, n) / n
    cell = np.minimum((u * grid).astype(np.int64), grid - 1)
    width = np.bincount(cell, weights=np.diff(sample), minlength=grid)
    mid = (np.arange(grid) + 0.5) / grid
    sd = np.sqrt(mid * (1.0 - mid))
    lo = np.minimum.outer(mid, mid)
    hi = np.maximum.outer(mid, mid)
    rho = np.clip(lo * (1.0 - hi) / np.outer(sd, sd), -1.0, 1.0)
    joint = (2.0 / math.pi) * np.outer(sd, sd) * (np.sqrt(1.0 - rho**2) + rho * np.arcsin(rho))
    mean = math.sqrt(2.0 / math.pi) * float(width @ sd)
    var = float(width @ (joint - (2.0 / math.pi) * np.outer(sd, sd)) @ width)
    return mean, math.sqrt(max(var, 0.0))


def wasserstein_noise_floor(sample: np.ndarray, n_current: int, scale: float, alpha: float, cache: dict[str, Any] | None = None) -> float:
    """Normed W1 that noise alone exceeds with probability about `alpha` (sizes of both samples)."""
    from scipy.stats import norm

    cache = {} if cache is None else cache
    if "w_null" not in cache:
        cache["w_null"] = _wasserstein_null_moments(sample)
    mean, sd = cache["w_null"]
    if not scale or not math.isfinite(scale):
        return 0.0
    k = float(norm.isf(alpha)) + _W_SKEW_MARGIN
    return (mean + k * sd) * math.sqrt(1.0 / max(sample.size, 1) + 1.0 / max(n_current, 1)) / scale


def _fisher_greater(k_cur: int, n_cur: int, k_ref: int, n_ref: int, *, two_sided: bool = False) -> float:
    """Fisher's exact p-value that the current share k_cur/n_cur exceeds the reference's."""
    from scipy.stats import fisher_exact

    if n_cur <= 0 or n_ref <= 0:
        return 1.0
    table = [[k_cur, n_cur - k_cur], [k_ref, n_ref - k_ref]]
    return float(fisher_exact(table, alternative="two-sided" if two_sided else "greater").pvalue)


# -- registered tests -----------------------------------------------------------------------------
@register_stattest("psi", feature_types=("numeric", "categorical"), levels=(0.1, 0.2, 0.3), kind="distance")
def psi_test(data: FeatureData, levels: Levels, alpha: float) -> StatResult:
    """Population stability index on the reference bins (missing values in a bin of their own)."""
    value = psi(data.reference_bins, data.current_bins)
    floor = psi_noise_floor(data.reference_bins, data.n_reference_rows, data.n_current_rows, alpha)
    return _beyond_noise(StatResult("psi", value, floor=floor), levels, alpha, "PSI")


@register_stattest("jensenshannon", feature_types=("numeric", "categorical"), levels=(0.05, 0.1, 0.2), kind="distance")
def jensenshannon_test(data: FeatureData, levels: Levels, alpha: float) -> StatResult:
    """Jensen–Shannon distance of the binned distributions (missing values included)."""
    value = jensen_shannon(data.reference_bins, data.current_bins)
    floor = js_noise_floor(data.reference_bins, data.n_reference_rows, data.n_current_rows, alpha)
    return _beyond_noise(StatResult("jensenshannon", value, floor=floor), levels, alpha, "JS")


@register_stattest("wasserstein", feature_types=("numeric",), levels=(0.05, 0.1, 0.2), kind="distance")
def wasserstein_test(data: FeatureData, levels: Levels, alpha: float) -> StatResult:
    """Earth mover's distance of the non-missing values in reference standard deviations."""
    sample, values = data.reference_sample, data.current_values
    if sample is None or values is None or sample.size == 0 or values.size == 0:
        return StatResult("wasserstein", None, why="no non-missing values to compare")
    scale = data.scale or 1.0
    value = wasserstein_normed(sample, values, scale)
    floor = wasserstein_noise_floor(sample, values.size, scale, alpha, data.cache)
    return _beyond_noise(StatResult("wasserstein", value, floor=floor), levels, alpha, "normed Wasserstein")


@register_stattest("ks", feature_types=("numeric",), levels=(0.05, 0.1, 0.2), kind="pvalue")
def ks_test(data: FeatureData, levels: Levels, alpha: float) -> StatResult:
    """Two-sample Kolmogorov–Smirnov on the non-missing values: D graded when p < alpha."""
    sample, values = data.reference_sample, data.current_values
    if sample is None or values is None or sample.size == 0 or values.size == 0:
        return StatResult("ks", None, why="no non-missing values to compare")
    d, pvalue = ks(sample, values)
    return _significant(StatResult("ks", d, pvalue=pvalue), levels, alpha, "KS D")


@register_stattest("ks_rest", feature_types=("numeric",), levels=(0.1, 0.2, 0.3), kind="pvalue")
def ks_rest_test(data: FeatureData, levels: Levels, alpha: float) -> StatResult:
    """KS on the values outside the point bins: the non-zero part of a zero-inflated feature.

    With 97 % zeros, a change of every non-zero value moves the whole-feature KS by at
    most 0.03; compared on their own (a two-part comparison, with the zero share left to
    PSI and KS), they show it. Features without point bins have nothing to add (ok).
    """
    sample, values, points = data.reference_sample, data.current_values, data.point_values
    if points is None or points.size == 0 or sample is None or values is None:
        return StatResult("ks_rest", None, why="no point bins: the whole-feature KS covers it")
    ref = sample[~np.isin(sample, points)]
    cur = values[~np.isin(values, points)]
    if ref.size == 0 or cur.size == 0:
        return StatResult("ks_rest", None, why="no values outside the point bins to compare")
    d, pvalue = ks(ref, cur)
    return _significant(StatResult("ks_rest", d, pvalue=pvalue, extra={"n_reference": int(ref.size), "n_current": int(cur.size)}), levels, alpha, "KS D of the rest")


@register_stattest("chisquare", feature_types=("categorical",), levels=(0.025, 0.05, 0.1), kind="pvalue")
def chisquare_test(data: FeatureData, levels: Levels, alpha: float) -> StatResult:
    """Two-sample chi-square on the categories (reference counts, cells that exist): share moved graded when p < alpha."""
    ref = np.asarray(data.reference_bins[:-1], dtype=float) * data.n_reference_rows
    cur = np.asarray(data.current_bins[:-1], dtype=float)
    stat, pvalue, dof = chi_square_two_sample(ref, cur)
    moved = total_variation(ref, cur) if cur.sum() > 0 and ref.sum() > 0 else None
    result = StatResult("chisquare", moved, pvalue=pvalue, extra={"statistic": stat, "dof": dof})
    return _significant(result, levels, alpha, "share moved")


@register_stattest("missing_rate", feature_types=("numeric", "categorical"), levels=(0.025, 0.05, 0.1), kind="pvalue")
def missing_rate_test(data: FeatureData, levels: Levels, alpha: float) -> StatResult:
    """Change in the share of missing values (Fisher's exact test against the reference's count)."""
    k_ref = int(round(data.reference_missing_rate * data.n_reference_rows))
    k_cur = int(round(data.current_missing_rate * data.n_current_rows))
    change = abs(data.current_missing_rate - data.reference_missing_rate)
    pvalue = _fisher_greater(k_cur, data.n_current_rows, k_ref, data.n_reference_rows, two_sided=True) if change > 0 else 1.0
    extra: dict[str, float | int | None] = {"current": data.current_missing_rate, "reference": data.reference_missing_rate}
    return _significant(StatResult("missing_rate", change, pvalue=pvalue, extra=extra), levels, alpha, "missing share change")


@register_stattest("out_of_range", feature_types=("numeric", "categorical"), levels=(0.01, 0.02, 0.05), kind="pvalue")
def out_of_range_test(data: FeatureData, levels: Levels, alpha: float) -> StatResult:
    """Share of values outside the reference's range (numeric) or its known categories (categorical).

    Numeric: with no change, the mass outside [min, max] of n reference values is
    Beta(2, n - 1) (two of the n + 1 uniform spacings), so the window's count outside is
    beta-binomial — an exact p-value at every window size (conservative with ties).
    Categorical: the share in "other" (unseen values and the reference's rare tail)
    against the reference's own share, by Fisher's exact test; the value is the excess.
    """
    n_cur = data.n_current
    if n_cur == 0:
        return StatResult("out_of_range", None, why="no non-missing values")
    rate = data.n_out_of_range / n_cur
    if data.type == "numeric":
        from scipy.stats import betabinom

        n_ref = data.n_reference
        pvalue = float(betabinom.sf(data.n_out_of_range - 1, n_cur, 2, max(n_ref - 1, 1))) if data.n_out_of_range else 1.0
        return _significant(StatResult("out_of_range", rate, pvalue=pvalue, extra={"rate": rate}), levels, alpha, "share outside the reference range")
    other_share = float(data.reference_bins[-2]) / max(1.0 - data.reference_missing_rate, 1e-12)
    k_ref = int(round(other_share * data.n_reference))
    excess = max(rate - other_share, 0.0)
    pvalue = _fisher_greater(data.n_out_of_range, n_cur, k_ref, data.n_reference) if excess > 0 else 1.0
    extra: dict[str, float | int | None] = {"rate": rate, "reference": other_share}
    return _significant(StatResult("out_of_range", excess, pvalue=pvalue, extra=extra), levels, alpha, "excess share of unknown categories")


@register_stattest("declared_range", feature_types=("numeric",), levels=(0.001, 0.01, 0.05), kind="pvalue")
def declared_range_test(data: FeatureData, levels: Levels, alpha: float) -> StatResult:
    """Share of values outside the range declared in the model spec, beyond the reference's own share."""
    if data.declared_range is None or (data.current_values is None and data.n_declared_out is None) or data.n_current == 0:
        return StatResult("declared_range", None, why="no declared range" if data.declared_range is None else "no non-missing values")
    lo, hi = data.declared_range
    key = "declared_out"
    if key not in data.cache:
        data.cache[key] = _count_outside(data.reference_sample, lo, hi) if data.reference_sample is not None else 0
    k_ref, n_ref = int(data.cache[key]), int(data.reference_sample.size if data.reference_sample is not None else 0)
    k_cur = data.n_declared_out if data.n_declared_out is not None else _count_outside(data.current_values, lo, hi)  # type: ignore[arg-type]
    rate = k_cur / data.n_current
    ref_rate = k_ref / n_ref if n_ref else 0.0
    excess = max(rate - ref_rate, 0.0)
    pvalue = _fisher_greater(k_cur, data.n_current, k_ref, n_ref) if excess > 0 and n_ref else (0.0 if excess > 0 else 1.0)
    extra: dict[str, float | int | None] = {"rate": rate, "reference": ref_rate}
    return _significant(StatResult("declared_range", excess, pvalue=pvalue, extra=extra), levels, alpha, "excess share outside the declared range")


def _count_outside(sorted_values: np.ndarray, lo: float | None, hi: float | None) -> int:
    n = 0
    if lo is not None:
        n += int(np.searchsorted(sorted_values, lo, side="left"))
    if hi is not None:
        n += int(sorted_values.size - np.searchsorted(sorted_values, hi, side="right"))
    return n


def check_stattest_names(names: Any, key: str) -> None:
    """Raise a `ConfigError` naming `key` unless `names` is a list of registered tests."""
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{key} must be a non-empty list of stat test names, got {names!r}")
    for name in names:
        if name not in STATTESTS:
            raise ConfigError(f"{key}: unknown stat test {name!r}; registered: {', '.join(sorted(STATTESTS))}")


def resolve_stattests(names: Any, feature_type: str, key: str) -> tuple[StatTest, ...]:
    """The registered tests for `names`, checked to apply to `feature_type` (errors name `key`)."""
    check_stattest_names(names, key)
    out = []
    for name in names:
        test = STATTESTS[name]
        if feature_type not in test.feature_types:
            raise ConfigError(f"{key}: stat test {name!r} does not apply to {feature_type} features")
        out.append(test)
    return tuple(out)


__all__ = [
    "DEFAULT_STATTESTS",
    "FeatureData",
    "PSI_EPSILON",
    "STATTESTS",
    "StatResult",
    "StatTest",
    "UnknownStatTestError",
    "check_stattest_names",
    "chi_square",
    "chi_square_two_sample",
    "get_stattest",
    "grade",
    "jensen_shannon",
    "js_noise_floor",
    "ks",
    "psi",
    "psi_noise_floor",
    "register_stattest",
    "resolve_stattests",
    "total_variation",
    "wasserstein_noise_floor",
    "wasserstein_normed",
]
