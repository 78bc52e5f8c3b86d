"""Experiment statistics on variant summaries: Bayesian, frequentist, power, SRM and the verdict.

Pure functions returning frozen dataclasses; scipy is imported inside the functions so the
request path (which imports `ab.assign`) never pays for it.

Methods, so that results are reproducible and checkable:
- P(treatment > control) and the expected losses are exact: Evan Miller's closed-form
  sum for Beta posteriors with an integer parameter (over the smallest usable parameter,
  up to `EXACT_MAX_TERMS` terms), otherwise adaptive quadrature of the same integral.
- The credible interval of the relative lift is Monte-Carlo with a fixed seed
  (`draws` posterior draws per variant, `seed` 0 unless given): identical inputs give
  identical intervals.
- Frequentist: two-proportion z-test (pooled standard error for the test, unpooled for
  the confidence interval), Welch's t-test from (n, mean, variance) — for latency, and for
  mean outcomes (a regression model's absolute error, lower is better) as the primary test.
- Peeking guard: fixed horizon. `verdict` gives no promote/keep verdict before both
  variants reach the planned number of labelled outcomes; see docs/ab-testing.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ..jsonable import jsonable
from .guardrails import GuardrailCheck, Guardrails, check_guardrails
from .summary import VariantSummary

EXACT_MAX_TERMS = 50_000

CONTINUE = "continue"
PROMOTE = "promote_treatment"
KEEP = "keep_control"
STOP = "stop_guardrail"


class _Result:
    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))  # type: ignore[call-overload, no-any-return]


# --------------------------------------------------------------------------- Bayesian


def _miller(a_a: float, b_a: float, a_b: int, b_b: float) -> float:
    """P(pB > pA), pA ~ Beta(a_a, b_a), pB ~ Beta(a_b, b_b); a_b integer (Evan Miller, 2015)."""
    from scipy.special import betaln

    i = np.arange(a_b, dtype=np.float64)
    log_terms = betaln(a_a + i, b_a + b_b) - np.log(b_b + i) - betaln(1 + i, b_b) - betaln(a_a, b_a)
    return float(np.exp(log_terms).sum())


def _quad(a1: float, b1: float, a2: float, b2: float) -> float:
    """P(X1 > X2) = ∫ f2(x) (1 - F1(x)) dx by adaptive quadrature over X2's bulk."""
    from scipy import integrate, special

    m = a2 / (a2 + b2)
    sd = math.sqrt(a2 * b2 / ((a2 + b2) ** 2 * (a2 + b2 + 1)))
    lo, hi = max(0.0, m - 14 * sd), min(1.0, m + 14 * sd)
    log_norm = float(special.betaln(a2, b2))
    sf = special.betaincc

    def integrand(x: float) -> float:
        if x <= 0.0 or x >= 1.0:
            return 0.0
        log_pdf = (a2 - 1) * math.log(x) + (b2 - 1) * math.log1p(-x) - log_norm
        return math.exp(log_pdf) * float(sf(a1, b1, x))

    value, _ = integrate.quad(integrand, lo, hi, epsabs=1e-12, epsrel=1e-10, limit=200, points=[m])
    return min(1.0, max(0.0, value))


def prob_greater(a1: float, b1: float, a2: float, b2: float) -> float:
    """P(X1 > X2) for independent X1 ~ Beta(a1, b1), X2 ~ Beta(a2, b2)."""
    forms = [  # (terms, exact form)
        (a1, lambda: _miller(a2, b2, int(a1), b1)),
        (a2, lambda: 1.0 - _miller(a1, b1, int(a2), b2)),
        (b2, lambda: _miller(b1, a1, int(b2), a2)),  # 1-X2 > 1-X1
        (b1, lambda: 1.0 - _miller(b2, a2, int(b1), a1)),
    ]
    usable = [(t, f) for t, f in forms if float(t).is_integer() and t <= EXACT_MAX_TERMS]
    if usable:
        value = min(usable, key=lambda tf: tf[0])[1]()
        return min(1.0, max(0.0, value))
    return _quad(a1, b1, a2, b2)


@dataclass(frozen=True)
class BayesResult(_Result):
    """Beta-Binomial comparison; `lift` is relative (treatment / control - 1)."""

    control_posterior: tuple[float, float]
    treatment_posterior: tuple[float, float]
    prob_treatment_better: float
    expected_loss_control: float  # expected shortfall if we keep control and treatment is better
    expected_loss_treatment: float  # expected shortfall if we ship treatment and control is better
    lift_mean: float
    lift_ci: tuple[float, float]
    diff_ci: tuple[float, float]
    credibility: float
    method: str = "exact P and losses (closed form / quadrature); lift interval Monte-Carlo"
    draws: int = 0
    seed: int = 0


def bayes_binomial(
    control_successes: int,
    control_n: int,
    treatment_successes: int,
    treatment_n: int,
    *,
    prior: tuple[float, float] = (1.0, 1.0),
    higher_is_better: bool = True,
    credibility: float = 0.95,
    draws: int = 100_000,
    seed: int = 0,
) -> BayesResult:
    """Posteriors Beta(prior + successes, prior + failures), P(better), expected losses, lift interval."""
    a0, b0 = prior
    a_c, b_c = a0 + control_successes, b0 + control_n - control_successes
    a_t, b_t = a0 + treatment_successes, b0 + treatment_n - treatment_successes
    m_c, m_t = a_c / (a_c + b_c), a_t / (a_t + b_t)
    p_t_gt_c = prob_greater(a_t, b_t, a_c, b_c)
    # E[max(pT - pC, 0)] = mT P(Beta(aT+1,bT) > pC) - mC P(pT > Beta(aC+1,bC))
    gain_t = m_t * prob_greater(a_t + 1, b_t, a_c, b_c) - m_c * prob_greater(a_t, b_t, a_c + 1, b_c)
    gain_c = m_c * prob_greater(a_c + 1, b_c, a_t, b_t) - m_t * prob_greater(a_c, b_c, a_t + 1, b_t)
    gain_t, gain_c = max(gain_t, 0.0), max(gain_c, 0.0)
    if higher_is_better:
        better, loss_control, loss_treatment = p_t_gt_c, gain_t, gain_c
    else:
        better, loss_control, loss_treatment = 1.0 - p_t_gt_c, gain_c, gain_t

    rng = np.random.default_rng(seed)
    p_c = rng.beta(a_c, b_c, size=draws)
    p_t = rng.beta(a_t, b_t, size=draws)
    tail = (1 - credibility) / 2 * 100
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = p_t / p_c - 1.0
    lift_lo, lift_hi = np.percentile(lift, [tail, 100 - tail])
    diff_lo, diff_hi = np.percentile(p_t - p_c, [tail, 100 - tail])
    return BayesResult(
        (a_c, b_c), (a_t, b_t), better, loss_control, loss_treatment,
        m_t / m_c - 1.0 if m_c else math.nan,
        (float(lift_lo), float(lift_hi)), (float(diff_lo), float(diff_hi)),
        credibility, draws=draws, seed=seed,
    )


# ------------------------------------------------------------------------ frequentist


@dataclass(frozen=True)
class ZTestResult(_Result):
    """Two-proportion z-test of treatment - control (two-sided)."""

    control_rate: float
    treatment_rate: float
    diff: float
    z: float
    p_value: float
    ci: tuple[float, float]
    alpha: float


def ztest_two_proportions(
    control_successes: int, control_n: int, treatment_successes: int, treatment_n: int, *, alpha: float = 0.05
) -> ZTestResult:
    """Pooled SE for the statistic, unpooled (Wald) SE for the (1 - alpha) interval of the difference."""
    from scipy.stats import norm

    if control_n == 0 or treatment_n == 0:
        return ZTestResult(math.nan, math.nan, math.nan, math.nan, 1.0, (math.nan, math.nan), alpha)
    p_c, p_t = control_successes / control_n, treatment_successes / treatment_n
    diff = p_t - p_c
    pooled = (control_successes + treatment_successes) / (control_n + treatment_n)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / control_n + 1 / treatment_n))
    z = diff / se0 if se0 > 0 else 0.0
    p_value = float(2 * norm.sf(abs(z)))
    se = math.sqrt(p_c * (1 - p_c) / control_n + p_t * (1 - p_t) / treatment_n)
    half = float(norm.ppf(1 - alpha / 2)) * se
    return ZTestResult(p_c, p_t, diff, z, p_value, (diff - half, diff + half), alpha)


@dataclass(frozen=True)
class WelchResult(_Result):
    """Welch's t-test of treatment mean - control mean (two-sided), from sufficient statistics."""

    diff: float
    t: float
    df: float
    p_value: float
    ci: tuple[float, float]
    alpha: float


def welch_ttest(
    control: tuple[int, float, float], treatment: tuple[int, float, float], *, alpha: float = 0.05
) -> WelchResult:
    """`control` and `treatment` are (n, mean, sample variance); no raw values needed."""
    from scipy.stats import t as student_t

    (n1, m1, v1), (n2, m2, v2) = control, treatment
    if n1 < 2 or n2 < 2 or math.isnan(v1) or math.isnan(v2):
        return WelchResult(m2 - m1, math.nan, math.nan, 1.0, (math.nan, math.nan), alpha)
    s1, s2 = v1 / n1, v2 / n2
    se = math.sqrt(s1 + s2)
    diff = m2 - m1
    if se == 0:
        return WelchResult(diff, math.nan, math.nan, 1.0 if diff == 0 else 0.0, (diff, diff), alpha)
    df = (s1 + s2) ** 2 / (s1**2 / (n1 - 1) + s2**2 / (n2 - 1))
    t = diff / se
    half = float(student_t.ppf(1 - alpha / 2, df)) * se
    return WelchResult(diff, t, df, float(2 * student_t.sf(abs(t), df)), (diff - half, diff + half), alpha)


# ---------------------------------------------------------------- planning and SRM


@dataclass(frozen=True)
class SampleSize(_Result):
    """Labelled outcomes needed per variant (and in total) to detect the MDE with the power."""

    control: int
    treatment: int
    total: int
    alpha: float
    power: float


def sample_size_proportions(
    baseline: float, mde: float, *, alpha: float = 0.05, power: float = 0.8, share: float = 0.5
) -> SampleSize:
    """Two-sided two-proportion z-test: n to detect `baseline` → `baseline + mde` (absolute).

    N = (z_{1-α/2} √(p̄q̄ (1/(1-s) + 1/s)) + z_{power} √(p₁q₁/(1-s) + p₂q₂/s))² / δ²,
    split (1-s)N to control and sN to treatment, each rounded up.
    """
    from scipy.stats import norm

    p1, p2, s = baseline, baseline + mde, share
    if not (0 < p1 < 1 and 0 < p2 < 1 and mde != 0 and 0 < s < 1):
        raise ValueError("need 0 < baseline < 1, 0 < baseline + mde < 1, mde ≠ 0 and 0 < share < 1")
    za, zb = norm.ppf(1 - alpha / 2), norm.ppf(power)
    pbar = (1 - s) * p1 + s * p2
    num = za * math.sqrt(pbar * (1 - pbar) * (1 / (1 - s) + 1 / s)) + zb * math.sqrt(
        p1 * (1 - p1) / (1 - s) + p2 * (1 - p2) / s
    )
    total = (num / mde) ** 2
    n_c, n_t = math.ceil(total * (1 - s) - 1e-9), math.ceil(total * s - 1e-9)
    return SampleSize(n_c, n_t, n_c + n_t, alpha, power)


def power_proportions(baseline: float, mde: float, control_n: int, treatment_n: int, *, alpha: float = 0.05) -> float:
    """Power of the two-sided z-test at these sizes (the far tail ignored, as in the size formula)."""
    from scipy.stats import norm

    p1, p2 = baseline, baseline + mde
    pbar = (control_n * p1 + treatment_n * p2) / (control_n + treatment_n)
    se0 = math.sqrt(pbar * (1 - pbar) * (1 / control_n + 1 / treatment_n))
    se1 = math.sqrt(p1 * (1 - p1) / control_n + p2 * (1 - p2) / treatment_n)
    return float(norm.cdf((abs(mde) - norm.ppf(1 - alpha / 2) * se0) / se1))


def sample_size_means(
    sd: float, mde: float, *, alpha: float = 0.05, power: float = 0.8, share: float = 0.5
) -> SampleSize:
    """Continuous metric with standard deviation `sd`: N = (z_{1-α/2} + z_power)² sd² (1/(1-s) + 1/s) / δ²."""
    from scipy.stats import norm

    if sd <= 0 or mde == 0 or not 0 < share < 1:
        raise ValueError("need sd > 0, mde ≠ 0 and 0 < share < 1")
    total = (norm.ppf(1 - alpha / 2) + norm.ppf(power)) ** 2 * sd**2 * (1 / (1 - share) + 1 / share) / mde**2
    n_c, n_t = math.ceil(total * (1 - share) - 1e-9), math.ceil(total * share - 1e-9)
    return SampleSize(n_c, n_t, n_c + n_t, alpha, power)


@dataclass(frozen=True)
class SRMResult(_Result):
    """Sample-ratio mismatch: chi-square of the assignment counts against the configured split."""

    counts: tuple[int, int]
    expected: tuple[float, float]
    chi2: float
    p_value: float
    threshold: float
    mismatch: bool


def srm_check(control_n: int, treatment_n: int, share: float, *, threshold: float = 0.001) -> SRMResult:
    """Flags a mismatch when p < `threshold` (0.001: SRM checks run often, false alarms are costly)."""
    from scipy.stats import chi2 as chi2_dist

    total = control_n + treatment_n
    expected = (total * (1 - share), total * share)
    if total == 0 or share in (0.0, 1.0):
        return SRMResult((control_n, treatment_n), expected, 0.0, 1.0, threshold, False)
    stat = sum((o - e) ** 2 / e for o, e in zip((control_n, treatment_n), expected, strict=True))
    p = float(chi2_dist.sf(stat, 1))
    return SRMResult((control_n, treatment_n), expected, stat, p, threshold, p < threshold)


def srm_counts(control: VariantSummary, treatment: VariantSummary, plan: Plan) -> SRMResult:
    """SRM on distinct units when known (requests of one unit are not independent), else on requests."""
    if control.units is not None and treatment.units is not None:
        return srm_check(control.units, treatment.units, plan.share, threshold=plan.srm_threshold)
    return srm_check(control.n, treatment.n, plan.share, threshold=plan.srm_threshold)


# ------------------------------------------------------------------------- verdict


class PlanError(ValueError):
    """An impossible plan; `field` names the plan option to change."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Plan:
    """How an experiment is judged. The planned sample comes from baseline + MDE (proportions)
    or sd + MDE (mean outcomes) unless given; an impossible plan raises `PlanError`."""

    share: float = 0.5
    alpha: float = 0.05
    power: float = 0.8
    baseline: float | None = None
    mde: float | None = None  # absolute change in the primary rate (or mean) worth detecting
    planned_control: int | None = None  # labelled outcomes per variant; overrides baseline/mde
    planned_treatment: int | None = None
    higher_is_better: bool = True
    srm_threshold: float = 0.001
    guardrails: Guardrails = field(default_factory=Guardrails)
    outcome: str = "proportion"  # proportion (z-test, Beta-Binomial) | mean (Welch's t-test)
    sd: float | None = None  # standard deviation of a mean outcome, for its sample size

    def __post_init__(self) -> None:
        if not 0 < self.share < 1:
            raise PlanError("share", "an experiment's treatment share must be strictly between 0 and 1")
        if not 0 < self.alpha < 1:
            raise PlanError("alpha", f"alpha must be strictly between 0 and 1, got {self.alpha}")
        if not 0 < self.power < 1:
            raise PlanError("power", f"power must be strictly between 0 and 1, got {self.power}")
        if not 0 < self.srm_threshold < 1:
            raise PlanError("srm_threshold", f"srm_threshold must be strictly between 0 and 1, got {self.srm_threshold}")
        if self.outcome not in ("proportion", "mean"):
            raise PlanError("outcome", f"outcome must be 'proportion' or 'mean', got {self.outcome!r}")
        if (self.planned_control is None) != (self.planned_treatment is None):
            raise PlanError("planned_control", "give both planned_control and planned_treatment, or neither")
        if self.planned_control is not None and self.planned_treatment is not None:
            if self.planned_control < 1 or self.planned_treatment < 1:
                raise PlanError("planned_control", "planned sample sizes must be at least 1")
            return
        if self.mde is None or not math.isfinite(self.mde) or self.mde == 0:
            raise PlanError("mde", "a plan needs a non-zero, finite mde (or planned_control and planned_treatment)")
        if self.outcome == "mean":
            if self.sd is None or not math.isfinite(self.sd) or self.sd <= 0:
                raise PlanError("sd", "a plan on a mean outcome needs sd > 0 (or planned_control and planned_treatment)")
            return
        if self.baseline is None or not 0 < self.baseline < 1:
            raise PlanError("baseline", f"baseline must be strictly between 0 and 1, got {self.baseline}")
        if not 0 < self.baseline + self.mde < 1:
            room = 1 - self.baseline if self.mde > 0 else self.baseline
            raise PlanError(
                "mde",
                f"baseline + mde must stay strictly between 0 and 1 (baseline {self.baseline:.4g}, mde {self.mde:.4g}): "
                f"choose |mde| < {room:.4g}",
            )

    def required(self) -> SampleSize:
        """Labelled outcomes per variant before any promote/keep verdict (computed once)."""
        return self._required

    @cached_property
    def _required(self) -> SampleSize:
        if self.planned_control is not None and self.planned_treatment is not None:
            return SampleSize(
                self.planned_control, self.planned_treatment,
                self.planned_control + self.planned_treatment, self.alpha, self.power,
            )
        assert self.mde is not None
        if self.outcome == "mean":
            assert self.sd is not None
            return sample_size_means(self.sd, abs(self.mde), alpha=self.alpha, power=self.power, share=self.share)
        assert self.baseline is not None
        return sample_size_proportions(self.baseline, self.mde, alpha=self.alpha, power=self.power, share=self.share)


@dataclass(frozen=True)
class Verdict(_Result):
    action: str  # continue | promote_treatment | keep_control | stop_guardrail
    reasons: list[str]


def verdict(
    control: VariantSummary,
    treatment: VariantSummary,
    plan: Plan,
    *,
    ztest: ZTestResult | None = None,
    welch: WelchResult | None = None,
    srm: SRMResult | None = None,
    guardrails: list[GuardrailCheck] | None = None,
) -> Verdict:
    """Guardrails and SRM first (any time), then a significance verdict only at the planned sample.

    Proportions are judged by the two-proportion z-test, mean outcomes by Welch's t-test.
    """
    srm = srm or srm_counts(control, treatment, plan)
    checks = guardrails if guardrails is not None else check_guardrails(control, treatment, plan.guardrails)
    reasons: list[str] = []
    if srm.mismatch:
        reasons.append(
            f"sample ratio mismatch: {srm.counts[0]} control / {srm.counts[1]} treatment at a planned "
            f"{plan.share:.0%} treatment share (p={srm.p_value:.2g} < {srm.threshold}); results are not trustworthy"
        )
    reasons += [f"guardrail {c.name} breached: {c.message}" for c in checks if c.ok is False]
    if reasons:
        return Verdict(STOP, reasons)

    need = plan.required()
    if control.labelled < need.control or treatment.labelled < need.treatment:
        return Verdict(CONTINUE, [
            f"{control.labelled}/{need.control} control and {treatment.labelled}/{need.treatment} treatment "
            "labelled outcomes: no verdict before the planned sample size (peeking guard)"
        ])
    if plan.outcome == "mean":
        w = welch or outcome_welch(control, treatment, plan)
        diff, p_value = w.diff, w.p_value
        detail = (
            f"mean {treatment.outcome_mean:.4g} treatment vs {control.outcome_mean:.4g} control, "
            f"diff {w.diff:+.4g} (CI {w.ci[0]:+.4g}..{w.ci[1]:+.4g}), p={w.p_value:.3g}"
        )
    else:
        z = ztest or ztest_two_proportions(
            control.successes, control.labelled, treatment.successes, treatment.labelled, alpha=plan.alpha
        )
        diff, p_value = z.diff, z.p_value
        detail = (
            f"{z.treatment_rate:.4f} treatment vs {z.control_rate:.4f} control, "
            f"diff {z.diff:+.4f} (CI {z.ci[0]:+.4f}..{z.ci[1]:+.4f}), p={z.p_value:.3g}"
        )
    better = diff > 0 if plan.higher_is_better else diff < 0
    if p_value < plan.alpha and better:
        return Verdict(PROMOTE, [f"treatment significantly better at the planned sample size: {detail}"])
    if p_value < plan.alpha:
        return Verdict(KEEP, [f"treatment significantly worse: {detail}"])
    return Verdict(KEEP, [f"no significant difference at the planned sample size: {detail}"])


def outcome_welch(control: VariantSummary, treatment: VariantSummary, plan: Plan) -> WelchResult:
    """Welch's t-test of the mean labelled outcome (treatment - control)."""
    return welch_ttest(
        (control.labelled, control.outcome_mean, control.outcome_var),
        (treatment.labelled, treatment.outcome_mean, treatment.outcome_var),
        alpha=plan.alpha,
    )


@dataclass(frozen=True)
class Results(_Result):
    """Everything `/experiments/<id>/results` shows. Proportions carry `bayes` and `ztest`;
    mean outcomes (regression's absolute error) carry `outcome_welch` instead."""

    control: dict[str, Any]
    treatment: dict[str, Any]
    plan: dict[str, Any]
    bayes: BayesResult | None
    ztest: ZTestResult | None
    latency_welch: WelchResult
    srm: SRMResult
    guardrails: list[GuardrailCheck]
    verdict: Verdict
    outcome_welch: WelchResult | None = None


def analyze(control: VariantSummary, treatment: VariantSummary, plan: Plan, *, seed: int = 0) -> Results:
    """All statistics and the verdict for one experiment, from the two variant summaries."""
    z = bayes = welch = None
    if plan.outcome == "mean":
        welch = outcome_welch(control, treatment, plan)
    else:
        z = ztest_two_proportions(
            control.successes, control.labelled, treatment.successes, treatment.labelled, alpha=plan.alpha
        )
        bayes = bayes_binomial(
            control.successes, control.labelled, treatment.successes, treatment.labelled,
            higher_is_better=plan.higher_is_better, seed=seed,
        )
    latency = welch_ttest(
        (control.n, control.latency_mean, control.latency_var),
        (treatment.n, treatment.latency_mean, treatment.latency_var),
        alpha=plan.alpha,
    )
    srm = srm_counts(control, treatment, plan)
    checks = check_guardrails(control, treatment, plan.guardrails)
    need = plan.required()
    plan_info = {
        "share": plan.share, "alpha": plan.alpha, "power": plan.power, "baseline": plan.baseline,
        "mde": plan.mde, "planned_control": need.control, "planned_treatment": need.treatment,
        "higher_is_better": plan.higher_is_better, "peeking_guard": "fixed_horizon",
        "outcome": plan.outcome, "sd": plan.sd, "test": "welch" if plan.outcome == "mean" else "z_test+beta_binomial",
    }
    return Results(
        control.to_dict(), treatment.to_dict(), plan_info, bayes, z, latency, srm, checks,
        verdict(control, treatment, plan, ztest=z, welch=welch, srm=srm, guardrails=checks),
        welch,
    )
