"""Drift statistics: small pure functions, each registered with its metadata.

Every test is looked up by name in `STATTESTS` (as Evidently does); an unknown name
raises an error that lists the registered ones. Two input shapes exist:

* ``proportions`` tests (PSI, Jensen–Shannon, chi-square) take the reference
  proportions of a fixed set of bins and the current counts or proportions of the same
  bins — the reference keeps only its bins, never its rows;
* ``samples`` tests (KS, normed Wasserstein) take the *sorted* reference sample kept in
  the profile and the *sorted* current values. Sorting the window once (``np.sort`` is
  SIMD-accelerated, ~12 ms per million floats) is cheaper than one binary-search pass,
  and afterwards every CDF question about the window is a `searchsorted` of a few
  thousand reference points into it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import MLOpsError

#: proportions are clipped to at least this before logs are taken (empty bins)
PSI_EPSILON = 1e-4
#: scipy's ks_2samp switches from the exact p-value to the asymptotic one above this size
KS_EXACT_MAX_N = 10_000


class UnknownStatTestError(MLOpsError, KeyError):
    code_name = "unknown_stattest"


@dataclass(frozen=True)
class StatTest:
    """A registered drift statistic and what it applies to."""

    name: str
    func: Callable[..., Any]
    feature_types: tuple[str, ...]
    default_threshold: float
    kind: str  # "pvalue": drift below the threshold; "distance": drift above it
    inputs: str  # "proportions" or "samples"
    description: str

    def drifted(self, value: float, threshold: float | None = None) -> bool:
        limit = self.default_threshold if threshold is None else threshold
        return value < limit if self.kind == "pvalue" else value >= limit


STATTESTS: dict[str, StatTest] = {}


def register_stattest(
    name: str, *, feature_types: tuple[str, ...], default_threshold: float, kind: str, inputs: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: add a function to `STATTESTS` under `name`."""

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        if name in STATTESTS:
            raise ValueError(f"stat test {name!r} is already registered")
        doc = (func.__doc__ or "").strip().splitlines()
        STATTESTS[name] = StatTest(name, func, feature_types, default_threshold, kind, inputs, doc[0] if doc else "")
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


def _as_proportions(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    total = arr.sum()
    return arr / total if total > 0 else arr


@register_stattest("psi", feature_types=("numeric", "categorical"), default_threshold=0.2, kind="distance", inputs="proportions")
def psi(reference: Any, current: Any, *, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index: sum((c - r) * ln(c / r)) over bins, empty bins clipped to epsilon."""
    r = np.clip(_as_proportions(reference), epsilon, None)
    c = np.clip(_as_proportions(current), epsilon, None)
    return float(np.sum((c - r) * np.log(c / r)))


@register_stattest("jensenshannon", feature_types=("numeric", "categorical"), default_threshold=0.1, kind="distance", inputs="proportions")
def jensen_shannon(reference: Any, current: Any) -> float:
    """Jensen–Shannon distance (natural log, as `scipy.spatial.distance.jensenshannon`)."""
    p = _as_proportions(reference)
    q = _as_proportions(current)
    m = (p + q) / 2.0

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log(a[mask] / m[mask])))

    return math.sqrt(max((kl(p) + kl(q)) / 2.0, 0.0))


@register_stattest("chisquare", feature_types=("categorical",), default_threshold=0.05, kind="pvalue", inputs="proportions")
def chi_square(reference: Any, current_counts: Any, *, epsilon: float = PSI_EPSILON) -> tuple[float, float]:
    """Chi-square goodness of fit of the current counts to the reference proportions: (stat, p)."""
    from scipy.stats import chisquare

    counts = np.asarray(current_counts, dtype=float)
    expected = np.clip(_as_proportions(reference), epsilon, None)
    expected = expected / expected.sum() * counts.sum()
    if counts.size < 2 or counts.sum() == 0:
        return 0.0, 1.0
    stat, pvalue = chisquare(counts, expected)
    return float(stat), float(pvalue)


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


@register_stattest("ks", feature_types=("numeric",), default_threshold=0.05, kind="pvalue", inputs="samples")
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


@register_stattest("wasserstein", feature_types=("numeric",), default_threshold=0.1, kind="distance", inputs="samples")
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


__all__ = [
    "PSI_EPSILON",
    "STATTESTS",
    "StatTest",
    "UnknownStatTestError",
    "chi_square",
    "get_stattest",
    "jensen_shannon",
    "ks",
    "psi",
    "register_stattest",
    "wasserstein_normed",
]
