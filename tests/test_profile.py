"""Reference profiles: quantile bins, proportions, capped seeded sample, categories, JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flask_mlops.monitoring.profile import build_profile, profile_from_json, profile_to_json
from flask_mlops.specs import parse_models


def test_numeric_bins_are_reference_deciles_with_open_outer_bins() -> None:
    x = np.arange(1000, dtype=float)
    prof = build_profile({"x": x})["features"]["x"]
    assert prof["type"] == "numeric"
    assert len(prof["edges"]) == 9
    np.testing.assert_allclose(prof["edges"], np.quantile(x, np.linspace(0, 1, 11)[1:-1]))
    # ten value bins of ~10 % each, then the missing bin
    assert len(prof["proportions"]) == 11
    np.testing.assert_allclose(prof["proportions"][:10], 0.1, atol=0.002)
    assert prof["proportions"][10] == 0.0
    assert prof["stats"]["min"] == 0.0 and prof["stats"]["max"] == 999.0
    assert prof["stats"]["mean"] == pytest.approx(499.5)


def test_missing_values_get_their_own_share() -> None:
    x = np.array([1.0, 2.0, np.nan, 4.0, None, 6.0, 7.0, 8.0], dtype=object)
    prof = build_profile({"x": x}, bins=4)["features"]["x"]
    assert prof["stats"]["missing"] == 2
    assert prof["proportions"][-1] == pytest.approx(0.25)
    assert sum(prof["proportions"]) == pytest.approx(1.0)


def test_discrete_features_merge_duplicate_edges() -> None:
    x = np.repeat([0.0, 1.0, 2.0], [600, 300, 100])
    prof = build_profile({"x": x})["features"]["x"]
    assert prof["edges"] == sorted(set(prof["edges"]))
    assert sum(prof["proportions"]) == pytest.approx(1.0)


def test_sample_is_capped_sorted_and_seeded() -> None:
    x = np.random.default_rng(0).normal(size=20_000)
    a = build_profile({"x": x}, sample_cap=500, seed=7)["features"]["x"]["sample"]
    b = build_profile({"x": x}, sample_cap=500, seed=7)["features"]["x"]["sample"]
    c = build_profile({"x": x}, sample_cap=500, seed=8)["features"]["x"]["sample"]
    assert len(a) == 500 and a == sorted(a) and a == b and a != c
    small = build_profile({"x": x[:100]}, sample_cap=500)["features"]["x"]["sample"]
    assert len(small) == 100


def test_categorical_frequencies_with_other_bucket() -> None:
    values = ["a"] * 500 + ["b"] * 300 + [None] * 100 + [f"rare{i}" for i in range(100)]
    prof = build_profile({"c": np.array(values, dtype=object)})["features"]["c"]
    assert prof["type"] == "categorical"
    assert prof["categories"]["a"] == pytest.approx(0.5)
    assert prof["categories"]["b"] == pytest.approx(0.3)
    assert prof["missing"] == pytest.approx(0.1)
    # 100 singletons: 50 kept as categories at most, the rest in "other"
    assert len(prof["categories"]) <= 50
    assert sum(prof["categories"].values()) + prof["other"] + prof["missing"] == pytest.approx(1.0)


def test_spec_types_ranges_and_prediction_profile() -> None:
    (spec,) = parse_models({"m": {"features": {"age": {"type": "numeric", "min": 0, "max": 120}, "sex": {"type": "categorical"}}}})
    rng = np.random.default_rng(1)
    cols = {"age": rng.integers(18, 90, 400), "sex": rng.choice(["f", "m"], 400)}
    prof = build_profile(cols, spec, predictions=rng.uniform(size=400))
    assert prof["model"] == "m" and prof["task"] == "classification"
    assert prof["features"]["age"]["range"] == [0.0, 120.0]
    assert prof["features"]["sex"]["type"] == "categorical"
    assert prof["prediction"]["type"] == "numeric" and prof["prediction"]["of"] == "probability"
    with pytest.raises(ValueError, match="no column"):
        build_profile({"age": cols["age"]}, spec)


def test_json_round_trip_is_strict_json() -> None:
    rng = np.random.default_rng(2)
    prof = build_profile({"x": rng.normal(size=300), "c": rng.choice(["u", "v"], 300)}, predictions=rng.integers(0, 2, 300))
    text = profile_to_json(prof)
    assert "NaN" not in text
    assert profile_from_json(text) == json.loads(text)
    assert profile_from_json(text)["features"]["x"]["edges"] == prof["features"]["x"]["edges"]
    with pytest.raises(ValueError, match="not a flask-mlops reference profile"):
        profile_from_json('{"a": 1}')


def test_all_missing_column_is_still_serialisable() -> None:
    prof = build_profile({"x": np.full(50, np.nan)})
    assert prof["features"]["x"]["proportions"] == [0.0, 1.0]
    profile_to_json(prof)


def test_class_predictions_are_profiled_as_categories() -> None:
    (spec,) = parse_models({"m": {"features": {"x": "numeric"}}})
    x = np.arange(100, dtype=float)
    prof = build_profile({"x": x}, spec, predictions=(x > 50).astype(float))
    assert prof["prediction"]["type"] == "categorical" and prof["prediction"]["of"] == "prediction"
    assert set(prof["prediction"]["categories"]) == {"0", "1"}
