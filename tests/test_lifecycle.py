"""Registry lifecycle: gates, promote / rollback / archive, audit history, semver and lineage."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from flask_mlops.errors import ConflictError
from flask_mlops.extension import get_state
from flask_mlops.services import lifecycle
from flask_mlops.services.registry import alias_version, get_version
from flask_mlops.training.metrics import binary_metrics

from .conftest import AUTH, FEATURE_NAMES, READ_AUTH, base_config, build_app, diabetes_frame, quick_model

GOOD = {"accuracy": 0.77, "f1": 0.66, "roc_auc": 0.83}


def _holdout() -> tuple[np.ndarray, np.ndarray]:
    df = diabetes_frame()
    X, y = df[FEATURE_NAMES].to_numpy(float), df["Outcome"].to_numpy()
    _, Xh, _, yh = train_test_split(X, y, test_size=0.2, stratify=y, random_state=42)
    return Xh, yh


def _register(app: Flask, estimator: Any, metrics: dict[str, float] | None = None, threshold: float = 0.5) -> int:
    mlops = app.extensions["test_mlops"]
    return int(mlops.register("diabetes", estimator, app=app, threshold=threshold, metrics=metrics or GOOD).version)


def _one_feature_model() -> Any:
    """A deliberately worse model: logistic regression on BloodPressure alone."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline

    df = diabetes_frame()
    X, y = df[FEATURE_NAMES].to_numpy(float), df["Outcome"].to_numpy()
    only_bp = ColumnTransformer([("bp", "passthrough", [FEATURE_NAMES.index("BloodPressure")])])
    return make_pipeline(only_bp, LogisticRegression()).fit(X, y)


def test_gates_reject_a_worse_model_and_leave_production(served_app: Flask) -> None:
    state = get_state(served_app)
    worse = _one_feature_model()
    Xh, yh = _holdout()
    metrics = binary_metrics(yh, worse.predict_proba(Xh)[:, 1], 0.5)
    v2 = _register(served_app, worse, metrics)
    with pytest.raises(lifecycle.GateFailed) as info:
        lifecycle.promote(state, "diabetes", v2, actor="test", reason="should fail")
    failed = {c["name"] for c in info.value.details["checks"] if not c["passed"]}
    assert {"roc_auc", "f1"} <= failed
    assert info.value.code == 422
    assert alias_version(state, "diabetes") == 1
    assert lifecycle.history(state, "diabetes")[0]["action"] == "promote_rejected"

    # with the absolute gates off, "no worse than production on the same holdout" still rejects it
    lifecycle.save_holdout(state, "diabetes", v2, Xh, yh)
    zero = {"accuracy": 0.0, "roc_auc": 0.0, "f1": 0.0}
    result = lifecycle.check_gates(state, "diabetes", v2, gates=zero)
    assert not result.passed
    assert [c.name for c in result.failures] == ["no_worse_than_production:f1", "no_worse_than_production:roc_auc"]
    assert "holdout (154 rows)" in result.failures[0].detail
    with pytest.raises(lifecycle.GateFailed):
        lifecycle.promote(state, "diabetes", v2, gates=zero)
    assert alias_version(state, "diabetes") == 1
    # forcing is possible and audited as forced
    lifecycle.promote(state, "diabetes", v2, actor="test", force=True, reason="drill")
    assert alias_version(state, "diabetes") == v2
    assert lifecycle.history(state, "diabetes")[0]["details"]["forced"] is True


def test_promote_rollback_archive_and_history(served_app: Flask) -> None:
    state = get_state(served_app)
    t0 = datetime.now(timezone.utc)
    v2 = _register(served_app, quick_model(1))
    v3 = _register(served_app, quick_model(2))
    assert lifecycle.promote(state, "diabetes", v2, actor="alice", reason="better")["previous"] == 1
    time.sleep(0.01)
    t_v2 = datetime.now(timezone.utc)
    lifecycle.promote(state, "diabetes", v3, actor="bob", reason="even better")
    t_v3 = datetime.now(timezone.utc)
    assert get_version(state, "diabetes", v3).status == "production"
    assert get_version(state, "diabetes", v2).status == "superseded"

    assert lifecycle.rollback(state, "diabetes", actor="carol", reason="v3 misbehaves")["version"] == v2
    assert lifecycle.rollback(state, "diabetes", actor="carol")["version"] == 1  # the stack unwinds
    with pytest.raises(ConflictError, match="no previous production"):
        lifecycle.rollback(state, "diabetes")
    assert lifecycle.rollback(state, "diabetes", v3, reason="named target")["version"] == v3
    served = served_app.test_client().post("/predict", json=dict(zip(FEATURE_NAMES, [1, 120, 70, 20, 80, 30, 0.4, 35], strict=True)))
    assert served.headers["X-Model-Version"] == str(v3)

    with pytest.raises(ConflictError, match="in production"):
        lifecycle.archive(state, "diabetes", v3)
    assert lifecycle.archive(state, "diabetes", v2, actor="dave", reason="old")["changed"] is True
    assert get_version(state, "diabetes", v2).status == "archived"
    with pytest.raises(ConflictError, match="archived"):
        lifecycle.rollback(state, "diabetes", v2)
    with pytest.raises(ConflictError, match="archived"):
        lifecycle.promote(state, "diabetes", v2)

    events = lifecycle.history(state, "diabetes")
    actions = [e["action"] for e in events]
    assert actions[:4] == ["archive", "rollback", "rollback", "rollback"]
    assert {"who": events[0]["actor"], "why": events[0]["reason"]} == {"who": "dave", "why": "old"}
    assert lifecycle.production_at(state, "diabetes", t0) == 1
    assert lifecycle.production_at(state, "diabetes", t_v2) == v2
    assert lifecycle.production_at(state, "diabetes", t_v3) == v3


def test_register_result_semver_lineage_and_gated_promotion(tmp_path: Path, instance: Path) -> None:
    from flask_mlops.training import TrainingSettings, load_training_data, run_training

    app = build_app(instance, base_config(tmp_path, MLOPS_PROMOTION_GATES={"accuracy": 0.7, "roc_auc": 0.8, "f1": 0.6}))
    state = get_state(app)
    spec = state.config.model("diabetes")
    X, y = load_training_data(spec)
    settings = TrainingSettings(candidates={"logistic_regression": {}}, cv_folds=3, importance_repeats=0, make_plots=False)
    result = run_training(spec, X, y, settings)
    assert result.X_holdout is not None and result.y_holdout is not None
    first = lifecycle.register_result(state, "diabetes", result, trigger="manual", actor="test", holdout=(result.X_holdout, result.y_holdout))
    assert first["semver"] == "1.0.0" and first["promoted"] is True
    info = get_version(state, "diabetes", first["version"])
    assert info.semver == "1.0.0"
    tags = info.tags or {}
    assert tags["data_sha256"] == result.data_sha256 and tags["trigger"] == "manual" and tags["candidate"] == "logistic_regression"
    assert "git_commit" in tags and tags["parent_version"] == "none"
    assert info.threshold == result.threshold
    assert lifecycle.load_holdout(state, "diabetes", first["version"]) is not None

    again = lifecycle.register_result(state, "diabetes", result, trigger="schedule")
    assert again["semver"] == "1.0.1"  # same data, same algorithm
    other = run_training(spec, X[:700], y[:700], settings)
    assert lifecycle.register_result(state, "diabetes", other, promote_if_passing=False)["semver"] == "1.1.0"


def test_api_and_cli(served_app: Flask) -> None:
    import flask_mlops.cli.models  # noqa: F401  (adds the commands to the `mlops` group)

    state = get_state(served_app)
    client = served_app.test_client()
    v2 = _register(served_app, _one_feature_model(), {"accuracy": 0.6, "f1": 0.3, "roc_auc": 0.6})
    v3 = _register(served_app, quick_model(1))

    listed = client.get("/mlops/api/models", headers=READ_AUTH).get_json()
    assert listed["models"][0]["production"] == 1 and len(listed["models"][0]["versions"]) == 3
    assert client.post("/mlops/api/models/diabetes/promote", json={"version": v3}, headers=READ_AUTH).status_code == 403

    bad = client.post("/mlops/api/models/diabetes/promote", json={"version": v2, "reason": "try"}, headers=AUTH)
    assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "gate_failed"
    assert bad.get_json()["error"]["details"]["checks"]
    ok = client.post("/mlops/api/models/diabetes/promote", json={"version": v3, "reason": "good"}, headers=AUTH)
    assert ok.status_code == 200 and ok.get_json()["previous"] == 1
    assert client.post("/mlops/api/models/diabetes/promote", json={"version": 99}, headers=AUTH).status_code == 404
    assert client.post("/mlops/api/models/nope/promote", json={"version": 1}, headers=AUTH).status_code == 404

    back = client.post("/mlops/api/models/diabetes/rollback", json={"reason": "oops"}, headers=AUTH)
    assert back.status_code == 200 and back.get_json()["version"] == 1
    assert client.post("/mlops/api/models/diabetes/rollback", json={}, headers=AUTH).status_code == 409
    assert client.post("/mlops/api/models/diabetes/archive", json={"version": 1}, headers=AUTH).status_code == 409

    hist = client.get("/mlops/api/models/diabetes/history", query_string={"at": datetime.now(timezone.utc).isoformat()}, headers=READ_AUTH)
    body = hist.get_json()
    assert hist.status_code == 200 and body["production_at"] == 1 == body["production"]
    assert [e["action"] for e in body["events"][:3]] == ["rollback", "promote", "promote_rejected"]
    assert body["events"][0]["actor"] == "token:#1:admin"  # the caller (no secret key: the token's position)

    runner = served_app.test_cli_runner()
    out = runner.invoke(args=["mlops", "promote", "diabetes", str(v2)])
    assert out.exit_code == 1 and "FAIL" in out.output and "not promoted" in out.output
    out = runner.invoke(args=["mlops", "promote", "diabetes", str(v3), "--reason", "cli"])
    assert out.exit_code == 0, out.output
    assert alias_version(state, "diabetes") == v3
    out = runner.invoke(args=["mlops", "rollback", "diabetes"])
    assert out.exit_code == 0 and "to v1" in out.output
    out = runner.invoke(args=["mlops", "archive", "diabetes", str(v2)])
    assert out.exit_code == 0 and "archived" in out.output
    out = runner.invoke(args=["mlops", "history", "diabetes", "--at", datetime.now(timezone.utc).isoformat()])
    assert out.exit_code == 0 and "archive" in out.output and "in production at" in out.output
