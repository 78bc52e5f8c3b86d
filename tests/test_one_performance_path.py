"""Performance has one computation: the retraining decay trigger reads `services.monitoring.performance`.

For a regression and a multi-class model the trigger's figures (relative drop, realised metric,
label count) must equal what `GET /api/monitoring/performance` reports for the same window.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask
from sklearn.linear_model import LinearRegression, LogisticRegression

from flask_mlops import MLOps, get_state
from flask_mlops.services import retraining
from flask_mlops.store.feedback import Feedback

from .conftest import READ_AUTH, base_config

CASES: dict[str, dict[str, Any]] = {
    # baseline MAE 1.0 on 400 holdout rows; the window's MAE is 1.3: a 30 % rise
    "regression": {"spec": {"task": "regression", "features": ["a", "b"]}, "metrics": {"mae": 1.0, "n": 400}, "metric": "mae"},
    # baseline accuracy 0.9 on 400 rows; the window's is 0.7: a 22 % drop
    "multiclass": {"spec": {"task": "classification", "features": ["a", "b"]}, "metrics": {"accuracy": 0.9, "n": 400}, "metric": "accuracy"},
}


def _app(instance: Path, tmp_path: Path, spec: dict[str, Any]) -> Flask:
    app = Flask("perf", instance_path=str(instance))
    app.config.update(base_config(tmp_path, MLOPS_MODELS={"m": spec}, MLOPS_DRIFT_MIN_SAMPLES=50))
    MLOps(app)
    return app


def _estimator(kind: str, X: np.ndarray) -> Any:
    if kind == "regression":
        return LinearRegression().fit(X, X[:, 0] + X[:, 1])
    return LogisticRegression().fit(X, np.digitize(X[:, 0], [-0.5, 0.5]))  # three classes


def _feedback(app: Flask, kind: str, n: int, now: datetime) -> None:
    rng = np.random.default_rng(1)
    with get_state(app).session() as s, s.begin():
        for i in range(n):
            if kind == "regression":
                label = float(rng.normal(10, 2))
                prediction = label + (1.3 if i % 2 else -1.3)
            else:
                label = i % 3
                prediction = label if i < 0.7 * n else (label + 1) % 3
            s.add(Feedback(prediction_id=uuid.uuid4().hex, model_name="m", model_version="1", prediction_ts=now - timedelta(minutes=n - i),
                           prediction=prediction, probability=None, label=label))


@pytest.mark.parametrize("kind", sorted(CASES))
def test_the_decay_trigger_reports_monitorings_performance(kind: str, instance: Path, tmp_path: Path) -> None:
    case = CASES[kind]
    app = _app(instance, tmp_path, case["spec"])
    state = get_state(app)
    X = np.random.default_rng(0).normal(size=(300, 2))
    app.extensions["mlops"].ext.register("m", _estimator(kind, X), app=app, reference=X, metrics=case["metrics"], promote=True)
    now = datetime.now(timezone.utc)
    _feedback(app, kind, 100, now)
    at = now + timedelta(seconds=1)

    with app.app_context():
        trigger = retraining.check(state, "m", now=at).triggers["decay"]
    window = {"model": "m", "version": "1", "since": (at - retraining.DECAY_WINDOW).isoformat(), "until": at.isoformat()}
    response = app.test_client().get("/mlops/api/monitoring/performance", query_string=window, headers=READ_AUTH)
    assert response.status_code == 200, response.get_json()
    perf = response.get_json()

    assert perf["task"] == kind and perf["n_labelled"] == 100
    decay = perf["decay"]
    assert decay["metric"] == case["metric"] and decay["relative_drop"] is not None and decay["relative_drop"] > 0.2
    assert trigger.available and trigger.value == round(decay["relative_drop"], 4)
    assert f"{decay['metric']} {decay['current']:.4g} on {perf['n_labelled']} labelled" in trigger.detail
    assert trigger.fired  # past MLOPS_RETRAIN_DECAY_THRESHOLD (10 %) and past sampling error
