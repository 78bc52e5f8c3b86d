"""Experiments and rollouts wired into an app: routing, API, CLI, results, promotion, rollback."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask

from flask_mlops.ab.assign import Assigner
from flask_mlops.store.experiments import Experiment
from tests.conftest import AUTH, READ_AUTH, SAMPLE_ROW, base_config, build_app, logged_records, quick_model


def faulty_model() -> Any:
    """A real scikit-learn model that fails on every request (fitted on 7 of the 8 features):
    an injected error-rate breach that MLflow can still log with only trusted types."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    return LogisticRegression().fit(rng.normal(size=(50, 7)), rng.integers(0, 2, 50))


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory, registered_template: Path) -> Path:
    """Instance with v1 (production), v2 (healthy) and v3 (faulty) of diabetes."""
    folder = tmp_path_factory.mktemp("ab-versions")
    instance = folder / "instance"
    shutil.copytree(registered_template, instance)
    app = build_app(instance, base_config(folder), name="ab-setup")
    mlops = app.extensions["test_mlops"]
    mlops.register("diabetes", quick_model(seed=1), app=app, threshold=0.5, metrics={"accuracy": 0.76})
    mlops.register("diabetes", faulty_model(), app=app, threshold=0.5)
    app.extensions["mlops"].engine.dispose()
    return instance


@pytest.fixture
def ab_app(two_versions: Path, tmp_path: Path) -> Flask:
    target = tmp_path / "instance"
    shutil.copytree(two_versions, target)
    return build_app(target, base_config(tmp_path))


def _row(rng: np.random.Generator) -> dict[str, Any]:
    return {**SAMPLE_ROW, "Glucose": int(rng.integers(80, 180)), "Age": int(rng.integers(21, 70))}


def _records(app: Flask) -> list[dict[str, Any]]:
    return logged_records(Path(app.config["MLOPS_LOG_DIR"]))


def test_experiment_lifecycle_through_the_api(ab_app: Flask) -> None:
    client = ab_app.test_client()
    created = client.post("/mlops/api/experiments", json={"model": "diabetes", "treatment_version": 2, "share": 0.3}, headers=AUTH)
    assert created.status_code == 201, created.json
    exp = created.json
    assert (exp["control_version"], exp["treatment_version"], exp["status"]) == (1, 2, "running")
    again = client.post("/mlops/api/experiments", json={"treatment_version": 2}, headers=AUTH)
    assert again.status_code == 409 and again.json["error"]["details"]["experiment_id"] == exp["id"]
    assert client.post("/mlops/api/experiments", json={"treatment_version": 2}, headers=READ_AUTH).status_code == 403

    rng = np.random.default_rng(0)
    seen: dict[str, tuple[str, str]] = {}
    for i in range(300):
        user = f"u{i % 100}"
        response = client.post("/predict", json=_row(rng), headers={"X-User": user})
        assert response.status_code == 200
        got = (response.headers["X-MLOps-Variant"], response.headers["X-Model-Version"])
        assert seen.setdefault(user, got) == got  # sticky
        assert got in {("control", "1"), ("treatment", "2")}
    with ab_app.extensions["mlops"].session() as session:  # routing is exactly the keyed hash
        salt = session.get(Experiment, exp["id"]).salt
    expected = Assigner(salt, 0.3)
    assert all(variant == expected.variant(user) for user, (variant, _) in seen.items())
    assert {variant for variant, _ in seen.values()} == {"control", "treatment"}
    anonymous = client.post("/predict", json=_row(rng))
    records = _records(ab_app)
    assert records[-1]["assignment"] == "random" and records[-1]["experiment"] == exp["id"]
    assert anonymous.headers["X-MLOps-Variant"] in ("control", "treatment")
    assert {r["assignment"] for r in records[:-1]} == {"hash"}

    results = client.get(f"/mlops/api/experiments/{exp['id']}/results", headers=READ_AUTH)
    assert results.status_code == 200, results.json
    body = results.json
    assert body["control"]["n"] + body["treatment"]["n"] == 301
    assert body["verdict"]["action"] == "continue"  # nothing labelled yet: peeking guard
    assert body["srm"]["mismatch"] is False
    assert client.get("/mlops/api/experiments", headers=READ_AUTH).json["experiments"][0]["id"] == exp["id"]
    assert client.get(f"/mlops/api/experiments/{exp['id']}", headers=READ_AUTH).json["share"] == 0.3
    assert client.get("/mlops/api/experiments/999", headers=READ_AUTH).status_code == 404

    stopped = client.post(f"/mlops/api/experiments/{exp['id']}/stop", json={"reason": "enough"}, headers=AUTH)
    assert stopped.status_code == 200 and stopped.json["status"] == "stopped"
    after = client.post("/predict", json=_row(rng), headers={"X-User": "u1"})
    assert "X-MLOps-Variant" not in after.headers and after.headers["X-Model-Version"] == "1"
    assert client.post(f"/mlops/api/experiments/{exp['id']}/stop", headers=AUTH).status_code == 409


def test_invalid_experiments_are_refused(ab_app: Flask) -> None:
    client = ab_app.test_client()
    for body, status in [
        ({"treatment_version": 1}, 400),  # same as control
        ({"treatment_version": 9}, 404),
        ({"treatment_version": 2, "share": 1.0}, 400),
        ({"treatment_version": 2, "metric": "f2"}, 400),
        ({"treatment_version": 2, "guardrails": {"bogus": 1}}, 400),
        ({"treatment_version": "2"}, 400),
    ]:
        assert client.post("/mlops/api/experiments", json=body, headers=AUTH).status_code == status, body


def test_two_app_instances_assign_every_unit_the_same_way(ab_app: Flask, tmp_path: Path) -> None:
    client = ab_app.test_client()
    assert client.post("/mlops/api/experiments", json={"treatment_version": 2, "share": 0.5}, headers=AUTH).status_code == 201
    other = build_app(Path(ab_app.instance_path), base_config(tmp_path / "other"), name="second-host")
    assert other.extensions["mlops"] is not ab_app.extensions["mlops"]
    rng = np.random.default_rng(1)
    row = _row(rng)
    for i in range(100):
        first = client.post("/predict", json=row, headers={"X-User": f"user-{i}"})
        second = other.test_client().post("/predict", json=row, headers={"X-User": f"user-{i}"})
        assert first.headers["X-MLOps-Variant"] == second.headers["X-MLOps-Variant"]


def test_promote_makes_the_treatment_production(ab_app: Flask) -> None:
    from flask_mlops.services.registry import alias_version

    client = ab_app.test_client()
    exp = client.post("/mlops/api/experiments", json={"treatment_version": 2}, headers=AUTH).json
    promoted = client.post(f"/mlops/api/experiments/{exp['id']}/promote", headers=AUTH)
    assert promoted.status_code == 200 and promoted.json["status"] == "promoted"
    assert alias_version(ab_app.extensions["mlops"], "diabetes") == 2
    response = client.post("/predict", json=SAMPLE_ROW, headers={"X-User": "x"})
    assert response.headers["X-Model-Version"] == "2" and "X-MLOps-Variant" not in response.headers


STAGES = [{"share": 0.3, "min_duration_s": 0, "min_samples": 20}, {"share": 0.6, "min_duration_s": 0, "min_samples": 20}, {"share": 1.0}]
# in-process latency on a busy 2-core machine is noise, not harm: this test judges advancing, not
# latency (the latency guardrail has its own tests in test_ab_rollout.py)
GUARDS = {"min_requests": 20, "min_labelled": 20, "p95_floor_ms": 250.0}


def _traffic(client: Any, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        client.post("/predict", json=_row(rng), headers={"X-User": f"user-{seed}-{i}"})


def test_rollout_advances_on_healthy_traffic_and_promotes_at_the_end(ab_app: Flask) -> None:
    from flask_mlops.services.registry import alias_version

    client = ab_app.test_client()
    started = client.post("/mlops/api/rollouts", json={"treatment_version": 2, "stages": STAGES, "guardrails": GUARDS}, headers=AUTH)
    assert started.status_code == 201, started.json
    rollout = started.json
    assert (rollout["share"], rollout["status"]) == (0.3, "running")
    actions = []
    for step in range(2):
        _traffic(client, 150, seed=step)
        decisions = client.post("/mlops/api/rollouts/evaluate", headers=AUTH).json["decisions"]
        actions.append((decisions[0]["action"], decisions[0]["new_share"]))
    assert actions == [("advance", 0.6), ("complete", 1.0)]
    assert client.post("/mlops/api/rollouts/evaluate", headers=AUTH).json["decisions"] == []  # nothing running
    final = client.get(f"/mlops/api/rollouts/{rollout['id']}", headers=READ_AUTH).json
    assert final["status"] == "completed" and len(final["history"]) == 2
    assert alias_version(ab_app.extensions["mlops"], "diabetes") == 2
    exposition = client.get("/mlops/metrics", headers=READ_AUTH).text  # the rollout-events counter moved
    for action in ("advance", "complete"):
        assert f'mlops_rollout_events_total{{action="{action}",experiment="{rollout["experiment_id"]}",model="diabetes"}} 1.0' in exposition


def test_rollout_rolls_back_on_an_injected_error_rate_breach(ab_app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    from sqlalchemy import select

    from flask_mlops.store.models import AuditEvent

    ab_app.config["PROPAGATE_EXCEPTIONS"] = False  # v3's failures become 500s, as in production
    client = ab_app.test_client()
    rollout = client.post("/mlops/api/rollouts", json={"treatment_version": 3, "stages": STAGES, "guardrails": GUARDS}, headers=AUTH).json
    _traffic(client, 200, seed=7)  # v3 fails on every request it serves
    decisions = client.post("/mlops/api/rollouts/evaluate", headers=AUTH).json["decisions"]
    assert decisions[0]["action"] == "rollback" and decisions[0]["new_share"] == 0.0
    assert "error_rate" in decisions[0]["reasons"][0]
    assert "ALERT" in caplog.text and "rolled back" in caplog.text
    state = client.get(f"/mlops/api/rollouts/{rollout['id']}", headers=READ_AUTH).json
    assert state["status"] == "rolled_back" and state["share"] == 0.0
    with ab_app.extensions["mlops"].session() as session:
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert "rollout_rollback" in actions
    for i in range(20):
        response = client.post("/predict", json=SAMPLE_ROW, headers={"X-User": f"after-{i}"})
        assert response.headers["X-Model-Version"] == "1" and "X-MLOps-Variant" not in response.headers


def test_cli_experiment_and_rollout_commands(ab_app: Flask) -> None:
    import flask_mlops.cli.experiments  # noqa: F401  (adds the commands to the group)

    runner = ab_app.test_cli_runner()
    out = runner.invoke(args=["mlops", "experiment", "start", "--model", "diabetes", "--treatment", "2", "--share", "0.2"])
    assert out.exit_code == 0, out.output
    assert "v1 (control) vs v2 (treatment) at 20%" in out.output
    _traffic(ab_app.test_client(), 50, seed=3)
    listed = runner.invoke(args=["mlops", "experiment", "list"])
    assert listed.exit_code == 0 and "running" in listed.output
    results = runner.invoke(args=["mlops", "experiment", "results", "1"])
    assert results.exit_code == 0 and "verdict: continue" in results.output, results.output
    clash = runner.invoke(args=["mlops", "experiment", "start", "--model", "diabetes", "--treatment", "2"])
    assert clash.exit_code == 1 and "already has a running experiment" in clash.output
    assert runner.invoke(args=["mlops", "experiment", "stop", "1"]).exit_code == 0
    started = runner.invoke(args=["mlops", "rollout", "start", "--model", "diabetes", "--treatment", "2", "--stages", json.dumps(STAGES)])
    assert started.exit_code == 0 and "at 30%" in started.output, started.output
    shown = runner.invoke(args=["mlops", "rollout", "show", "1"])
    assert shown.exit_code == 0 and json.loads(shown.output)["status"] == "running"
    held = runner.invoke(args=["mlops", "rollout", "evaluate"])
    assert held.exit_code == 0 and "hold" in held.output


# ----------------------------------------------------------- under real gunicorn


@pytest.mark.integration
@pytest.mark.slow
def test_rollouts_under_gunicorn_with_two_workers(two_versions: Path, tmp_path: Path, gunicorn_factory: Any) -> None:
    """Complete a healthy rollout, then roll back a failing one; every worker follows within
    the reload interval (1 s here), and a unit keeps its variant whichever worker serves it."""
    instance = tmp_path / "gunicorn-instance"
    shutil.copytree(two_versions, instance)
    server = gunicorn_factory(instance, workers=2, env={"MLOPS_RELOAD_INTERVAL": "1"})
    try:
        _gunicorn_rollouts(server)
    except BaseException:
        print(server.output.read_text(errors="replace")[-8000:])  # the workers' log, shown with the failure
        raise


def _gunicorn_rollouts(server: Any) -> None:
    import time

    import requests

    assert len(server.worker_pids()) == 2
    settle = 2.5  # > reload interval, with margin for a busy machine
    rng = np.random.default_rng(5)

    def predict(user: str | None) -> requests.Response:
        body = {**_row(rng), **({"user_id": user} if user else {})}
        return requests.post(f"{server.url}/predict", json=body, timeout=30)

    def api(method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(method, f"{server.url}/mlops/api{path}", headers=AUTH, timeout=120, **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    stages = [{"share": 0.5, "min_duration_s": 0, "min_samples": 30}, {"share": 1.0}]
    guards = {"min_requests": 30, "max_p95_ratio": 5.0}  # a shared 2-core CI box makes p95 noisy; errors are the test
    # 1. healthy v2: every worker routes by the same hash; the rollout completes and promotes v2
    api("POST", "/rollouts", json={"treatment_version": 2, "stages": stages, "guardrails": guards})
    time.sleep(settle)
    variants: dict[str, set[str]] = {}
    for i in range(160):
        response = predict(f"user-{i % 80}")
        assert response.status_code == 200
        variants.setdefault(f"user-{i % 80}", set()).add(response.headers["X-MLOps-Variant"])
    assert all(len(v) == 1 for v in variants.values())  # sticky across the two workers
    assert set().union(*variants.values()) == {"control", "treatment"}
    decision = api("POST", "/rollouts/evaluate")["decisions"][0]
    assert decision["action"] == "complete", decision
    time.sleep(settle)
    after = [predict(f"user-{i}") for i in range(60)]
    assert {r.headers["X-Model-Version"] for r in after} == {"2"}
    assert not any("X-MLOps-Variant" in r.headers for r in after)

    # 2. failing v3: ~half the traffic errors; evaluation rolls back; every worker serves v2 again
    rollout = api("POST", "/rollouts", json={"treatment_version": 3, "stages": stages, "guardrails": guards})
    time.sleep(settle)
    statuses = [predict(f"user-{i}").status_code for i in range(160)]
    assert 500 in statuses and 200 in statuses
    decision = api("POST", "/rollouts/evaluate")["decisions"][0]
    assert decision["action"] == "rollback" and "error_rate" in decision["reasons"][0], decision
    time.sleep(settle)
    final = [predict(f"user-{i}") for i in range(100)]
    assert {r.status_code for r in final} == {200}
    assert {r.headers["X-Model-Version"] for r in final} == {"2"}
    assert not any("X-MLOps-Variant" in r.headers for r in final)
    assert api("GET", f"/rollouts/{rollout['id']}")["status"] == "rolled_back"


def test_results_count_feedback_labels_per_variant(ab_app: Flask) -> None:
    client = ab_app.test_client()
    exp = client.post("/mlops/api/experiments", json={"treatment_version": 2, "share": 0.5}, headers=AUTH).json
    rng = np.random.default_rng(9)
    ids = [client.post("/predict", json=_row(rng), headers={"X-User": f"fb-{i}"}).headers["X-Prediction-ID"] for i in range(60)]
    for pid in ids[:40]:
        sent = client.post("/mlops/api/feedback", json={"prediction_id": pid, "label": 1}, headers=AUTH)
        assert sent.status_code < 300, sent.json
    body = client.get(f"/mlops/api/experiments/{exp['id']}/results", headers=READ_AUTH).json
    assert body["control"]["labelled"] + body["treatment"]["labelled"] == 40
    records = {r["id"]: r for r in _records(ab_app)}
    positives = sum(records[pid]["prediction"] == 1 for pid in ids[:40])
    assert body["control"]["successes"] + body["treatment"]["successes"] == positives  # accuracy: prediction == label


def test_rollout_id_only_on_a_rollouts_experiment_and_times_in_one_format(ab_app: Flask) -> None:
    """`rollout_id` is set by `GET /experiments/<id>` only (never a null elsewhere); times are ISO-8601 UTC with `Z`."""
    client = ab_app.test_client()
    rollout = client.post("/mlops/api/rollouts", json={"treatment_version": 2}, headers=AUTH).json
    listed = client.get("/mlops/api/experiments", headers=READ_AUTH).json["experiments"]
    assert listed and all("rollout_id" not in e for e in listed)
    one = client.get(f"/mlops/api/experiments/{rollout['experiment_id']}", headers=READ_AUTH).json
    assert one["rollout_id"] == rollout["id"] and one["kind"] == "rollout"
    stamp = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
    assert stamp.match(one["created_at"]) and one["ended_at"] is None and stamp.match(rollout["stage_started_at"])
