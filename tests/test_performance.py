"""Performance metrics, decay levels, CBPE estimates and operational metrics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from flask_mlops.monitoring.performance import (
    ClassificationMetrics,
    RegressionMetrics,
    classification_metrics,
    decay,
    estimate_performance,
    group_indices,
    metrics_by_group,
    operational_metrics,
    regression_metrics,
    rolling_mean,
)
from flask_mlops.store.columnar import CodedColumn


def test_classification_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    proba = np.clip(y * 0.3 + rng.uniform(0, 0.7, 500), 0, 1)
    pred = (proba >= 0.5).astype(int)
    m = classification_metrics(y, pred, proba)
    assert m.n_labelled == 500
    assert m.accuracy == pytest.approx(skm.accuracy_score(y, pred))
    assert m.precision == pytest.approx(skm.precision_score(y, pred))
    assert m.recall == pytest.approx(skm.recall_score(y, pred))
    assert m.f1 == pytest.approx(skm.f1_score(y, pred))
    assert m.roc_auc == pytest.approx(skm.roc_auc_score(y, proba))


def test_string_labels_and_single_class() -> None:
    m = classification_metrics(["yes", "no", "yes"], ["yes", "yes", "yes"], positive="yes")
    assert m.accuracy == pytest.approx(2 / 3) and m.precision == pytest.approx(2 / 3) and m.recall == 1.0
    one = classification_metrics([1, 1], [1, 0], [0.9, 0.2])
    assert one.roc_auc is None and one.to_dict()["roc_auc"] is None
    assert classification_metrics(["1", "0"], [1.0, 0.0]).accuracy == 1.0
    empty = classification_metrics([], [])
    assert empty.n_labelled == 0 and empty.accuracy is None


def test_regression_metrics() -> None:
    m = regression_metrics([1.0, 2.0, 3.0], [2.0, 2.0, 5.0])
    assert m.mae == pytest.approx(1.0)
    assert m.rmse == pytest.approx(np.sqrt(5 / 3))
    assert m.bias == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("current", "level"), [(0.80, "ok"), (0.79, "ok"), (0.78, "monitor"), (0.76, "warning"), (0.72, "critical")]
)
def test_decay_levels_at_2_5_10_percent(current: float, level: str) -> None:
    result = decay("accuracy", current, 0.80)
    assert result.level == level
    assert result.relative_drop == pytest.approx((0.80 - current) / 0.80)


def test_decay_for_error_metrics_and_without_baseline() -> None:
    assert decay("mae", 1.2, 1.0).level == "critical"
    assert decay("mae", 0.9, 1.0).level == "ok"
    none = decay("accuracy", 0.7, None)
    assert none.relative_drop is None and none.level == "ok"


def test_rolling_mean() -> None:
    np.testing.assert_allclose(rolling_mean([1, 0, 1, 1], 2), [1.0, 0.5, 0.5, 1.0])


def simulate(n: int, a: float, b: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated by construction: y ~ Bernoulli(p)."""
    rng = np.random.default_rng(seed)
    p = rng.beta(a, b, n)
    return p, (rng.uniform(size=n) < p).astype(int)


# Tolerance: with 5,000 predictions the realised accuracy itself has a standard error of
# about 0.007 around its expectation, so the estimate must land within 0.03 (~4 SE).
@pytest.mark.parametrize(("a", "b", "seed"), [(2, 5, 1), (5, 2, 2), (0.5, 0.5, 3), (1, 1, 4)])
def test_cbpe_tracks_realised_performance_on_calibrated_data(a: float, b: float, seed: int) -> None:
    p, y = simulate(5000, a, b, seed)
    est = estimate_performance(p, threshold=0.5)
    real = classification_metrics(y, (p >= 0.5).astype(int), p)
    assert est.n == 5000
    assert est.accuracy == pytest.approx(real.accuracy, abs=0.03)
    assert est.f1 == pytest.approx(real.f1, abs=0.03)
    assert est.roc_auc == pytest.approx(real.roc_auc, abs=0.03)


def test_cbpe_follows_a_covariate_shift_across_chunks() -> None:
    # the score distribution moves chunk by chunk; realised accuracy moves with it
    estimated: list[float] = []
    realised: list[float] = []
    for i, (a, b) in enumerate([(0.5, 0.5), (1, 1), (2, 2), (4, 4)]):
        p, y = simulate(4000, a, b, 10 + i)
        estimated.append(float(estimate_performance(p).accuracy or 0.0))
        realised.append(float(classification_metrics(y, (p >= 0.5).astype(int)).accuracy or 0.0))
    np.testing.assert_allclose(estimated, realised, atol=0.03)
    assert realised[0] - realised[-1] > 0.1  # the shift was large enough to matter
    assert np.argsort(estimated).tolist() == np.argsort(realised).tolist()


def test_cbpe_without_data() -> None:
    est = estimate_performance([])
    assert est.n == 0 and est.accuracy is None


def test_operational_metrics_and_levels() -> None:
    status = np.array([200] * 90 + [500] * 6 + [422] * 4)
    latency = np.linspace(1, 1000, 100)
    ts = np.datetime64("2026-11-20T00:00:00", "us") + np.arange(100) * np.timedelta64(36, "s")
    m = operational_metrics(status, latency, ts)
    assert m.n_requests == 100 and m.n_errors == 6
    assert m.error_rate == pytest.approx(0.06) and m.error_level == "warning"
    assert m.client_error_rate == pytest.approx(0.04)
    assert m.latency_p95_ms == pytest.approx(np.percentile(latency, 95))
    assert m.latency_level == "warning"
    assert m.requests_per_hour == pytest.approx(100 / (99 * 36) * 3600)
    assert operational_metrics([], []).error_level == "ok"


def test_metrics_by_version_and_variant() -> None:
    versions = CodedColumn(np.array([0, 0, 1, 1, -1], dtype=np.int32), ["1", "2"])
    groups = group_indices(versions)
    assert {k: v.tolist() for k, v in groups.items()} == {"1": [0, 1], "2": [2, 3], "none": [4]}
    by = metrics_by_group(versions, [1, 0, 1, 1, 0], [1, 1, 1, 0, 0])
    accuracy = {k: m.accuracy for k, m in by.items() if isinstance(m, ClassificationMetrics)}
    assert accuracy == {"1": 0.5, "2": 0.5, "none": 1.0}
    reg = metrics_by_group(["a", "a", "b"], [1.0, 2.0, 3.0], [1.0, 3.0, 3.0], task="regression")
    assert isinstance(reg["a"], RegressionMetrics) and reg["a"].mae == pytest.approx(0.5)


def test_decay_within_sampling_error_is_not_a_level() -> None:
    # true accuracy 0.76 both times, a 154-row holdout: a 6 % drop on 100 labels is noise
    noisy = decay("accuracy", 0.715, 0.76, n_current=100, n_baseline=154)
    assert noisy.level == "ok" and noisy.relative_drop == pytest.approx(0.0592, abs=1e-3)
    assert noisy.min_detectable_drop is not None and noisy.min_detectable_drop > 0.15
    assert noisy.interval is not None and noisy.interval[0] < 0 < noisy.interval[1]
    assert "within sampling error" in noisy.note
    # a 20 % drop against a 2,000-row holdout on 1,000 labels is real
    real = decay("accuracy", 0.60, 0.76, n_current=1000, n_baseline=2000)
    assert real.level == "critical" and real.min_detectable_drop is not None and real.min_detectable_drop < 0.065
    assert decay("mae", 1.5, 1.0, n_current=500, n_baseline=500).level == "critical"
    assert decay("accuracy", 0.70, 0.80).min_detectable_drop is None  # counts unknown: no guard


def test_decay_false_alarm_rate_is_bounded() -> None:
    # no change, baseline and window both redrawn: warning or worse in at most ~1 % of checks
    rng = np.random.default_rng(20)
    hits = 0
    for _ in range(2000):
        base = rng.binomial(154, 0.76) / 154
        cur = rng.binomial(100, 0.76) / 100
        hits += decay("accuracy", cur, base, n_current=100, n_baseline=154).level in ("warning", "critical")
    assert hits / 2000 <= 0.015


def test_sigmoid_calibration_never_inverts_the_ranking() -> None:
    from flask_mlops.training.model import MIN_SLOPE, Calibrator

    rng = np.random.default_rng(21)
    slopes = []
    for _ in range(30):  # shuffled labels: no signal, half the unconstrained slopes would be negative
        p = rng.uniform(0.05, 0.95, 300)
        y = rng.integers(0, 2, 300)
        cal = Calibrator("sigmoid").fit(p, y)
        slopes.append(cal.a_)
        assert skm.roc_auc_score(y, cal.transform(p)) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
        assert cal.transform(p).mean() == pytest.approx(y.mean(), abs=0.02)
    assert min(slopes) >= MIN_SLOPE and slopes.count(MIN_SLOPE) >= 5
    p = rng.uniform(0.01, 0.99, 2000)
    signal = Calibrator("sigmoid").fit(p, (rng.uniform(size=2000) < p).astype(int))
    assert signal.a_ == pytest.approx(1.0, abs=0.2)
