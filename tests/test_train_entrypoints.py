"""`mlops.train(...)` and `flask mlops train` end to end: train -> register -> gates -> serve.

Models are the user's: a synthetic dataset declared in MLOPS_MODELS trains and serves the
same way as the example's diabetes model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from flask import Flask

from flask_mlops import get_state
from flask_mlops.errors import ValidationError
from flask_mlops.services.registry import list_versions

from .conftest import DATA, SAMPLE_ROW, base_config, build_app

FAST = {"MLOPS_CANDIDATES": '{"logistic_regression": {}}', "MLOPS_CV_FOLDS": 3}
EASY_GATES = {"accuracy": 0.5, "roc_auc": 0.5, "f1": 0.3, "no_worse_than_production": True}


def test_mlops_train_from_a_dataframe_promotes_and_serves(instance: Path, tmp_path: Path) -> None:
    app = build_app(instance, base_config(tmp_path, **FAST, MLOPS_PROMOTION_GATES=EASY_GATES))
    mlops = app.extensions["test_mlops"]
    result, outcome = mlops.train("diabetes", pd.read_csv(DATA), target="Outcome", app=app)
    assert result.candidate == "logistic_regression" and result.threshold is not None
    assert outcome["promoted"] is True and outcome["semver"] == "1.0.0"
    assert get_state(app).models.production_versions() == {"diabetes": outcome["version"]}
    r = app.test_client().post("/predict", json=SAMPLE_ROW)
    assert r.status_code == 200 and r.headers["X-Model-Version"] == str(outcome["version"])
    (info,) = list_versions(get_state(app), "diabetes")
    assert info.threshold == pytest.approx(result.threshold) and info.metrics["roc_auc"] > 0.7


def test_mlops_train_rejects_data_without_the_target_or_features(instance: Path, tmp_path: Path) -> None:
    app = build_app(instance, base_config(tmp_path, **FAST))
    mlops = app.extensions["test_mlops"]
    df = pd.read_csv(DATA)
    with pytest.raises(ValidationError, match="target column 'label'"):
        mlops.train("diabetes", df, target="label", app=app)
    with pytest.raises(ValidationError, match="lacks declared features: Glucose"):
        mlops.train("diabetes", df.drop(columns=["Glucose"]), target="Outcome", app=app)
    assert list_versions(get_state(app), "diabetes") == []


def test_cli_train_prints_the_comparison_and_honours_if_missing(instance: Path, tmp_path: Path) -> None:
    app = build_app(instance, base_config(tmp_path, **FAST, MLOPS_PROMOTION_GATES=EASY_GATES))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["mlops", "train", "--name", "diabetes", "--data", str(DATA), "--target", "Outcome"])
    assert result.exit_code == 0, result.output
    assert "fold 3 of 3" in result.output and "logistic_regression" in result.output
    assert "promoted diabetes v1 to production" in result.output
    again = runner.invoke(args=["mlops", "train", "--name", "diabetes", "--if-missing"])
    assert again.exit_code == 0 and "nothing to do" in again.output
    assert [v.version for v in list_versions(get_state(app), "diabetes")] == [1]


def test_cli_train_fails_loudly_when_the_gates_reject(instance: Path, tmp_path: Path) -> None:
    app = build_app(instance, base_config(tmp_path, **FAST, MLOPS_PROMOTION_GATES={"accuracy": 0.99}))
    result = app.test_cli_runner().invoke(args=["mlops", "train", "--name", "diabetes"])
    assert result.exit_code == 1
    assert "registered but not promoted" in result.output and "accuracy" in result.output
    assert get_state(app).models.production_versions() == {}


def test_a_users_own_model_trains_and_serves(instance: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 600
    df = pd.DataFrame({"tenure": rng.uniform(0, 60, n), "spend": rng.gamma(2.0, 30.0, n), "tickets": rng.poisson(1.5, n).astype(float)})
    logit = -1.0 - 0.05 * df["tenure"] + 0.02 * df["spend"] + 0.6 * df["tickets"]
    df["churned"] = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    csv = tmp_path / "churn.csv"
    df.to_csv(csv, index=False)
    cfg = base_config(tmp_path, **FAST, MLOPS_PROMOTION_GATES=EASY_GATES)
    cfg["MLOPS_MODELS"] = {"churn": {"features": ["tenure", "spend", "tickets"], "target": "churned", "data": str(csv)}}
    app = Flask("churn-host", instance_path=str(instance))
    app.config.update(cfg)
    from flask_mlops import MLOps

    mlops = MLOps(app)
    result = app.test_cli_runner().invoke(args=["mlops", "train", "--name", "churn"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        answer: Any = mlops.predict("churn", {"tenure": 2.0, "spend": 150.0, "tickets": 4.0})
        loyal: Any = mlops.predict("churn", {"tenure": 58.0, "spend": 10.0, "tickets": 0.0})
    assert answer.version == 1 and answer.probability > loyal.probability
