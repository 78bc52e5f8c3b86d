"""A/B tests per task: plans validated at creation, results never 500 (a 0.97 control), only
servable versions as treatment, and a regression A/B judged on absolute error by Welch."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask, jsonify, request
from sklearn.datasets import load_diabetes
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import Ridge

from flask_mlops import MLOps, get_state
from flask_mlops.services import lifecycle
from flask_mlops.services.registry import get_version
from flask_mlops.services.serving import cache_path
from flask_mlops.store.experiments import Experiment
from tests.conftest import AUTH, READ_AUTH, SAMPLE_ROW, base_config, build_app, quick_model
from tests.test_serving import registry_copy


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory, registered_template: Path) -> Path:
    """diabetes v1 (production, accuracy 0.77), v2 (accuracy 0.97), v3 (archived), v4 (spare)."""
    folder = tmp_path_factory.mktemp("ab-tasks")
    instance = folder / "instance"
    shutil.copytree(registered_template, instance)
    app = build_app(instance, base_config(folder), name="ab-tasks-setup")
    mlops = app.extensions["test_mlops"]
    for seed, accuracy in ((1, 0.97), (2, 0.7), (3, 0.75)):
        mlops.register("diabetes", quick_model(seed=seed), app=app, threshold=0.5, metrics={"accuracy": accuracy})
    lifecycle.archive(get_state(app), "diabetes", 3, reason="test")
    app.extensions["mlops"].engine.dispose()
    return instance


@pytest.fixture
def ab_app(versions: Path, tmp_path: Path) -> Flask:
    target = tmp_path / "instance"
    shutil.copytree(versions, target)
    return build_app(target, base_config(tmp_path))


def _start(client: Any, **body: Any) -> Any:
    return client.post("/mlops/api/experiments", json={"model": "diabetes", **body}, headers=AUTH)


def test_plans_are_validated_at_creation_naming_the_field(ab_app: Flask) -> None:
    client = ab_app.test_client()
    cases = [
        ({"treatment_version": 2, "plan": {"mde": 0.3}}, "plan.mde", "baseline + mde must stay strictly between 0 and 1"),
        ({"treatment_version": 2, "plan": {"alpha": 1.5}}, "plan.alpha", "alpha must be strictly between 0 and 1"),
        ({"treatment_version": 2, "plan": {"mde": "big"}}, "plan.mde", "must be a number"),
        ({"treatment_version": 2, "plan": {"effect": 0.1}}, "plan.effect", "unknown plan option"),
        ({"treatment_version": 2, "metric": "abs_error"}, "metric", "does not fit a binary model"),
        ({"treatment_version": 2, "guardrails": {"max_accuracy_drop": 2}}, "guardrails", "invalid guardrails"),
        ({"treatment_version": 2, "plan": {"alpha": 1e-320}}, "plan", "invalid experiment plan"),  # no finite sample size
    ]
    for body, field, message in cases:
        r = _start(client, **body)
        assert r.status_code == 400, (body, r.json)
        assert r.json["error"]["details"]["field"] == field and message in r.json["error"]["message"], r.json
    assert client.get("/mlops/api/experiments", headers=READ_AUTH).json["experiments"] == []


def test_a_097_control_gets_an_adapted_plan_and_results_not_500(ab_app: Flask) -> None:
    client = ab_app.test_client()
    created = _start(client, treatment_version=1, control_version=2)  # control accuracy 0.97
    assert created.status_code == 201, created.json
    plan = created.json["plan"]
    assert plan["baseline"] == pytest.approx(0.97) and plan["mde"] == pytest.approx(0.015)
    rng = np.random.default_rng(0)
    ids = []
    for i in range(40):
        row = {**SAMPLE_ROW, "Glucose": int(rng.integers(80, 180))}
        ids.append(client.post("/predict", json=row, headers={"X-User": f"u{i}"}).headers["X-Prediction-ID"])
    assert client.post("/mlops/api/feedback", json=[{"prediction_id": p, "label": 1} for p in ids], headers=AUTH).status_code == 201
    results = client.get(f"/mlops/api/experiments/{created.json['id']}/results", headers=READ_AUTH)
    assert results.status_code == 200, results.json
    assert results.json["verdict"]["action"] == "continue" and results.json["plan"]["planned_control"] > 1000
    # an experiment stored by an older release with the impossible default plan still answers
    with ab_app.extensions["mlops"].session() as session, session.begin():
        row = session.get(Experiment, created.json["id"])
        row.plan = {**row.plan, "baseline": 0.97, "mde": 0.05}
    legacy = client.get(f"/mlops/api/experiments/{created.json['id']}/results", headers=READ_AUTH)
    assert legacy.status_code == 200 and "judged with mde 0.015" in legacy.json["plan"]["note"]


def test_only_servable_versions_can_be_treatments(ab_app: Flask) -> None:
    client = ab_app.test_client()
    archived = _start(client, treatment_version=3)
    assert archived.status_code == 409 and "archived" in archived.json["error"]["message"]
    assert archived.json["error"]["details"]["field"] == "treatment_version"
    assert _start(client, treatment_version=99).status_code == 404
    state = get_state(ab_app)
    # tampered in the cache AND in the registry: a bad cached copy alone is fetched again (test_serving)
    run_id = get_version(state, "diabetes", 4).run_id
    assert run_id is not None
    for copy in (cache_path(state, "diabetes", 4), registry_copy(ab_app, run_id)):
        copy.write_bytes(b"tampered")
    broken = _start(client, treatment_version=4)
    assert broken.status_code == 422 and "cannot be loaded" in broken.json["error"]["message"]
    promote = client.post("/mlops/api/models/diabetes/promote", json={"version": 4}, headers=AUTH)
    assert promote.status_code == 422 and "cannot be loaded" in promote.json["error"]["message"]
    # a version serving in a running experiment cannot be archived under it
    running = _start(client, treatment_version=2)
    assert running.status_code == 201
    refused = client.post("/mlops/api/models/diabetes/archive", json={"version": 2}, headers=AUTH)
    assert refused.status_code == 409 and "running experiment" in refused.json["error"]["message"]


def test_dashboard_offers_no_promote_on_archived_versions(ab_app: Flask) -> None:
    page = ab_app.test_client().get("/mlops/models", headers=AUTH)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    rows = {v: html.split(f'data-version="{v}"')[1].split("</tr>")[0] for v in (2, 3)}
    assert 'name="version" value="2"' in rows[2] and "Promote" in rows[2]
    assert "Promote" not in rows[3]
    assert "<th>Accuracy</th><th>F1</th><th>ROC-AUC</th>" in html


def test_plan_defaults_per_outcome() -> None:
    from flask_mlops.services.experiments import plan_defaults

    assert plan_defaults("accuracy", {"accuracy": 0.97}) == {"outcome": "proportion", "higher_is_better": True, "baseline": 0.97, "mde": pytest.approx(0.015)}
    assert plan_defaults("accuracy", {"accuracy": 1.0})["baseline"] == 0.99  # a perfect holdout still plans
    assert plan_defaults("positive_rate", {})["baseline"] == 0.5
    assert plan_defaults("abs_error", {"mae": 40.0, "rmse": 50.0}) == {"outcome": "mean", "higher_is_better": False, "mde": -4.0, "sd": 50.0}
    unknown = plan_defaults("abs_error", {})  # registered without metrics: a fixed horizon, not a 400
    assert unknown["planned_control"] == unknown["planned_treatment"] == 1000


# -- regression ---------------------------------------------------------------------------------
DIAB = load_diabetes(as_frame=True).frame
FEATURES = [c for c in DIAB.columns if c != "target"]


def test_regression_ab_shows_absolute_error_results_by_welch(instance: Path, tmp_path: Path) -> None:
    app = Flask("regression-host", instance_path=str(instance))
    app.config.update(base_config(tmp_path, MLOPS_MODELS={"progression": {"task": "regression", "features": FEATURES}}))
    mlops = MLOps(app)

    @app.post("/progression")
    @mlops.track("progression")
    def predict() -> Any:
        result = mlops.predict("progression", request.get_json(), unit_id=request.headers.get("X-User"))
        return jsonify(prediction=result.prediction)

    X, y = DIAB[FEATURES], DIAB["target"].to_numpy()
    mlops.register("progression", DummyRegressor().fit(X.to_numpy(), y), app=app, reference=X, metrics={"mae": 64.0, "rmse": 77.0}, promote=True)
    mlops.register("progression", Ridge(alpha=0.1).fit(X.to_numpy(), y), app=app, reference=X, metrics={"mae": 43.0, "rmse": 54.0})
    client = app.test_client()
    default = client.post("/mlops/api/experiments", json={"treatment_version": 2}, headers=AUTH)
    assert default.status_code == 201, default.json
    assert default.json["metric"] == "abs_error" and default.json["plan"]["outcome"] == "mean"
    assert default.json["plan"]["sd"] == pytest.approx(77.0) and default.json["plan"]["mde"] == pytest.approx(-6.4)  # control's RMSE, 10 % of its MAE
    assert client.post(f"/mlops/api/experiments/{default.json['id']}/stop", json={}, headers=AUTH).status_code == 200
    body = {"treatment_version": 2, "plan": {"mde": -15.0, "sd": 45.0}, "guardrails": {"max_p95_ratio": 1000.0}}  # latency is not under test
    created = client.post("/mlops/api/experiments", json=body, headers=AUTH)
    assert created.status_code == 201, created.json
    labels: list[dict[str, Any]] = []
    for i in range(len(DIAB)):
        response = client.post("/progression", json={f: float(DIAB.iloc[i][f]) for f in FEATURES}, headers={"X-User": f"p{i}"})
        assert response.status_code == 200
        labels.append({"prediction_id": response.headers["X-Prediction-ID"], "label": float(y[i])})
    assert client.post("/mlops/api/feedback", json={"items": labels}, headers=AUTH).status_code == 201
    body = client.get(f"/mlops/api/experiments/{created.json['id']}/results", headers=READ_AUTH).json
    control, treatment = body["control"], body["treatment"]
    assert control["labelled"] + treatment["labelled"] == len(DIAB) and control["outcome"] == "mean"
    assert 55 < control["outcome_mean"] < 75 and 35 < treatment["outcome_mean"] < 50  # real absolute errors
    assert body["bayes"] is None and body["ztest"] is None
    welch = body["outcome_welch"]
    assert welch["diff"] == pytest.approx(treatment["outcome_mean"] - control["outcome_mean"]) and welch["p_value"] < 1e-3  # t ≈ 4–6 for any split salt
    assert body["verdict"]["action"] == "promote_treatment", body["verdict"]
    assert any(c["name"] == "abs_error" and c["ok"] is True for c in body["guardrails"])
