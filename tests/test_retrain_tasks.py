"""Retraining a user's model: its stored rows as the base, a holdout disjoint from the fitted
rows, no automatic promotion over a production version it did not beat on a shared
holdout, and the API's run happening in a separate process."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from flask import Flask, jsonify, request
from sklearn.datasets import load_diabetes
from sklearn.tree import DecisionTreeClassifier

from flask_mlops import MLOps, get_state
from flask_mlops.services import retraining
from flask_mlops.services.registry import alias_version, get_version
from flask_mlops.specs import parse_models
from flask_mlops.store import retraining as runs
from flask_mlops.training import TrainingSettings, run_training

from .conftest import AUTH, READ_AUTH, base_config

NAMES = ["a", "b", "c"]
FAST = {"MLOPS_CANDIDATES": '{"logistic_regression": {}}', "MLOPS_CV_FOLDS": 3}


def test_the_holdout_never_holds_rows_that_were_fitted() -> None:
    """Labelled feedback repeats requests: identical feature rows stay on one side of every split."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(150, 3)).round(1)
    X = np.concatenate([base, base[:100], base[:50]])  # 150 rows seen again as feedback
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    spec = parse_models({"m": {"features": NAMES}})[0]
    settings = TrainingSettings(candidates={"logistic_regression": {}}, cv_folds=3, importance_repeats=0, make_plots=False)
    result = run_training(spec, X, y, settings)
    fitted = {tuple(r) for r in result.X_reference.tolist()}
    held = {tuple(r) for r in result.X_holdout.tolist()}
    assert held and not held & fitted
    assert result.n_train + result.n_holdout == len(y)
    assert any("repeat another row's features" in n for n in result.notes)


def _host(instance: Path, tmp_path: Path, **config: Any) -> tuple[Flask, MLOps]:
    app = Flask("user-host", instance_path=str(instance))
    app.config.update(base_config(tmp_path, MLOPS_MODELS={}, **FAST, **config))
    mlops = MLOps(app)

    @app.post("/score")
    @mlops.track("risk")
    def score() -> Any:
        return jsonify(prediction=mlops.predict("risk", request.get_json()).prediction)

    return app, mlops


def _traffic(app: Flask, X: np.ndarray, y: np.ndarray) -> None:
    """Serve every row and send its true label as feedback."""
    client = app.test_client()
    items = []
    for row, label in zip(X.tolist(), y.tolist(), strict=True):
        response = client.post("/score", json=dict(zip(NAMES, row, strict=True)))
        assert response.status_code == 200, response.get_json()
        items.append({"prediction_id": response.headers["X-Prediction-ID"], "label": int(label)})
    assert client.post("/mlops/api/feedback", json={"items": items}, headers=AUTH).status_code == 201


def _data(seed: int, n: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=NAMES)
    return X, (X["a"] > 0).to_numpy().astype(int)


def test_retraining_keeps_a_production_model_it_did_not_beat(instance: Path, tmp_path: Path) -> None:
    """The user's model is perfect on this data: a retrained one can at best tie, so it is not promoted."""
    app, mlops = _host(instance, tmp_path)
    X, y = _data(0, 400)
    perfect = DecisionTreeClassifier(max_depth=1).fit(X, y)  # y = (a > 0): one split is exact
    mlops.register("risk", perfect, app=app, reference=X, labels=y, metrics={"accuracy": 1.0, "roc_auc": 1.0, "f1": 1.0}, promote=True)
    X2, y2 = _data(1, 200)
    _traffic(app, X2.to_numpy(), y2)
    state = get_state(app)
    run = retraining.start(state, "risk", background=False)
    assert run["status"] == "rejected", run
    data = run["result"]["data"]
    assert data["base_rows"] == 400 and data["feedback_rows"] == 200 and "production v1" in data["base"]
    reason = run["result"]["reason"]
    assert "worse than production" in reason or "not better than production v1" in reason, reason
    assert alias_version(state, "risk") == 1
    checks = {c["name"]: c for c in run["result"]["gates"]["checks"]}
    assert checks["beats_production:roc_auc"]["threshold"] == 1.0  # production scored on the new holdout


def test_retraining_promotes_a_model_that_beat_production_on_its_holdout(instance: Path, tmp_path: Path) -> None:
    app, mlops = _host(instance, tmp_path, MLOPS_PROMOTION_GATES={"accuracy": 0.5})
    X, _ = _data(0, 400)
    y = (X["a"] + X["b"] > 0).to_numpy().astype(int)
    weak = DecisionTreeClassifier(max_depth=1).fit(X[["a", "b", "c"]], (X["a"] > 0).astype(int))  # ignores b
    mlops.register("risk", weak, app=app, reference=X, labels=y, metrics={"accuracy": 0.75}, promote=True)
    X2, _ = _data(2, 200)
    _traffic(app, X2.to_numpy(), (X2["a"] + X2["b"] > 0).to_numpy().astype(int))
    state = get_state(app)
    run = retraining.start(state, "risk", background=False)
    assert run["status"] == "succeeded" and run["result"]["promoted"] is True, run["result"].get("reason")
    assert alias_version(state, "risk") == 2
    checks = {c["name"]: c for c in run["result"]["gates"]["checks"]}
    assert checks["beats_production:roc_auc"]["value"] > checks["beats_production:roc_auc"]["threshold"]


DIAB = load_diabetes(as_frame=True).frame
CHILD_APP = """
import json, os
from flask import Flask
from flask_mlops import MLOps

app = Flask("retrain_child", instance_path=os.environ["RETRAIN_TEST_INSTANCE"])
app.config.update(json.loads(os.environ["RETRAIN_TEST_CONFIG"]))
MLOps(app)
"""


@pytest.mark.slow
def test_the_api_runs_a_retraining_in_a_separate_process(instance: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A regression model declared with its data: the trigger answers at once, another process trains."""
    csv = tmp_path / "progression.csv"
    DIAB.to_csv(csv, index=False)
    features = [c for c in DIAB.columns if c != "target"]
    child = tmp_path / "child_app.py"
    child.write_text(CHILD_APP)
    config = base_config(
        tmp_path, MLOPS_MODELS={"progression": {"task": "regression", "features": features, "target": "target", "data": str(csv)}},
        MLOPS_CANDIDATES='{"ridge": {}}', MLOPS_CV_FOLDS=3, MLOPS_RETRAIN_APP=str(child),
    )
    monkeypatch.setenv("RETRAIN_TEST_INSTANCE", str(instance))
    monkeypatch.setenv("RETRAIN_TEST_CONFIG", json.dumps(config))
    app = Flask("parent", instance_path=str(instance))
    app.config.update(config)
    mlops = MLOps(app)
    mlops.train("progression", app=app)
    client = app.test_client()
    started = client.post("/mlops/api/retrain/trigger", json={"reason": "test"}, headers=AUTH)
    assert started.status_code == 202 and started.get_json()["runner"] == "process", started.get_json()
    state = get_state(app)
    url = started.get_json()["url"]
    deadline = time.monotonic() + 180
    while (run := client.get(url, headers=READ_AUTH).get_json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, run
        time.sleep(0.5)
    log = (Path(config["MLOPS_LOG_DIR"]) / "retrain" / f"run-{run['id']}.log")
    assert run["status"] in ("succeeded", "rejected"), (run["error"], log.read_text() if log.exists() else "")
    assert run["holder"] != runs.holder_id()  # not this (web) process
    assert not state.extras.get("retrain_threads")
    assert run["result"]["data"]["base_rows"] == len(DIAB) and "mae" in run["result"]["holdout"]
    info = get_version(state, "progression", run["result"]["version"])
    assert info.tags["task"] == "regression" and info.tags["trigger"] == "manual"


def test_a_multiclass_model_retrains_from_its_stored_rows_and_feedback(instance: Path, tmp_path: Path) -> None:
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True).frame.rename(columns={"od280/od315_of_diluted_wines": "od280_od315"})
    wine["cultivar"] = wine.pop("target").map({0: "barolo", 1: "grignolino", 2: "barbera"})
    features = [c for c in wine.columns if c != "cultivar"]
    app = Flask("wine-host", instance_path=str(instance))
    app.config.update(base_config(tmp_path, MLOPS_MODELS={"wine": {"features": features, "target": "cultivar"}}, **FAST))
    mlops = MLOps(app)

    @app.post("/wine")
    @mlops.track("wine")
    def predict() -> Any:
        return jsonify(prediction=mlops.predict("wine", request.get_json()).prediction)

    _, first = mlops.train("wine", wine, app=app)
    assert first["promoted"] is True
    client = app.test_client()
    items = []
    for i in range(0, len(wine), 3):
        r = client.post("/wine", json={f: float(wine.iloc[i][f]) for f in features})
        items.append({"prediction_id": r.headers["X-Prediction-ID"], "label": wine.iloc[i]["cultivar"]})
    assert client.post("/mlops/api/feedback", json={"items": items}, headers=AUTH).status_code == 201
    run = retraining.start(get_state(app), "wine", background=False)
    assert run["status"] in ("succeeded", "rejected"), run["error"]
    data = run["result"]["data"]
    assert data["base_rows"] == len(wine) and data["feedback_rows"] == len(items) and data["duplicates_dropped"] == len(items)
    assert set(run["result"]["holdout"]["classes"]) == {"barbera", "barolo", "grignolino"}
