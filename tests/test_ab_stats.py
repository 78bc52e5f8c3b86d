"""Experiment statistics against independent computations, and simulated experiments over many seeds."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from flask_mlops.ab import stats
from flask_mlops.ab.guardrails import Guardrails
from flask_mlops.ab.stats import (
    CONTINUE,
    KEEP,
    PROMOTE,
    STOP,
    Plan,
    PlanError,
    analyze,
    bayes_binomial,
    power_proportions,
    prob_greater,
    sample_size_means,
    sample_size_proportions,
    srm_check,
    verdict,
    welch_ttest,
    ztest_two_proportions,
)
from flask_mlops.ab.summary import VariantSummary, summarize

# ------------------------------------------------------------------ Bayesian


def _p_greater_by_integration(a1: float, b1: float, a2: float, b2: float) -> float:
    """P(X1 > X2) = ∫ f2(x) P(X1 > x) dx with scipy's beta distribution."""
    x1, x2 = sps.beta(a1, b1), sps.beta(a2, b2)
    return integrate.quad(lambda x: x2.pdf(x) * x1.sf(x), 0, 1, limit=500, epsabs=1e-13, points=[x2.mean()])[0]


@pytest.mark.parametrize(
    "params",
    [(5, 10, 3, 12), (31, 71, 26, 76), (1, 1, 1, 1), (2.5, 3.5, 4, 2), (401, 601, 381, 621), (0.5, 10.5, 1.5, 9.5)],
)
def test_prob_greater_matches_numerical_integration(params: tuple[float, ...]) -> None:
    assert prob_greater(*params) == pytest.approx(_p_greater_by_integration(*params), abs=1e-9)


def test_closed_form_and_quadrature_agree_including_large_counts() -> None:
    for a1, b1, a2, b2 in [(31, 71, 26, 76), (401, 601, 381, 621), (7, 3, 9, 2)]:
        assert stats._quad(a1, b1, a2, b2) == pytest.approx(prob_greater(a1, b1, a2, b2), abs=1e-9)
    # above EXACT_MAX_TERMS the quadrature path is used: check it against the normal approximation
    a1, b1, a2, b2 = 375_501, 124_501, 375_001, 125_001
    m1, m2 = a1 / (a1 + b1), a2 / (a2 + b2)
    v1 = a1 * b1 / ((a1 + b1) ** 2 * (a1 + b1 + 1))
    v2 = a2 * b2 / ((a2 + b2) ** 2 * (a2 + b2 + 1))
    assert prob_greater(a1, b1, a2, b2) == pytest.approx(sps.norm.cdf((m1 - m2) / math.sqrt(v1 + v2)), abs=2e-3)


def _expected_gain(a_x: float, b_x: float, a_y: float, b_y: float) -> float:
    """E[max(X - Y, 0)] = ∫ f_Y(y) ∫_y^1 P(X > x) dx dy, on a fine grid with scipy's beta."""
    from scipy.integrate import cumulative_trapezoid, trapezoid

    grid = np.linspace(0, 1, 200_001)
    sf_x = sps.beta(a_x, b_x).sf(grid)
    tail = cumulative_trapezoid(sf_x[::-1], dx=grid[1], initial=0)[::-1]  # ∫_y^1 S_X
    return float(trapezoid(sps.beta(a_y, b_y).pdf(grid) * tail, grid))


def test_bayes_posteriors_probability_and_expected_losses() -> None:
    result = bayes_binomial(12, 40, 20, 45)
    assert result.control_posterior == (13, 29) and result.treatment_posterior == (21, 26)
    assert result.prob_treatment_better == pytest.approx(_p_greater_by_integration(21, 26, 13, 29), abs=1e-9)
    assert result.expected_loss_control == pytest.approx(_expected_gain(21, 26, 13, 29), abs=1e-7)
    assert result.expected_loss_treatment == pytest.approx(_expected_gain(13, 29, 21, 26), abs=1e-7)
    # E[max(T-C,0)] - E[max(C-T,0)] = E[T] - E[C]
    assert result.expected_loss_control - result.expected_loss_treatment == pytest.approx(21 / 47 - 13 / 42, abs=1e-12)


def test_bayes_lower_is_better_swaps_the_direction() -> None:
    up = bayes_binomial(120, 1000, 150, 1000)
    down = bayes_binomial(120, 1000, 150, 1000, higher_is_better=False)
    assert down.prob_treatment_better == pytest.approx(1 - up.prob_treatment_better, abs=1e-12)
    assert (down.expected_loss_control, down.expected_loss_treatment) == (up.expected_loss_treatment, up.expected_loss_control)


def test_lift_interval_is_seeded_monte_carlo_matching_an_independent_sample() -> None:
    result = bayes_binomial(120, 1000, 150, 1000)
    assert bayes_binomial(120, 1000, 150, 1000) == result  # fixed seed: reproducible
    rng = np.random.default_rng(2024)
    c, t = sps.beta(121, 881).rvs(1_000_000, random_state=rng), sps.beta(151, 851).rvs(1_000_000, random_state=rng)
    lo, hi = np.percentile(t / c - 1, [2.5, 97.5])
    assert result.lift_ci == pytest.approx((lo, hi), abs=0.01)
    d_lo, d_hi = np.percentile(t - c, [2.5, 97.5])
    assert result.diff_ci == pytest.approx((d_lo, d_hi), abs=0.002)
    assert result.lift_mean == pytest.approx((151 / 1002) / (121 / 1002) - 1)


# ---------------------------------------------------------------- frequentist


def test_ztest_matches_chi_square_and_the_wald_interval() -> None:
    result = ztest_two_proportions(120, 1000, 150, 1000)
    chi2, p, _, _ = sps.chi2_contingency([[120, 880], [150, 850]], correction=False)
    assert result.z**2 == pytest.approx(chi2, rel=1e-10)
    assert result.p_value == pytest.approx(p, rel=1e-10)
    se = math.sqrt(0.12 * 0.88 / 1000 + 0.15 * 0.85 / 1000)
    assert result.ci == pytest.approx((0.03 - 1.959963984540054 * se, 0.03 + 1.959963984540054 * se), rel=1e-9)
    assert result.diff == pytest.approx(0.03)
    empty = ztest_two_proportions(0, 0, 1, 10)
    assert empty.p_value == 1.0 and math.isnan(empty.diff)


def test_welch_matches_scipy_from_stats_and_from_raw_values() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(100, 15, 800), rng.normal(103, 25, 600)
    result = welch_ttest((a.size, a.mean(), a.var(ddof=1)), (b.size, b.mean(), b.var(ddof=1)))
    ref = sps.ttest_ind(b, a, equal_var=False)
    assert result.t == pytest.approx(ref.statistic, rel=1e-10)
    assert result.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert result.df == pytest.approx(ref.df, rel=1e-10)
    ci = ref.confidence_interval(0.95)
    assert result.ci == pytest.approx((ci.low, ci.high), rel=1e-9)
    by_stats = sps.ttest_ind_from_stats(103.0, 25.0, 600, 100.0, 15.0, 800, equal_var=False)
    fixed = welch_ttest((800, 100.0, 15.0**2), (600, 103.0, 25.0**2))
    assert (fixed.t, fixed.p_value) == pytest.approx((by_stats.statistic, by_stats.pvalue), rel=1e-10)
    assert welch_ttest((1, 1.0, math.nan), (5, 2.0, 1.0)).p_value == 1.0


def test_sample_size_matches_the_textbook_formula_and_the_power() -> None:
    p1, p2, za, zb = 0.10, 0.12, sps.norm.ppf(0.975), sps.norm.ppf(0.8)
    pbar = (p1 + p2) / 2
    textbook = (za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / (p2 - p1) ** 2
    size = sample_size_proportions(0.10, 0.02)
    assert size.control == size.treatment == math.ceil(textbook) == 3841
    assert power_proportions(0.10, 0.02, size.control, size.treatment) >= 0.8
    assert power_proportions(0.10, 0.02, size.control - 50, size.treatment - 50) < 0.8
    # unequal split: the power at the planned sizes is the target
    uneven = sample_size_proportions(0.7, 0.05, share=0.3, power=0.9)
    assert uneven.treatment < uneven.control
    assert power_proportions(0.7, 0.05, uneven.control, uneven.treatment) == pytest.approx(0.9, abs=0.002)
    means = sample_size_means(1.0, 0.2)
    assert means.control == means.treatment == 393  # (1.96 + 0.8416)² · 2 / 0.04 = 392.4
    with pytest.raises(ValueError):
        sample_size_proportions(0.98, 0.05)


def test_srm_matches_scipy_chisquare() -> None:
    result = srm_check(5200, 4800, 0.5)
    ref = sps.chisquare([5200, 4800], [5000, 5000])
    assert (result.chi2, result.p_value) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-10)
    assert result.mismatch  # p ≈ 6e-5
    uneven = srm_check(7040, 2960, 0.3)
    ref = sps.chisquare([7040, 2960], [7000, 3000])
    assert uneven.p_value == pytest.approx(ref.pvalue, rel=1e-10) and not uneven.mismatch


def test_summaries_match_direct_numpy() -> None:
    rng = np.random.default_rng(11)
    n = 10_000
    variant = rng.random(n) < 0.3
    outcome = np.where(rng.random(n) < 0.6, (rng.random(n) < 0.7).astype(float), np.nan)
    latency = rng.lognormal(3, 0.5, n)
    error = rng.random(n) < 0.01
    control, treatment = summarize(variant.astype(np.int8), outcome, latency, error)
    for summary, mask in ((control, ~variant), (treatment, variant)):
        assert summary.n == mask.sum()
        assert summary.errors == error[mask].sum()
        assert summary.labelled == (~np.isnan(outcome[mask])).sum()
        assert summary.successes == (outcome[mask] == 1).sum()
        assert summary.latency_mean == pytest.approx(latency[mask].mean())
        assert summary.latency_var == pytest.approx(latency[mask].var(ddof=1))
        assert summary.latency_p95 == pytest.approx(np.percentile(latency[mask], 95))


# -------------------------------------------------------------------- verdict


def _summary(n: int, successes: int, errors: int = 0, p95: float = 20.0) -> VariantSummary:
    return VariantSummary(n, errors, n, successes, 10.0, 4.0, p95)


PLAN = Plan(baseline=0.7, mde=0.05)  # 1,251 labelled outcomes per variant


def test_no_verdict_before_the_planned_sample_even_when_significant() -> None:
    early = verdict(_summary(600, 380), _summary(600, 460), PLAN)  # p < 1e-6 already
    assert early.action == CONTINUE and "peeking guard" in early.reasons[0]


def test_verdicts_at_the_planned_sample() -> None:
    assert verdict(_summary(1300, 910), _summary(1300, 990), PLAN).action == PROMOTE
    same = verdict(_summary(1300, 910), _summary(1300, 915), PLAN)
    assert same.action == KEEP and "no significant difference" in same.reasons[0]
    worse = verdict(_summary(1300, 910), _summary(1300, 860), PLAN)
    assert worse.action == KEEP and "worse" in worse.reasons[0]


def test_guardrail_and_srm_stop_at_any_time() -> None:
    errors = verdict(_summary(500, 350), _summary(500, 350, errors=60), PLAN)
    assert errors.action == STOP and "error_rate" in errors.reasons[0]
    latency = verdict(_summary(500, 350), _summary(500, 350, p95=45.0), PLAN)
    assert latency.action == STOP and "latency_p95" in latency.reasons[0]
    srm = verdict(_summary(5000, 3500), _summary(4500, 3150), PLAN)
    assert srm.action == STOP and "sample ratio mismatch" in srm.reasons[0]


def test_analyze_bundles_everything_as_json() -> None:
    results = analyze(_summary(1300, 910), _summary(1300, 990), PLAN)
    data = results.to_dict()
    assert data["verdict"]["action"] == PROMOTE
    assert data["plan"]["planned_control"] == 1251 and data["plan"]["peeking_guard"] == "fixed_horizon"
    assert set(data) >= {"bayes", "ztest", "latency_welch", "srm", "guardrails", "control", "treatment"}
    assert data["bayes"]["prob_treatment_better"] > 0.99


def test_plan_validation() -> None:
    with pytest.raises(PlanError, match="non-zero, finite mde") as missing:
        Plan()
    assert missing.value.field == "mde"
    with pytest.raises(PlanError, match=r"baseline \+ mde must stay strictly between 0 and 1 .*choose \|mde\| < 0.03") as high:
        Plan(baseline=0.97, mde=0.05)  # the default MDE over a 0.97 control: impossible, said at creation
    assert high.value.field == "mde"
    with pytest.raises(PlanError, match="sd > 0"):
        Plan(outcome="mean", mde=-2.0)
    assert Plan(outcome="mean", mde=-2.0, sd=10.0).required().control == sample_size_means(10.0, 2.0).control
    with pytest.raises(ValueError, match="share"):
        Plan(share=1.0, baseline=0.5, mde=0.1)
    assert Plan(planned_control=10, planned_treatment=20).required().total == 30
    with pytest.raises(ValueError, match="unknown guardrail"):
        Guardrails.from_dict({"max_error_rate": 3})


def test_mean_outcomes_are_judged_by_welch_lower_is_better() -> None:
    """Regression A/B: absolute errors per labelled request; the treatment errs less."""
    from scipy.stats import ttest_ind

    rng = np.random.default_rng(3)
    err_c, err_t = np.abs(rng.normal(0, 50, 800)), np.abs(rng.normal(0, 42, 800))
    variant = np.r_[np.zeros(800), np.ones(800)]
    outcome = np.r_[err_c, err_t]
    control, treatment = summarize(variant, outcome, kind="mean")
    assert control.outcome == "mean" and control.successes == 0 and control.rate == pytest.approx(err_c.mean())
    plan = Plan(outcome="mean", mde=-8.0, sd=30.0, higher_is_better=False)  # needs ~221 per variant
    result = analyze(control, treatment, plan)
    expected = ttest_ind(err_t, err_c, equal_var=False)
    assert result.outcome_welch is not None and result.bayes is None and result.ztest is None
    assert result.outcome_welch.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert result.outcome_welch.diff == pytest.approx(err_t.mean() - err_c.mean())
    assert result.verdict.action == PROMOTE and "mean" in result.verdict.reasons[0]
    assert result.to_dict()["plan"]["test"] == "welch"
    worse = analyze(treatment, control, plan)  # swapped: the treatment errs ~19 % more
    assert worse.verdict.action == STOP and "guardrail abs_error breached" in worse.verdict.reasons[0]
    slightly = analyze(control, replace(control, outcome_mean=control.outcome_mean * 1.03), plan)
    assert slightly.verdict.action == KEEP  # 3 % worse: under the 5 % guardrail, not significant
    assert [c.name for c in result.guardrails][-1] == "abs_error"


# ------------------------------------------------------ simulated experiments


def _simulate(plan: Plan, p_control: float, p_treatment: float, seeds: range, per_seed: int, looks: int) -> tuple[float, float]:
    """Share of experiments that end in "promote": with the guard, and for a naive peeker.

    Each experiment is checked at `looks` evenly spaced interim points up to the planned
    sample; it stops at its first non-"continue" verdict. The naive peeker instead promotes
    at the first look where the z-test says "significantly better".
    """
    need = plan.required()
    fractions = np.arange(1, looks + 1) / looks
    promoted = naive = total = 0
    for seed in seeds:
        rng = np.random.default_rng(seed)
        n_c = np.ceil(need.control * fractions).astype(int)
        n_t = np.ceil(need.treatment * fractions).astype(int)
        s_c = np.cumsum(rng.binomial(np.diff(n_c, prepend=0), p_control, size=(per_seed, looks)), axis=1)
        s_t = np.cumsum(rng.binomial(np.diff(n_t, prepend=0), p_treatment, size=(per_seed, looks)), axis=1)
        for i in range(per_seed):
            total += 1
            for k in range(looks):
                action = verdict(
                    VariantSummary(int(n_c[k]), 0, int(n_c[k]), int(s_c[i, k])),
                    VariantSummary(int(n_t[k]), 0, int(n_t[k]), int(s_t[i, k])),
                    plan,
                ).action
                if action != CONTINUE:
                    promoted += action == PROMOTE
                    break
            naive += any(
                s_t[i, k] / n_t[k] > s_c[i, k] / n_c[k]
                and ztest_two_proportions(int(s_c[i, k]), int(n_c[k]), int(s_t[i, k]), int(n_t[k])).p_value < plan.alpha
                for k in range(looks)
            )
    return promoted / total, naive / total


def test_false_positive_rate_of_promote_stays_at_or_below_the_level_with_no_effect() -> None:
    plan = Plan(baseline=0.7, mde=0.05, alpha=0.05)
    rate, naive = _simulate(plan, 0.7, 0.7, range(8), per_seed=250, looks=5)
    # two-sided test at 5 %: "promote" (the upper side) is expected at 2.5 %; 2,000 runs, SE ≈ 0.35 pt
    assert rate <= plan.alpha
    assert 0.01 <= rate <= 0.04
    assert naive > rate  # peeking without the guard inflates false promotions


def test_real_effect_is_found_with_the_planned_power() -> None:
    plan = Plan(baseline=0.7, mde=0.05, power=0.8, share=0.3)
    rate, _ = _simulate(plan, 0.7, 0.75, range(100, 108), per_seed=250, looks=2)
    # 2,000 runs: SE ≈ 0.9 pt; allow ±4 points around the planned 80 %
    assert abs(rate - 0.8) <= 0.04


def test_srm_counts_units_not_requests_when_known() -> None:
    """Three requests per user inflate request counts; the check uses distinct units."""
    plan = Plan(baseline=0.7, mde=0.05, share=0.3)
    control = VariantSummary(2100, units=700)
    treatment = VariantSummary(840, units=300)  # 28.6 % of requests, 30 % of units
    assert stats.srm_counts(control, treatment, plan).counts == (700, 300)
    assert not stats.srm_counts(control, treatment, plan).mismatch
    assert stats.srm_counts(VariantSummary(2100), VariantSummary(840), plan).counts == (2100, 840)
