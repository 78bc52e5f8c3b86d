"""Drift has one computation: the retraining trigger reads `services.monitoring.drift`.

A model with a categorical feature is the case the trigger's old private copy broke on
(coded columns); its answer must equal what the monitoring API reports for the same window.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from flask import Flask
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from flask_mlops import MLOps, get_state
from flask_mlops.services import monitoring, retraining
from flask_mlops.services.serving import new_prediction_id
from flask_mlops.store.predictions import format_ts

MODELS = {"shop": {"features": {"amount": "numeric", "channel": "categorical"}}}


def _app(instance: Path, tmp_path: Path) -> Flask:
    app = Flask("shop", instance_path=str(instance))
    app.config.update(TESTING=True, MLOPS_MODELS=MODELS, MLOPS_LOG_DIR=str(tmp_path / "logs"), MLOPS_RELOAD_INTERVAL=0,
                      MLOPS_DRIFT_MIN_SAMPLES=50)
    MLOps(app)
    return app


def _log(app: Flask, channels: list[str], amounts: np.ndarray, now: datetime) -> None:
    state = get_state(app)
    for i, (channel, amount) in enumerate(zip(channels, amounts, strict=True)):
        ts = now - timedelta(minutes=len(channels) - i)
        state.log_writer.write({
            "id": new_prediction_id(), "ts": format_ts(ts), "model": "shop", "model_version": "1", "variant": None,
            "unit_id": None, "features": {"amount": float(amount), "channel": channel}, "prediction": 1,
            "probability": 0.6, "latency_ms": 1.0, "status": 200,
        }, ts.date())


def test_the_retraining_drift_trigger_is_monitorings_drift(instance: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"amount": rng.normal(50, 10, 600), "channel": rng.choice(["web", "app", "store"], 600)})
    y = (reference["amount"] > 50).astype(int)
    model = make_pipeline(
        ColumnTransformer([("c", OneHotEncoder(handle_unknown="ignore"), [1])], remainder="passthrough"),
        LogisticRegression(),
    ).fit(reference.to_numpy(dtype=object), y)
    app = _app(instance, tmp_path)
    state = get_state(app)
    app.extensions["mlops"].ext.register("shop", model, app=app, reference=reference, promote=True,
                                         metrics={"accuracy": 0.9, "roc_auc": 0.9, "f1": 0.9})
    now = datetime.now(timezone.utc)
    # the channel mix moves from a third each to nearly all "app": a categorical drift
    _log(app, ["app"] * 190 + ["web"] * 10, rng.normal(50, 10, 200), now)

    with app.app_context():
        trigger = retraining.check(state, "shop", now=now + timedelta(seconds=1)).triggers["drift"]
        window = monitoring.WindowSpec("shop", since=now + timedelta(seconds=1) - retraining.DRIFT_WINDOW, until=now + timedelta(seconds=1))
        report = monitoring.drift(state, window, persist=False)

    assert report.status == "ok" and report.features["channel"].psi is not None
    worst = max(f.psi for f in report.features.values() if f.psi is not None)
    assert trigger.available and trigger.value == round(worst, 4)
    assert trigger.fired and "channel" in trigger.detail
