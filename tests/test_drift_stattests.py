"""Drift statistics against their formulas and against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from flask_mlops.errors import MLOpsError
from flask_mlops.monitoring.stattests import (
    STATTESTS,
    UnknownStatTestError,
    chi_square,
    get_stattest,
    jensen_shannon,
    ks,
    psi,
    wasserstein_normed,
)


def test_psi_equals_the_formula_on_hand_built_proportions() -> None:
    ref = [0.25, 0.25, 0.25, 0.25]
    cur = [0.10, 0.20, 0.30, 0.40]
    expected = sum((c - r) * math.log(c / r) for r, c in zip(ref, cur, strict=False))
    assert psi(ref, cur) == pytest.approx(expected, rel=1e-12)
    assert psi(ref, ref) == 0.0
    # counts are normalised first: same answer
    assert psi([25, 25, 25, 25], [10, 20, 30, 40]) == pytest.approx(expected, rel=1e-12)


def test_psi_clips_empty_bins_to_epsilon() -> None:
    ref = [0.5, 0.5, 0.0]
    cur = [0.4, 0.4, 0.2]
    eps = 1e-4
    expected = 2 * (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.2 - eps) * math.log(0.2 / eps)
    assert psi(ref, cur, epsilon=eps) == pytest.approx(expected, rel=1e-12)
    assert math.isfinite(psi([1.0, 0.0], [0.0, 1.0]))


@pytest.mark.parametrize(
    ("n1", "n2", "discrete"),
    [(300, 200, False), (5000, 8000, False), (5000, 50_000, False), (2000, 30_000, True), (5000, 200_000, True)],
)
def test_ks_equals_scipy_ks_2samp(n1: int, n2: int, discrete: bool) -> None:
    rng = np.random.default_rng(n1 + n2)
    a = rng.normal(0, 1, n1)
    b = rng.normal(0.05, 1.1, n2)
    if discrete:  # many ties, within and across the samples
        a, b = np.round(a * 3), np.round(b * 3)
    stat, pvalue = ks(np.sort(a), np.sort(b))
    expected = stats.ks_2samp(a, b)
    assert stat == pytest.approx(expected.statistic, abs=1e-12)
    assert pvalue == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


def test_ks_identical_samples() -> None:
    x = np.sort(np.random.default_rng(0).normal(size=20_000))
    assert ks(x[::4], x) [0] < 0.01


def test_chi_square_flags_a_categorical_shift() -> None:
    ref = np.array([0.5, 0.3, 0.2])
    same = np.array([500, 300, 200])
    shifted = np.array([400, 350, 250])
    stat, p_same = chi_square(ref, same)
    assert stat == pytest.approx(0.0, abs=1e-9) and p_same == pytest.approx(1.0)
    stat, p_shift = chi_square(ref, shifted)
    expected = stats.chisquare(shifted, ref * shifted.sum())
    assert stat == pytest.approx(expected.statistic, rel=1e-3)
    assert p_shift < 1e-6


def test_jensen_shannon_matches_scipy() -> None:
    p = np.array([0.1, 0.4, 0.5, 0.0])
    q = np.array([0.3, 0.3, 0.2, 0.2])
    assert jensen_shannon(p, q) == pytest.approx(float(jensenshannon(p, q)), rel=1e-9)
    assert jensen_shannon(p, p) == 0.0


def test_wasserstein_normed_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    a = np.sort(rng.normal(0, 2, 4000))
    b = np.sort(rng.normal(1, 2, 4000))
    expected = stats.wasserstein_distance(a, b) / 2.0
    assert wasserstein_normed(a, b, 2.0) == pytest.approx(expected, rel=1e-9)
    # unequal sizes: within a grid cell of scipy's exact answer
    c = np.sort(rng.normal(1, 2, 50_000))
    assert wasserstein_normed(a, c, 2.0) == pytest.approx(stats.wasserstein_distance(a, c) / 2.0, rel=0.02)


def test_registry_metadata_and_unknown_name() -> None:
    assert {"psi", "ks", "chisquare", "jensenshannon", "wasserstein"} <= set(STATTESTS)
    assert get_stattest("ks").kind == "pvalue" and get_stattest("ks").feature_types == ("numeric",)
    assert get_stattest("psi").drifted(0.25) and not get_stattest("psi").drifted(0.05)
    with pytest.raises(UnknownStatTestError) as info:
        get_stattest("anderson")
    assert isinstance(info.value, MLOpsError)
    for name in STATTESTS:
        assert name in info.value.message
