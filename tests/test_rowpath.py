"""The lean single-row path (services/rowpath.py): equal to predict_proba where it is used, refused elsewhere."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flask_mlops import get_state
from flask_mlops.monitoring.profile import build_profile
from flask_mlops.services.rowpath import compile_row, reference_rows, verify

from .conftest import AUTH, FEATURE_NAMES, SAMPLE_ROW, base_config, build_app, diabetes_frame, quick_model


def _data() -> tuple[np.ndarray, np.ndarray]:
    df = diabetes_frame()
    return df[FEATURE_NAMES].to_numpy(float), df["Outcome"].to_numpy()


def _pipelines() -> dict[str, Any]:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from xgboost import XGBClassifier

    from flask_mlops.training.features import FeatureEngineer

    X, y = _data()
    fe = dict(feature_names=tuple(FEATURE_NAMES), zeros_as_missing=("Glucose", "BMI", "Insulin"), ratios=(("Glucose", "BMI"),))
    return {
        "logistic": quick_model(),
        "imputer+mlp": make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), MLPClassifier((16, 8), max_iter=300, random_state=0)).fit(X, y),
        "engineer+xgboost": make_pipeline(FeatureEngineer(**fe), XGBClassifier(n_estimators=30, max_depth=2)).fit(X, y),
        "engineer+logistic": make_pipeline(FeatureEngineer(**fe), StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y),
    }


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", ["logistic", "imputer+mlp", "engineer+xgboost", "engineer+logistic"])
def test_lean_path_equals_predict_proba(kind: str) -> None:
    model = _pipelines()[kind]
    run, why = compile_row(model)
    assert run is not None, why
    X, _ = _data()
    rows = reference_rows(build_profile({f: X[:, i] for i, f in enumerate(FEATURE_NAMES)}), FEATURE_NAMES)
    assert rows is not None and rows.shape == (256, len(FEATURE_NAMES))
    assert verify(run, model, rows, 0.5) == ""
    expected = model.predict_proba(X[:50])[:, 1]
    assert np.allclose([run(x) for x in X[:50]], expected, rtol=1e-6, atol=1e-9)


def test_unknown_steps_keep_the_estimator() -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    X, y = _data()
    run, why = compile_row(make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=5, random_state=0)).fit(X, y))
    assert run is None and "RandomForestClassifier" in why
    run, why = compile_row(make_pipeline(MinMaxScaler(), quick_model()[-1]).fit(X, y))
    assert run is None and "MinMaxScaler" in why


def test_a_wrong_lean_path_is_caught_by_the_check() -> None:
    """Compiled from one model, checked against another: refused, with where it differs."""
    X, _ = _data()
    run, _ = compile_row(quick_model(seed=0))
    assert run is not None
    rows = reference_rows(build_profile({f: X[:, i] for i, f in enumerate(FEATURE_NAMES)}), FEATURE_NAMES)
    assert rows is not None
    assert "differs from predict_proba" in verify(run, quick_model(seed=3), rows, 0.5)


def test_served_model_uses_the_verified_lean_path(served_app: Any, tmp_path: Path, caplog: Any) -> None:
    """The registered pipeline is served through the lean path; answers equal the estimator's own."""
    state = get_state(served_app)
    served = state.models.get("diabetes")
    assert served.lean is not None
    values = [float(SAMPLE_ROW[f]) for f in FEATURE_NAMES]
    expected = float(served.estimator.predict_proba(np.asarray([values]))[0, 1])
    r = served_app.test_client().post("/predict", json=SAMPLE_ROW, headers=AUTH)
    assert r.status_code == 200 and r.json["probability"] == pytest.approx(expected, rel=1e-9)
    assert r.json["prediction"] == (1 if expected >= 0.5 else 0)


def test_a_version_without_a_profile_keeps_the_estimator(instance: Path, tmp_path: Path, caplog: Any) -> None:
    app = build_app(instance, base_config(tmp_path))
    with caplog.at_level(logging.INFO, logger="flask_mlops.services.serving"):
        app.extensions["test_mlops"].register("diabetes", quick_model(), app=app, promote=True, force=True)  # no reference data
        served = get_state(app).models.get("diabetes")
    assert served.lean is None
    assert "no lean path: no numeric reference profile" in caplog.text
    r = app.test_client().post("/predict", json=SAMPLE_ROW)
    assert r.status_code == 200 and 0 <= r.json["probability"] <= 1
