"""Tasks end to end: binary, multi-class (wine) and regression (diabetes) through training,
registration, gates with directions (per model) and serving.

Training settings are small (two fast candidates, 3 folds) so each model trains in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from flask import Flask, jsonify, request
from sklearn.datasets import load_diabetes, load_wine

from flask_mlops import MLOps, get_state
from flask_mlops.errors import ConfigError
from flask_mlops.services import lifecycle
from flask_mlops.services.registry import get_version
from flask_mlops.specs import parse_models
from flask_mlops.tasks import BINARY, MULTICLASS, REGRESSION, get_task, higher_is_better, infer_kind, task_for
from flask_mlops.training import TrainingSettings, run_training

from .conftest import AUTH, base_config

WINE = load_wine(as_frame=True).frame.rename(columns={"od280/od315_of_diluted_wines": "od280_od315"})
WINE["cultivar"] = WINE.pop("target").map({0: "barolo", 1: "grignolino", 2: "barbera"})
WINE_FEATURES = [c for c in WINE.columns if c != "cultivar"]
DIAB = load_diabetes(as_frame=True).frame.rename(columns={"target": "progression"})
DIAB_FEATURES = [c for c in DIAB.columns if c != "progression"]
FAST = {"random_forest": {"n_estimators": 25, "max_depth": 4}, "logistic_regression": {}, "ridge": {}}


def fast(**kw: Any) -> TrainingSettings:
    return TrainingSettings(**{"candidates": FAST, "cv_folds": 3, "importance_repeats": 1, "make_plots": False, "n_jobs": 1, **kw})


def host(instance: Path, tmp_path: Path, models: dict[str, Any], **config: Any) -> tuple[Flask, MLOps]:
    """A user's app: its own models declared, nothing else."""
    app = Flask("tasks-host", instance_path=str(instance))
    app.config.update(base_config(tmp_path, MLOPS_MODELS=models, MLOPS_CANDIDATES=FAST, MLOPS_CV_FOLDS=3, **config))
    return app, MLOps(app)


# -- the Task objects ------------------------------------------------------------------------------
def test_task_choices_and_directions() -> None:
    assert infer_kind("classification", [0, 1]) == BINARY
    assert infer_kind("classification", ["a", "b", "c"]) == MULTICLASS
    assert infer_kind("regression") == REGRESSION
    assert task_for("classification", [0, 1], recorded="multiclass").kind == MULTICLASS
    assert [higher_is_better(m) for m in ("mae", "rmse", "log_loss", "holdout_mae", "cv_rmse_mean")] == [False] * 5
    assert all(higher_is_better(m) for m in ("accuracy", "f1_macro", "roc_auc", "r2"))
    binary, multi, reg = get_task(BINARY), get_task(MULTICLASS), get_task(REGRESSION)
    assert (binary.selection_metric, multi.selection_metric, reg.selection_metric) == ("roc_auc", "f1_macro", "mae")
    assert binary.cbpe and not multi.cbpe and not reg.cbpe
    assert type(binary.splitter(3, 0)).__name__ == "StratifiedKFold" and type(reg.splitter(3, 0)).__name__ == "KFold"
    assert (multi.ab_test, reg.ab_test, reg.ab_outcome) == ("beta_binomial", "welch", "abs_error")
    assert dict(binary.default_gates) == {"accuracy": 0.72, "roc_auc": 0.80, "f1": 0.65} and not reg.default_gates
    with pytest.raises(ConfigError, match="'f1' is not a regression metric; known: mae, rmse, r2"):
        reg.check_metric("f1")
    with pytest.raises(ValueError, match="gate 'mae' has an invalid value 'low'"):
        parse_models({"m": {"task": "regression", "features": ["x"], "gates": {"mae": "low"}}})


# -- training, pure ------------------------------------------------------------------------------
def test_multiclass_training_keeps_the_labels_and_skips_binary_only_parts(tmp_path: Path) -> None:
    spec = parse_models({"wine": {"features": WINE_FEATURES}})[0]
    result = run_training(spec, WINE[WINE_FEATURES].to_numpy(), WINE["cultivar"].to_numpy(), fast(make_plots=True), workdir=tmp_path)
    assert result.task == MULTICLASS and result.selection_metric == "f1_macro" and result.threshold is None
    assert result.classes == ["barbera", "barolo", "grignolino"] and result.calibration == "none"
    assert result.holdout["accuracy"] > 0.85 and 0 < result.holdout["log_loss"] < 1
    assert np.asarray(result.holdout["confusion_matrix"]).shape == (3, 3)
    assert "roc_curve.png" not in result.artifacts and "confusion_matrix.png" in result.artifacts
    assert {r["candidate"]: r["status"] for r in result.comparison}["ridge"] == "skipped"
    predicted = result.estimator.predict(result.X_holdout)
    assert set(predicted) <= set(result.classes) and np.mean(predicted == result.y_holdout) == pytest.approx(result.holdout["accuracy"])
    assert "Task **multiclass**" in result.artifacts["model_card.md"].read_text()


def test_regression_training_selects_by_mae(tmp_path: Path) -> None:
    spec = parse_models({"diab": {"task": "regression", "features": DIAB_FEATURES}})[0]
    result = run_training(spec, DIAB[DIAB_FEATURES].to_numpy(), DIAB["progression"].to_numpy(), fast(), workdir=tmp_path)
    assert result.task == REGRESSION and result.selection_metric == "mae" and result.threshold is None
    ok = [r for r in result.comparison if r["status"] == "ok"]
    best = min(ok, key=lambda r: r["mae_mean"])  # lower is better
    assert best["candidate"] == result.candidate and {r["candidate"] for r in ok} == {"random_forest", "ridge"}
    assert 30 < result.holdout["mae"] < 60 and result.holdout["rmse"] >= result.holdout["mae"]
    assert set(result.artifacts) == {"feature_importance.json", "cv_comparison.json", "model_card.md", "model_card.yaml"}
    with pytest.raises(ConfigError, match="not a regression metric"):
        run_training(spec, DIAB[DIAB_FEATURES].to_numpy(), DIAB["progression"].to_numpy(), fast(selection_metric="roc_auc"))


# -- end to end through mlops.train and the CLI ---------------------------------------------------
def test_multiclass_model_trains_promotes_and_serves_class_labels(instance: Path, tmp_path: Path) -> None:
    app, mlops = host(instance, tmp_path, {"wine": {"task": "classification", "features": WINE_FEATURES, "target": "cultivar"}})
    result, outcome = mlops.train("wine", WINE, app=app)
    assert result.task == MULTICLASS and outcome["promoted"] is True, outcome
    state = get_state(app)
    info = get_version(state, "wine", outcome["version"])
    assert info.tags["task"] == MULTICLASS and info.metrics["f1_macro"] > 0.8 and info.threshold is None
    names = {c["name"] for c in outcome["gates"]["checks"]}
    assert "accuracy" not in names  # the binary default thresholds do not apply to multi-class models
    row = WINE.iloc[0]
    with app.app_context():
        answer: Any = mlops.predict("wine", {f: float(row[f]) for f in WINE_FEATURES})
    assert answer.prediction == "barolo" and 0.34 < answer.probability <= 1.0

    @app.post("/wine")
    @mlops.track("wine")
    def wine() -> Any:
        return jsonify(prediction=mlops.predict("wine", request.get_json()).prediction)

    client = app.test_client()
    items = []
    for i in range(0, len(WINE), 2):
        r = client.post("/wine", json={f: float(WINE.iloc[i][f]) for f in WINE_FEATURES})
        items.append({"prediction_id": r.headers["X-Prediction-ID"], "label": WINE.iloc[i]["cultivar"]})
    assert client.post("/mlops/api/feedback", json={"items": items}, headers=AUTH).status_code == 201
    perf = client.get("/mlops/api/monitoring/performance?model=wine", headers=AUTH).get_json()
    assert perf["task"] == MULTICLASS and perf["n_labelled"] == len(items) and perf["accuracy"] > 0.9
    assert 0.9 < perf["f1_macro"] <= 1.0 and perf["estimated"] is None  # CBPE: calibrated binary models only
    assert perf["decay"]["metric"] == "accuracy" and perf["rolling_accuracy"]["latest"] > 0.9
    # a second version is judged against production on its own holdout, on the task's metrics
    _, second = mlops.train("wine", WINE.sample(frac=1.0, random_state=1), app=app, promote=False)
    gates = lifecycle.check_gates(state, "wine", second["version"])
    compared = [c.name for c in gates.checks if c.name.startswith("no_worse")]
    assert compared == ["no_worse_than_production:accuracy", "no_worse_than_production:f1_macro"]


def test_regression_cli_train_gated_on_mae_per_model(instance: Path, tmp_path: Path) -> None:
    csv = tmp_path / "diabetes_progression.csv"
    DIAB.to_csv(csv, index=False)
    models = {
        "progression": {"task": "regression", "features": DIAB_FEATURES, "gates": {"mae": 20.0}},
        "other": {"features": ["x"], "gates": {"accuracy": 0.1}},
    }
    app, mlops = host(instance, tmp_path, models, MLOPS_PROMOTION_GATES={"accuracy": 0.9, "no_worse_than_production": True})
    runner = app.test_cli_runner()
    failed = runner.invoke(args=["mlops", "train", "--name", "progression", "--data", str(csv), "--target", "progression"])
    assert failed.exit_code == 1, failed.output
    assert "holdout mae:" in failed.output and "(maximum)" in failed.output and "mae" in failed.output
    state = get_state(app)
    gates = lifecycle.check_gates(state, "progression", 1)
    by_name = {c.name: c for c in gates.checks}
    assert not by_name["mae"].passed and by_name["mae"].value > 20.0  # lower is better: 20 is a maximum
    assert "accuracy" not in by_name  # the global gate on accuracy does not apply to regression
    assert any("'accuracy' does not apply to regression" in c.detail for c in gates.checks if c.name == "note")
    wrong = lifecycle.check_gates(state, "progression", 1, gates={"mae": 100.0, "roc_auc": 0.5})
    assert {c.name: c.passed for c in wrong.checks}["mae"] is True
    assert {c.name: c.detail for c in wrong.checks}["roc_auc"] == "roc_auc is not a regression metric (gates can use mae, rmse, r2)"
    promoted = lifecycle.promote(state, "progression", 1, gates={"mae": 100.0})
    assert promoted["changed"] is True
    with app.app_context():
        value: Any = get_state(app).models.production("progression").predict_one([float(v) for v in DIAB.iloc[0][DIAB_FEATURES]])
    assert isinstance(value[0], float) and value[1] is None

    @app.post("/progression")
    @mlops.track("progression")
    def progression() -> Any:
        return jsonify(prediction=mlops.predict("progression", request.get_json()).prediction)

    client = app.test_client()
    items = []
    for i in range(0, 120):
        r = client.post("/progression", json={f: float(DIAB.iloc[i][f]) for f in DIAB_FEATURES})
        items.append({"prediction_id": r.headers["X-Prediction-ID"], "label": float(DIAB.iloc[i]["progression"])})
    assert client.post("/mlops/api/feedback", json={"items": items}, headers=AUTH).status_code == 201
    perf = client.get("/mlops/api/monitoring/performance?model=progression", headers=AUTH).get_json()
    assert perf["task"] == REGRESSION and 25 < perf["mae"] < 70 and perf["rmse"] >= perf["mae"]
    assert perf["decay"]["metric"] == "mae" and perf.get("estimated") is None and "accuracy" not in perf
    page = client.get("/mlops/models", headers=AUTH).get_data(as_text=True)
    assert "<th>MAE</th><th>RMSE</th><th>R²</th>" in page and "<th>Accuracy</th>" not in page.split('id="model-other"')[0]
    # a worse second model (the mean) is not promoted over production: MAE is compared lower-is-better
    from sklearn.dummy import DummyRegressor

    from flask_mlops.services.registry import register

    dummy = DummyRegressor().fit(DIAB[DIAB_FEATURES].to_numpy(), DIAB["progression"].to_numpy())
    v2 = register(state, "progression", dummy, reference=DIAB[DIAB_FEATURES], metrics={"mae": 10.0})
    lifecycle.save_holdout(state, "progression", v2.version, DIAB[DIAB_FEATURES].to_numpy()[:100], DIAB["progression"].to_numpy()[:100])
    result = lifecycle.check_gates(state, "progression", v2.version, gates={"mae": 100.0})
    worse = {c.name: c for c in result.checks}["no_worse_than_production:mae"]
    assert not worse.passed and worse.value > worse.threshold


def test_binary_defaults_still_apply_to_binary_models(instance: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=300)})
    df["y"] = (rng.uniform(size=300) < 0.5).astype(int)  # noise: fails the binary default gates
    app, mlops = host(instance, tmp_path, {"noise": {"features": ["x"], "target": "y"}})
    result, outcome = mlops.train("noise", df, app=app)
    assert result.task == BINARY and result.selection_metric == "roc_auc" and outcome["promoted"] is False
    failed = {c["name"] for c in outcome["gates"]["checks"] if not c["passed"]}
    assert "roc_auc" in failed
