"""Sufficient statistics per variant, computed from logged outcomes held as numpy arrays.

Every statistic in `stats.py` and every guardrail needs only these few numbers, so a
million logged outcomes are summarised once (vectorised, a few milliseconds) and the
tests run on the summaries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike


def jsonable(value: Any) -> Any:
    """JSON-friendly copy: NaN/inf → None, tuples → lists, recursively through dicts and lists."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class VariantSummary:
    """What one variant saw: requests, errors, labelled outcomes, successes, latency."""

    n: int  # requests served by this variant
    errors: int = 0  # of which failed
    labelled: int = 0  # requests with a primary-metric outcome (feedback arrived)
    successes: int = 0  # labelled outcomes that count as success (correct / positive)
    latency_mean: float = math.nan  # ms
    latency_var: float = math.nan  # ms², sample variance (ddof=1)
    latency_p95: float = math.nan  # ms

    def __post_init__(self) -> None:
        if min(self.n, self.errors, self.labelled, self.successes) < 0:
            raise ValueError("counts must not be negative")
        if self.errors > self.n or self.successes > self.labelled:
            raise ValueError("errors must be ≤ n and successes ≤ labelled")

    @property
    def error_rate(self) -> float:
        return self.errors / self.n if self.n else math.nan

    @property
    def rate(self) -> float:
        """The primary metric: share of labelled outcomes that are successes."""
        return self.successes / self.labelled if self.labelled else math.nan

    def to_dict(self) -> dict[str, Any]:
        return jsonable({
            "n": self.n,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "labelled": self.labelled,
            "successes": self.successes,
            "rate": self.rate,
            "latency_mean_ms": self.latency_mean,
            "latency_var_ms2": self.latency_var,
            "latency_p95_ms": self.latency_p95,
        })


def summarize_variant(
    outcome: ArrayLike | None = None,
    latency: ArrayLike | None = None,
    error: ArrayLike | None = None,
    *,
    n: int | None = None,
) -> VariantSummary:
    """Summarise one variant. `outcome` is 1/0 with NaN where no label arrived yet."""
    arrays = [np.asarray(a) for a in (outcome, latency, error) if a is not None]
    count = n if n is not None else (len(arrays[0]) if arrays else 0)
    labelled = successes = errors = 0
    if outcome is not None:
        out = np.asarray(outcome, dtype=np.float64)
        known = ~np.isnan(out)
        labelled = int(np.count_nonzero(known))
        successes = int(np.count_nonzero(out[known] > 0.5))
    if error is not None:
        errors = int(np.count_nonzero(np.asarray(error)))
    mean = var = p95 = math.nan
    if latency is not None:
        lat = np.asarray(latency, dtype=np.float64)
        if lat.size:
            mean = float(lat.mean())
            p95 = float(np.percentile(lat, 95))
        if lat.size > 1:
            var = float(lat.var(ddof=1))
    return VariantSummary(count, errors, labelled, successes, mean, var, p95)


def summarize(
    variant: ArrayLike,
    outcome: ArrayLike | None = None,
    latency: ArrayLike | None = None,
    error: ArrayLike | None = None,
) -> tuple[VariantSummary, VariantSummary]:
    """(control, treatment) summaries from per-record arrays; `variant` is 0=control, 1=treatment."""
    codes = np.asarray(variant)
    is_t = codes.astype(bool, copy=False)
    parts: list[VariantSummary] = []
    for mask in (~is_t, is_t):
        parts.append(
            summarize_variant(
                None if outcome is None else np.asarray(outcome)[mask],
                None if latency is None else np.asarray(latency)[mask],
                None if error is None else np.asarray(error)[mask],
                n=int(np.count_nonzero(mask)),
            )
        )
    return parts[0], parts[1]
