"""Guardrails: is the treatment doing harm (errors, p95 latency, accuracy or absolute error) compared with control?

Shared by the experiment verdict and the gradual rollout. A guardrail is judged only once
both variants have enough traffic (`ok=None` until then). Rates are noisy at the sample
sizes a 5 % stage sees, so the error-rate and accuracy guardrails fire only when the
treatment is worse than the limit with one-sided significance `alpha` (a Wald test against
the limit); a gross breach (say 20 % errors against 0 %) still fires at the first
evaluation. p95 latency is compared by its point estimate above a floor, because tail
latency of a few milliseconds is noise, not harm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .summary import VariantSummary


@dataclass(frozen=True)
class Guardrails:
    """Limits the treatment must respect relative to control (all configurable)."""

    max_error_ratio: float = 2.0  # treatment error rate ≤ 2 × control's
    error_rate_floor: float = 0.005  # control error rates below this count as this
    max_p95_ratio: float = 1.5  # treatment p95 latency ≤ 1.5 × control's
    p95_floor_ms: float = 5.0  # control p95 below this counts as this
    max_accuracy_drop: float = 0.05  # relative: treatment ≥ 0.95 × control accuracy
    min_requests: int = 100  # per variant before errors and latency are judged
    min_labelled: int = 100  # per variant before accuracy is judged
    alpha: float = 0.05  # one-sided significance of a rate breach

    def __post_init__(self) -> None:
        if self.max_error_ratio <= 0 or self.max_p95_ratio <= 0:
            raise ValueError("guardrail ratios must be positive")
        if not 0 <= self.max_accuracy_drop < 1:
            raise ValueError("max_accuracy_drop must be in [0, 1)")
        if not 0 < self.alpha < 1:
            raise ValueError("guardrail alpha must be in (0, 1)")

    @classmethod
    def from_dict(cls, data: dict[str, object] | None) -> Guardrails:
        """Build from a JSON object; unknown keys are an error that lists the known ones."""
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown guardrail(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)  # type: ignore[arg-type]


@dataclass(frozen=True)
class GuardrailCheck:
    """One guardrail's outcome: ok True/False, or None while there is too little data."""

    name: str
    ok: bool | None
    control: float
    treatment: float
    limit: float
    message: str


def _norm_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _rate_worse(treat: float, n_t: int, limit: float, var_limit: float) -> float:
    """One-sided p-value of 'treatment rate > limit' (Wald)."""
    se = math.sqrt(treat * (1 - treat) / n_t + var_limit)
    if se == 0:
        return 0.0 if treat > limit else 1.0
    return _norm_sf((treat - limit) / se)


def check_guardrails(
    control: VariantSummary, treatment: VariantSummary, limits: Guardrails | None = None
) -> list[GuardrailCheck]:
    """Evaluate every guardrail; a breach has `ok=False` and a message saying by how much."""
    g = limits or Guardrails()
    checks: list[GuardrailCheck] = []
    enough = min(control.n, treatment.n) >= g.min_requests

    # error rate: treatment ≤ ratio × max(control, floor)
    c_err, t_err = control.error_rate, treatment.error_rate
    floored = max(c_err, g.error_rate_floor) if enough else math.nan
    limit = g.max_error_ratio * floored
    if not enough:
        checks.append(GuardrailCheck("error_rate", None, c_err, t_err, limit, _too_few(control.n, treatment.n, g.min_requests, "requests")))
    else:
        var_limit = g.max_error_ratio**2 * c_err * (1 - c_err) / control.n if c_err >= g.error_rate_floor else 0.0
        p = _rate_worse(t_err, treatment.n, limit, var_limit)
        ok = not (t_err > limit and p < g.alpha)
        checks.append(GuardrailCheck(
            "error_rate", ok, c_err, t_err, limit,
            f"error rate {t_err:.2%} vs control {c_err:.2%} (limit {limit:.2%}, p={p:.3g})",
        ))

    # p95 latency: point estimate against ratio × max(control p95, floor)
    c95, t95 = control.latency_p95, treatment.latency_p95
    if not enough or math.isnan(c95) or math.isnan(t95):
        checks.append(GuardrailCheck("latency_p95", None, c95, t95, math.nan, _too_few(control.n, treatment.n, g.min_requests, "requests")))
    else:
        limit = g.max_p95_ratio * max(c95, g.p95_floor_ms)
        checks.append(GuardrailCheck(
            "latency_p95", t95 <= limit, c95, t95, limit,
            f"p95 latency {t95:.1f} ms vs control {c95:.1f} ms (limit {limit:.1f} ms)",
        ))

    if control.outcome == "mean":
        checks.append(_mean_outcome(control, treatment, g))
        return checks
    # accuracy (primary rate): treatment ≥ (1 - drop) × control
    c_acc, t_acc = control.rate, treatment.rate
    if min(control.labelled, treatment.labelled) < g.min_labelled:
        checks.append(GuardrailCheck(
            "accuracy", None, c_acc, t_acc, math.nan,
            _too_few(control.labelled, treatment.labelled, g.min_labelled, "labelled outcomes"),
        ))
    else:
        keep = 1.0 - g.max_accuracy_drop
        limit = keep * c_acc
        # 'treatment below limit' is 'the failure rate above 1 - limit'
        var_limit = keep**2 * c_acc * (1 - c_acc) / control.labelled
        p = _rate_worse(1 - t_acc, treatment.labelled, 1 - limit, var_limit)
        ok = not (t_acc < limit and p < g.alpha)
        checks.append(GuardrailCheck(
            "accuracy", ok, c_acc, t_acc, limit,
            f"accuracy {t_acc:.2%} vs control {c_acc:.2%} (floor {limit:.2%}, p={p:.3g})",
        ))
    return checks


def _mean_outcome(control: VariantSummary, treatment: VariantSummary, g: Guardrails) -> GuardrailCheck:
    """Absolute error (lower is better): treatment ≤ (1 + drop) × control, one-sided Welch z."""
    c, t = control.outcome_mean, treatment.outcome_mean
    if min(control.labelled, treatment.labelled) < g.min_labelled or math.isnan(c) or math.isnan(t):
        return GuardrailCheck("abs_error", None, c, t, math.nan, _too_few(control.labelled, treatment.labelled, g.min_labelled, "labelled outcomes"))
    ratio = 1.0 + g.max_accuracy_drop
    limit = ratio * c
    var = (treatment.outcome_var if not math.isnan(treatment.outcome_var) else 0.0) / treatment.labelled
    var += ratio**2 * (control.outcome_var if not math.isnan(control.outcome_var) else 0.0) / control.labelled
    p = _norm_sf((t - limit) / math.sqrt(var)) if var > 0 else (0.0 if t > limit else 1.0)
    ok = not (t > limit and p < g.alpha)
    return GuardrailCheck("abs_error", ok, c, t, limit, f"mean absolute error {t:.4g} vs control {c:.4g} (ceiling {limit:.4g}, p={p:.3g})")


def _too_few(n_c: int, n_t: int, need: int, what: str) -> str:
    return f"not judged yet: {min(n_c, n_t)} of {need} {what} in the smaller variant"
