"""Training building blocks: feature engineering, metrics and threshold, calibration, data, devices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flask_mlops.errors import ConfigError, MLOpsError
from flask_mlops.specs import parse_models
from flask_mlops.training import CANDIDATES, Calibrator, load_training_data, resolve_device
from flask_mlops.training.features import make_feature_engineer
from flask_mlops.training.metrics import best_threshold, binary_metrics, confusion

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "diabetes.csv"
PIMA = ["Pregnancies", "Glucose", "BloodPressure", "SkinThickness", "Insulin", "BMI", "DiabetesPedigreeFunction", "Age"]


def spec_of(features: Any = PIMA, **extra: Any) -> Any:
    return parse_models({"m": {"features": features, "target": "Outcome", "data": str(DATA), **extra}})[0]


def test_pima_preset_engineers_by_feature_name() -> None:
    fe = make_feature_engineer(spec_of(feature_engineering="pima"))
    train = np.array(
        [
            [1, 100, 70, 20, 100, 30.0, 0.5, 40],
            [2, 120, 80, 30, 200, 40.0, 0.3, 50],
            [3, 140, 90, 40, 0, 20.0, 0.2, 60],
        ],
        dtype=float,
    )
    fe.fit(train)
    names = list(fe.get_feature_names_out())
    assert names == [*PIMA, "BMI*Age", "Glucose/Insulin"]
    out = fe.transform(np.array([[0, 0, 0, 0, 0, 0, 0.1, 30]], dtype=float))
    col = dict(zip(names, out[0], strict=True))
    assert col["Pregnancies"] == 0  # zero is a real value here
    assert col["Glucose"] == 120 and col["BMI"] == 30.0  # zeros as missing -> training medians
    assert col["Insulin"] == 150  # median of the measured values (100, 200)
    assert col["BMI*Age"] == pytest.approx(30.0 * 30)  # computed after imputation of BMI
    # Insulin = 0 means "not measured": the ratio uses the imputed Insulin, never divides by 0
    assert col["Glucose/Insulin"] == pytest.approx(120 / 150)
    assert np.isfinite(fe.transform(train)).all()


def test_generic_default_is_harmless() -> None:
    spec = spec_of(["a", "b", {"name": "c", "type": "categorical", "categories": ["x", "y"]}])
    fe = make_feature_engineer(spec)
    X = np.array([[0.0, 1.0, "x"], [2.0, np.nan, "y"], [4.0, 3.0, "x"]], dtype=object)
    out = fe.fit(X).transform(X)
    assert list(fe.get_feature_names_out()) == ["a", "b", "c=x", "c=y"]
    np.testing.assert_allclose(out[:, 0], [0.0, 2.0, 4.0])  # zeros kept: no zeros-as-missing by default
    assert out[1, 1] == 2.0  # NaN -> median
    np.testing.assert_allclose(out[:, 2:], [[1, 0], [0, 1], [1, 0]])
    assert np.array_equal(fe.transform(np.array([[1.0, 1.0, "zzz"]], dtype=object))[0, 2:], [0, 0])


def test_feature_engineering_config_errors() -> None:
    with pytest.raises(ConfigError, match="known presets: none, pima"):
        make_feature_engineer(spec_of(feature_engineering="nope"))
    with pytest.raises(ConfigError, match="unknown or non-numeric feature"):
        make_feature_engineer(spec_of(feature_engineering={"products": [["BMI", "Height"]]}))
    with pytest.raises(ConfigError, match="unknown feature_engineering key"):
        make_feature_engineer(spec_of(feature_engineering={"squares": ["BMI"]}))
    # a preset on a model lacking some of its columns uses what exists
    fe = make_feature_engineer(spec_of(["Glucose", "BMI", "Age"], feature_engineering="pima"))
    assert fe.products == (("BMI", "Age"),) and fe.ratios == ()
    custom = make_feature_engineer(spec_of(feature_engineering={"preset": "pima", "missing_indicators": True}))
    assert "Insulin_missing" in list(custom.fit(np.ones((2, 8))).get_feature_names_out())


def test_best_threshold_and_metrics() -> None:
    y = np.array([0, 0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.9])
    t = best_threshold(y, p, "f1")
    assert 0.35 < t <= 0.4
    m = binary_metrics(y, p, t)
    assert m["f1"] == 1.0 and m["roc_auc"] == 1.0 and m["accuracy"] == 1.0
    assert confusion(y, p, 0.5) == [[4, 0], [1, 1]]
    with pytest.raises(ValueError, match="known: f1"):
        best_threshold(y, p, "mcc")


def test_calibrator_fixes_overconfident_scores() -> None:
    rng = np.random.default_rng(0)
    true_p = rng.uniform(0.05, 0.95, 4000)
    y = (rng.uniform(size=true_p.size) < true_p).astype(int)
    overconfident = 1 / (1 + np.exp(-3 * np.log(true_p / (1 - true_p))))
    for method in ("sigmoid", "isotonic"):
        cal = Calibrator(method).fit(overconfident, y)
        fixed = cal.transform(overconfident)
        before = binary_metrics(y, overconfident, 0.5)["log_loss"]
        after = binary_metrics(y, fixed, 0.5)["log_loss"]
        assert after < before - 0.02
    assert np.array_equal(Calibrator("none").fit(true_p, y).transform(true_p), true_p)


def test_load_training_data(tmp_path: Path) -> None:
    spec = spec_of(list(reversed(PIMA)))
    X, y = load_training_data(spec)
    assert X.shape == (768, 8) and X.dtype == float
    assert int(y.sum()) == 268
    assert X[0, 0] == 50 and X[0, -1] == 6  # declared order, not the CSV's
    with pytest.raises(MLOpsError, match="lacks column"):
        load_training_data(spec_of(["Glucose", "Height"]))
    with pytest.raises(ConfigError, match="no target"):
        load_training_data(parse_models({"m": {"features": PIMA, "data": str(DATA)}})[0])
    csv = tmp_path / "labels.csv"
    csv.write_text("a,label\n1,yes\n2,no\n3,yes\n")
    Xs, ys = load_training_data(parse_models({"m": {"features": ["a"], "positive_label": "yes"}})[0], csv, "label")
    assert ys.tolist() == [1, 0, 1]


def test_registry_lists_all_candidates_and_device_cpu() -> None:
    assert list(CANDIDATES) == ["xgboost", "random_forest", "hist_gradient_boosting", "logistic_regression", "ridge", "mlp"]
    assert CANDIDATES["mlp"].requires == ("torch",)
    choice = resolve_device("cpu")
    assert (choice.xgboost, choice.torch, choice.used, choice.note) == ("cpu", "cpu", "cpu", None)
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        resolve_device("tpu")
