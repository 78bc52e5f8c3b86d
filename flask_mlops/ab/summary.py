"""Sufficient statistics per variant, computed from logged outcomes held as numpy arrays.

Every statistic in `stats.py` and every guardrail needs only these few numbers, so a
million logged outcomes are summarised once (vectorised, a few milliseconds) and the
tests run on the summaries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..jsonable import JSON_NAME, json_fields


@dataclass(frozen=True)
class VariantSummary:
    """What one variant saw: requests, errors, labelled outcomes, successes, latency."""

    n: int  # requests served by this variant
    errors: int = 0  # of which failed
    labelled: int = 0  # requests with a primary-metric outcome (feedback arrived)
    successes: int = 0  # labelled outcomes that count as success (correct / positive)
    latency_mean: float = field(default=math.nan, metadata={JSON_NAME: "latency_mean_ms"})  # ms
    latency_var: float = field(default=math.nan, metadata={JSON_NAME: "latency_var_ms2"})  # ms², sample variance (ddof=1)
    latency_p95: float = field(default=math.nan, metadata={JSON_NAME: "latency_p95_ms"})  # ms
    #: distinct units assigned (random-assigned requests count one each); None = unknown.
    #: The sample-ratio check counts units, because one user's many requests are not independent.
    units: int | None = None
    #: "proportion": each labelled outcome is a success or not (accuracy); "mean": a number per
    #: labelled outcome (absolute error of a regression model), compared by Welch's t-test
    outcome: str = "proportion"
    outcome_mean: float = math.nan  # of the labelled outcomes ("mean" outcomes)
    outcome_var: float = math.nan  # sample variance (ddof=1) of the labelled outcomes

    def __post_init__(self) -> None:
        if min(self.n, self.errors, self.labelled, self.successes) < 0:
            raise ValueError("counts must not be negative")
        if self.errors > self.n or self.successes > self.labelled:
            raise ValueError("errors must be ≤ n and successes ≤ labelled")

    @property
    def error_rate(self) -> float:
        """Failed requests per request."""
        return self.errors / self.n if self.n else math.nan

    @property
    def rate(self) -> float:
        """The primary metric: share of labelled outcomes that are successes (their mean, for "mean" outcomes)."""
        if self.outcome == "mean":
            return self.outcome_mean
        return self.successes / self.labelled if self.labelled else math.nan

    def to_dict(self) -> dict[str, Any]:
        """The fields by their JSON keys and the two rates (NaN as null): the API's `VariantOut`."""
        return json_fields(self, *DERIVED)


#: the properties `to_dict` carries beside the fields
DERIVED = ("error_rate", "rate")


def _p95(values: np.ndarray) -> float:
    """The 95th percentile with numpy's default linear interpolation, via one partition."""
    if values.size == 0:
        return math.nan
    h = (values.size - 1) * 0.95
    lo = int(h)
    hi = min(lo + 1, values.size - 1)
    part = np.partition(values, [lo, hi])
    return float(part[lo] + (h - lo) * (part[hi] - part[lo]))


def _latency(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, sample variance, p95) of one variant's latencies in ms."""
    mean = float(values.mean()) if values.size else math.nan
    var = float(values.var(ddof=1)) if values.size > 1 else math.nan
    return mean, var, _p95(values)


def summarize(
    variant: ArrayLike,
    outcome: ArrayLike | None = None,
    latency: ArrayLike | None = None,
    error: ArrayLike | None = None,
    *,
    kind: str = "proportion",
) -> tuple[VariantSummary, VariantSummary]:
    """(control, treatment) summaries from per-record arrays; `variant` is 0=control, 1=treatment.

    `outcome` is NaN where no label arrived; with `kind="proportion"` a value > 0.5 is a
    success, with `kind="mean"` the values themselves are summarised (mean and variance).

    Counts come from masked `count_nonzero` (no copies); only latency is split per variant,
    because its p95 needs the values. About 20 ms for 1,000,000 records.
    """
    is_t = np.asarray(variant).astype(bool, copy=False)
    total, n_t = int(is_t.size), int(np.count_nonzero(is_t))
    counts = {"n": (total - n_t, n_t)}
    moments: list[tuple[float, float]] = [(math.nan, math.nan), (math.nan, math.nan)]
    if error is not None:
        err = np.asarray(error).astype(bool, copy=False)
        e_all, e_t = int(np.count_nonzero(err)), int(np.count_nonzero(err & is_t))
        counts["errors"] = (e_all - e_t, e_t)
    if outcome is not None:
        out = np.asarray(outcome, dtype=np.float64)
        known, hit = ~np.isnan(out), out > 0.5
        k_all, k_t = int(np.count_nonzero(known)), int(np.count_nonzero(known & is_t))
        s_all, s_t = int(np.count_nonzero(hit)), int(np.count_nonzero(hit & is_t))
        counts["labelled"], counts["successes"] = (k_all - k_t, k_t), (s_all - s_t, s_t)
        if kind == "mean":
            counts["successes"] = (0, 0)
            moments = [_moments(out[known & ~is_t]), _moments(out[known & is_t])]
    lat: list[tuple[float, float, float]] = [(math.nan,) * 3, (math.nan,) * 3]  # type: ignore[list-item]
    if latency is not None:
        values = np.asarray(latency, dtype=np.float64)
        lat = [_latency(values[~is_t]), _latency(values[is_t])]
    def count(key: str, i: int) -> int:
        return counts.get(key, (0, 0))[i]

    parts = [
        VariantSummary(
            count("n", i), count("errors", i), count("labelled", i), count("successes", i), *lat[i],
            outcome=kind, outcome_mean=moments[i][0], outcome_var=moments[i][1],
        )
        for i in (0, 1)
    ]
    return parts[0], parts[1]


def _moments(values: np.ndarray) -> tuple[float, float]:
    """(mean, sample variance) of labelled numeric outcomes."""
    mean = float(values.mean()) if values.size else math.nan
    return mean, float(values.var(ddof=1)) if values.size > 1 else math.nan
