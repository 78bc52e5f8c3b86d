"""Drift calculator: known answers for identical, shifted, small and too-small windows."""

from __future__ import annotations

import numpy as np
import pytest

from flask_mlops.config import load_config
from flask_mlops.errors import ConfigError
from flask_mlops.monitoring.drift import DriftCalculator, DriftThresholds, grade, worst
from flask_mlops.monitoring.profile import build_profile
from flask_mlops.store.columnar import CodedColumn

FEATURES = ["a", "b", "c", "d"]


def frame(n: int, seed: int, *, shift: dict[str, float] | None = None, cats: tuple[float, ...] = (0.5, 0.3, 0.2)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cols = {name: rng.normal(10.0 * i, 2.0, n) for i, name in enumerate(FEATURES)}
    for name, sd in (shift or {}).items():
        cols[name] = cols[name] + sd * 2.0
    cols["cat"] = rng.choice(np.array(["x", "y", "z"], dtype=object), n, p=list(cats))
    return cols


@pytest.fixture(scope="module")
def calculator() -> DriftCalculator:
    return DriftCalculator(build_profile(frame(20_000, seed=1)))


def test_identical_distribution_is_all_ok(calculator: DriftCalculator) -> None:
    report = calculator.calculate(frame(20_000, seed=2))
    assert report.status == "ok"
    assert report.level == "ok"
    assert report.drifted_features == []
    assert report.share_drifted == 0.0
    for f in report.features.values():
        assert f.level == "ok", (f.name, f.why)
        assert f.test == "effect_size"


def test_one_shifted_feature_is_flagged_alone_at_the_expected_level(calculator: DriftCalculator) -> None:
    # +0.6 sd: normed Wasserstein ~0.6 and PSI ~0.35 -> critical
    report = calculator.calculate(frame(20_000, seed=3, shift={"b": 0.6}))
    assert report.drifted_features == ["b"]
    b = report.features["b"]
    assert b.level == "critical"
    assert b.wasserstein == pytest.approx(0.6, abs=0.03)
    assert "judged by effect size" in b.why
    assert report.level == "critical"
    assert report.share_drifted == pytest.approx(1 / 5)
    # +0.15 sd: PSI ~0.02 (ok) but normed Wasserstein ~0.15 >= 0.1 -> warning, decided by it
    report = calculator.calculate(frame(20_000, seed=4, shift={"c": 0.15}))
    assert report.drifted_features == ["c"]
    c = report.features["c"]
    assert (c.level, c.decided_by) == ("warning", "wasserstein")
    assert c.psi is not None and c.psi < 0.1


def test_small_window_is_judged_by_ks_pvalue(calculator: DriftCalculator) -> None:
    report = calculator.calculate(frame(300, seed=5, shift={"a": 1.0}))
    a = report.features["a"]
    assert a.decided_by == "ks"
    assert a.ks_pvalue is not None and a.ks_stat is not None
    assert a.ks_pvalue < 0.05 and a.ks_stat > 0.1
    assert a.level == "critical"  # PSI of a 1 sd shift is far past 0.3
    assert report.drifted_features == ["a"]
    assert report.features["cat"].level == "ok"


def test_categorical_shift_is_flagged(calculator: DriftCalculator) -> None:
    big = calculator.calculate(frame(20_000, seed=6, cats=(0.3, 0.3, 0.4)))
    cat = big.features["cat"]
    assert cat.drifted and cat.chi2_pvalue is not None and cat.chi2_pvalue < 1e-6
    assert big.drifted_features == ["cat"]
    small = calculator.calculate(frame(400, seed=7, cats=(0.2, 0.3, 0.5)))
    assert small.features["cat"].decided_by == "chisquare"
    assert small.features["cat"].drifted


def test_coded_columns_equal_string_columns(calculator: DriftCalculator) -> None:
    cols = frame(5000, seed=8, cats=(0.3, 0.3, 0.4))
    cats, codes = np.unique(cols["cat"].astype(str), return_inverse=True)
    coded = {**cols, "cat": CodedColumn(codes.astype(np.int32), list(cats))}
    plain = calculator.calculate(cols).features["cat"]
    fast = calculator.calculate(coded).features["cat"]
    assert plain.psi == pytest.approx(fast.psi) and plain.level == fast.level


def test_insufficient_data(calculator: DriftCalculator) -> None:
    report = calculator.calculate(frame(99, seed=9))
    assert report.status == "insufficient_data"
    assert report.level is None and report.features == {}
    out = report.to_dict()
    assert out["status"] == "insufficient_data" and "100" in out["message"]


def test_missing_values_and_unseen_categories_are_reported(calculator: DriftCalculator) -> None:
    cols = frame(5000, seed=10)
    cols["a"][:2500] = np.nan
    cols["cat"][:1000] = "never-seen"
    report = calculator.calculate(cols)
    assert report.features["a"].missing_rate == pytest.approx(0.5)
    assert report.features["a"].level == "critical"  # the missing bin moves the PSI
    assert report.features["cat"].out_of_range_rate == pytest.approx(0.2)
    absent = calculator.calculate({k: v for k, v in frame(500, seed=11).items() if k != "d"})
    assert absent.features["d"].missing_rate == 1.0 and absent.features["d"].drifted


def test_out_of_range_rate_uses_reference_bounds(calculator: DriftCalculator) -> None:
    cols = frame(2000, seed=12)
    cols["a"][:200] = 1e6
    assert calculator.calculate(cols).features["a"].out_of_range_rate == pytest.approx(0.1)


def test_prediction_drift() -> None:
    rng = np.random.default_rng(13)
    cols = frame(5000, seed=13)
    calc = DriftCalculator(build_profile(cols, predictions=rng.beta(2, 5, 5000)))
    same = calc.calculate(frame(5000, seed=14), prediction=rng.beta(2, 5, 5000))
    moved = calc.calculate(frame(5000, seed=15), prediction=rng.beta(5, 2, 5000))
    assert same.prediction is not None and same.prediction.level == "ok"
    assert moved.prediction is not None and moved.prediction.level == "critical"
    assert moved.level == "critical" and moved.drifted_features == []


def test_report_dict_has_the_documented_shape(calculator: DriftCalculator) -> None:
    out = calculator.calculate(frame(3000, seed=16), window={"last": 3000}).to_dict()
    assert {"status", "level", "window", "features", "prediction", "share_drifted"} <= set(out)
    assert out["window"] == {"last": 3000, "n": 3000}
    f = out["features"]["a"]
    for key in ("level", "test", "psi", "ks_stat", "ks_pvalue", "js", "wasserstein", "missing_rate", "out_of_range_rate", "decided_by", "why"):
        assert key in f
    assert len(f["histogram"]["labels"]) == len(f["histogram"]["reference"]) == len(f["histogram"]["current"])


def test_thresholds_from_config_and_per_feature_overrides() -> None:
    config = load_config(
        {"MLOPS_DRIFT_ALPHA": 0.01, "MLOPS_DRIFT_FEATURE_THRESHOLDS": {"b": {"wasserstein": [0.5, 0.8, 0.9]}}},
        "/tmp/instance",
    )
    th = DriftThresholds.from_config(config)
    assert th.alpha == 0.01 and th.min_samples == 100
    assert th.levels("b", "wasserstein") == (0.5, 0.8, 0.9)
    assert th.levels("a", "psi") == (0.1, 0.2, 0.3)
    calc = DriftCalculator(
        build_profile(frame(20_000, seed=1)),
        DriftThresholds.build(per_feature={"b": {"wasserstein": [0.7, 0.8, 0.9], "psi": [1, 2, 3], "ks_statistic": 0.5}}),
    )
    report = calc.calculate(frame(20_000, seed=3, shift={"b": 0.6}))
    assert report.features["b"].level == "ok"
    with pytest.raises(ConfigError, match="unknown threshold 'colour'"):
        DriftThresholds.build(per_feature={"b": {"colour": 1}})
    with pytest.raises(ConfigError, match="MLOPS_DRIFT_FEATURE_THRESHOLDS"):
        DriftThresholds.from_config(load_config({"MLOPS_DRIFT_FEATURE_THRESHOLDS": {"b": {"psi": [0.3, 0.2, 0.1]}}}, "/tmp/instance"))


def test_level_helpers() -> None:
    assert [grade(v, (0.1, 0.2, 0.3)) for v in (0.05, 0.1, 0.25, 0.31)] == ["ok", "monitor", "warning", "critical"]
    assert worst(["ok", None, "warning", "monitor"]) == "warning"
    assert worst([]) == "ok"
