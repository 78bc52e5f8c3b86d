"""Issue 12's decision rule: missing and out-of-range values decide, small windows keep their
false-alarm rate, point bins, the two-sample chi-square, and a new test through the registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flask_mlops.errors import ConfigError
from flask_mlops.monitoring.drift import DriftCalculator, DriftThresholds
from flask_mlops.monitoring.health import health_of
from flask_mlops.monitoring.profile import build_profile, profile_from_json, profile_to_json
from flask_mlops.monitoring.stattests import (
    STATTESTS,
    FeatureData,
    Levels,
    StatResult,
    chi_square_two_sample,
    psi_noise_floor,
    register_stattest,
)

from .conftest import READ_AUTH, base_config, build_app
from .test_monitoring_api import predict_rows

API = "/mlops/api"


def glucose_like(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.normal(120.0, 30.0, n)


@pytest.fixture(scope="module")
def small_reference() -> DriftCalculator:
    rng = np.random.default_rng(0)
    return DriftCalculator(build_profile({"g": glucose_like(600, rng), "c": rng.choice(np.array(list("abcde"), dtype=object), 600)}))


def test_a_jump_in_missing_values_decides_at_every_window_size(small_reference: DriftCalculator) -> None:
    rng = np.random.default_rng(1)
    for n in (200, 1000, 100_000):
        g = glucose_like(n, rng)
        g[rng.uniform(size=n) < 0.3] = np.nan
        f = small_reference.calculate({"g": g}).features["g"]
        assert f.level == "critical" and f.decided_by == "missing_rate", (n, f.why)
        assert f.tests["missing_rate"].pvalue is not None and f.tests["missing_rate"].pvalue < 1e-6
    report = small_reference.calculate({"g": g})
    assert "g: missing_rate" in health_of(drift=report).reasons[0].message


def test_unit_errors_and_far_tails_are_flagged_on_small_windows(small_reference: DriftCalculator) -> None:
    rng = np.random.default_rng(2)
    g = glucose_like(1000, rng)
    g[:50] *= 18.0  # 5 % in mg instead of mmol
    f = small_reference.calculate({"g": g}).features["g"]
    assert f.drifted and f.tests["out_of_range"].level == "critical", f.why
    assert f.out_of_range_rate == pytest.approx(0.05, abs=0.005)
    g = glucose_like(200, rng)
    g[:4] *= 10.0  # 2 % far tail
    f = small_reference.calculate({"g": g}).features["g"]
    assert f.drifted and f.tests["wasserstein"].level == "critical", f.why


def test_no_change_small_windows_stay_ok(small_reference: DriftCalculator) -> None:
    # 60 no-change windows of 200 rows: with a per-test alpha of 0.001 none may reach warning
    rng = np.random.default_rng(3)
    levels = []
    for _ in range(60):
        report = small_reference.calculate({"g": glucose_like(200, rng), "c": rng.choice(np.array(list("abcde"), dtype=object), 200)})
        levels += [f.level for f in report.features.values()]
    assert levels.count("warning") + levels.count("critical") == 0
    assert levels.count("monitor") <= 2


def test_two_sample_chi_square_counts_reference_error_and_existing_cells() -> None:
    from scipy.stats import chi2_contingency

    ref = np.array([120, 80, 60, 0, 3])
    cur = np.array([300, 180, 140, 0, 9])
    stat, pvalue, dof = chi_square_two_sample(ref, cur)
    # the empty cell adds no degree of freedom; the sparse one (expected < 5) is pooled
    expected = chi2_contingency(np.array([[120, 80, 63], [300, 180, 149]]), correction=False)
    assert dof == 2 and stat == pytest.approx(expected.statistic) and pvalue == pytest.approx(expected.pvalue)
    # a 20-category feature vs a 600-row reference: no change is not a monitor at 5,000 rows
    rng = np.random.default_rng(4)
    p = 0.85 ** np.arange(20) / np.sum(0.85 ** np.arange(20))
    cats = np.array([f"k{i}" for i in range(20)], dtype=object)
    calc = DriftCalculator(build_profile({"c": cats[rng.choice(20, 600, p=p)]}))
    levels = [calc.calculate({"c": cats[rng.choice(20, 5000, p=p)]}).features["c"].level for _ in range(20)]
    assert levels.count("ok") >= 19


def test_zero_inflated_and_constant_features_get_point_bins() -> None:
    rng = np.random.default_rng(5)
    z = np.where(rng.uniform(size=20_000) < 0.97, 0.0, rng.lognormal(3.0, 0.5, 20_000))
    prof = build_profile({"z": z, "k": np.full(2000, 7.0)})
    edges = prof["features"]["z"]["edges"]
    assert 0.0 in edges and len(edges) >= 10  # zero bin plus deciles of the non-zeros
    assert prof["features"]["z"]["proportions"][edges.index(0.0) + 1] == pytest.approx(np.mean(z == 0.0))
    calc = DriftCalculator(prof)
    w = np.where(rng.uniform(size=1000) < 0.97, 0.0, rng.lognormal(3.0, 0.5, 1000))
    moved = calc.calculate({"z": w * 2.7, "k": np.full(1000, 7.5)})
    assert moved.features["z"].drifted, moved.features["z"].why
    below = calc.calculate({"z": w, "k": np.full(1000, 6.5)}).features["k"]
    above = moved.features["k"]
    assert below.psi == pytest.approx(above.psi) and above.level == "critical"
    assert calc.calculate({"z": w, "k": np.full(1000, 7.0)}).features["k"].level == "ok"


def test_profiles_stored_before_point_bins_still_load_and_judge() -> None:
    rng = np.random.default_rng(6)
    old = build_profile({"x": rng.normal(size=2000)})
    x = old["features"]["x"]
    values = np.sort(rng.normal(size=2000))
    x["edges"] = [float(e) for e in np.quantile(values, np.linspace(0, 1, 11)[1:-1])]  # the old layout
    loaded = profile_from_json(profile_to_json(old))
    report = DriftCalculator(loaded).calculate({"x": rng.normal(0.0, 1.0, 3000)})
    assert report.features["x"].level in ("ok", "monitor")
    assert len(report.features["x"].histogram["labels"]) == 11


def test_psi_noise_floor_follows_both_sizes() -> None:
    ref = np.full(11, 1 / 11)
    small = psi_noise_floor(ref, 600, 200, 0.001)
    large = psi_noise_floor(ref, 20_000, 100_000, 0.001)
    assert small > 0.1 > large
    assert small == pytest.approx((1 / 600 + 1 / 200) * 29.588, rel=1e-3)


def test_stattests_are_chosen_by_name_per_type_and_feature() -> None:
    rng = np.random.default_rng(7)
    profile = build_profile({"a": rng.normal(size=3000), "b": rng.normal(size=3000)})
    th = DriftThresholds.build(stattests={"numeric": ["ks"], "b": ["psi", "wasserstein"]})
    report = DriftCalculator(profile, th).calculate({"a": rng.normal(size=500), "b": rng.normal(size=500)})
    assert list(report.features["a"].tests) == ["ks"]
    assert list(report.features["b"].tests) == ["psi", "wasserstein"]
    assert report.features["a"].to_dict()["psi"] is None
    with pytest.raises(ConfigError, match="unknown stat test 'anderson'"):
        DriftThresholds.build(stattests={"numeric": ["anderson"]})
    with pytest.raises(ConfigError, match="does not apply to numeric"):
        DriftCalculator(profile, DriftThresholds.build(stattests={"a": ["chisquare"]}))


@pytest.fixture
def mean_ratio() -> Iterator[str]:
    """A stat test registered by a user, as a plugin would: one function and its registration."""

    @register_stattest("mean_ratio", feature_types=("numeric",), levels=(1.1, 1.25, 1.5), kind="distance")
    def mean_ratio_test(data: FeatureData, levels: Levels, alpha: float) -> StatResult:
        """Ratio of the window's mean to the reference's."""
        assert data.reference_sample is not None and data.current_values is not None
        ratio = float(np.mean(data.current_values) / np.mean(data.reference_sample))
        level = "critical" if ratio >= levels[2] else "warning" if ratio >= levels[1] else "monitor" if ratio >= levels[0] else "ok"
        return StatResult("mean_ratio", ratio, level=level, why=f"mean ratio {ratio:.3g}")

    yield "mean_ratio"
    STATTESTS.pop("mean_ratio")


def test_a_newly_registered_stattest_reaches_the_drift_api(mean_ratio: str, served_instance: Path, tmp_path: Path) -> None:
    config = base_config(tmp_path, MLOPS_DRIFT_STATTESTS={"Glucose": ["ks", mean_ratio]}, MLOPS_DRIFT_FEATURE_THRESHOLDS={"Glucose": {mean_ratio: [0.5, 0.6, 0.7]}})
    app = build_app(served_instance, config)
    client = app.test_client()
    predict_rows(client, 150, seed=11)
    body = client.get(f"{API}/monitoring/drift?last=150", headers=READ_AUTH).get_json()
    glucose = body["features"]["Glucose"]
    assert set(glucose["tests"]) == {"ks", mean_ratio}
    assert glucose["tests"][mean_ratio]["level"] == "critical"  # ratio ~1 >= the overridden 0.7
    assert glucose["decided_by"] == mean_ratio and glucose["level"] == "critical"
    assert "mean ratio" in glucose["why"]
    assert "psi" in body["features"]["BMI"]["tests"]  # the other features keep the defaults
    page = client.get("/mlops/reports/drift?last=150", headers=READ_AUTH)  # GET stores nothing: the report is rendered
    assert page.status_code == 200
    assert mean_ratio in page.get_data(as_text=True)  # and the HTML report lists it too


def test_unknown_stattest_in_config_fails_at_start_up(served_instance: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MLOPS_DRIFT_STATTESTS"):
        build_app(served_instance, base_config(tmp_path, MLOPS_DRIFT_STATTESTS={"Glucose": ["no_such_test"]}))
    # Glucose is declared numeric: a categorical-only test cannot judge it
    with pytest.raises(ConfigError, match="does not apply to numeric"):
        build_app(served_instance, base_config(tmp_path, MLOPS_DRIFT_STATTESTS={"Glucose": ["chisquare"]}))


def test_power_bench_quick_mode_runs(tmp_path: Path) -> None:
    from bench.drift_power import simulate

    counts: dict[str, Any] = simulate(quick=True, sizes=(200,))
    assert counts["none|x|600|200"][2] == 2
    assert counts["missing_30|x|600|200"][0] == 2  # 30 % missing: drifted in both windows
