"""Automated retraining: each trigger at its threshold, runs (202, progress, 409), training data, a killed run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from flask import Flask

from flask_mlops.errors import ConflictError
from flask_mlops.extension import get_state
from flask_mlops.services import retraining
from flask_mlops.services.registry import alias_version
from flask_mlops.store import retraining as runs
from flask_mlops.store.feedback import Feedback

from .conftest import AUTH, DATA, FEATURE_NAMES, FEATURES, READ_AUTH, ROOT, base_config, build_app, diabetes_frame

FAST_MODEL = {
    "diabetes": {
        "features": FEATURES,
        "target": "Outcome",
        "data": str(DATA),
        "feature_engineering": "pima",
        "training": {"make_plots": False, "importance_repeats": 0},
    }
}
FAST = {"MLOPS_MODELS": FAST_MODEL, "MLOPS_CANDIDATES": '{"logistic_regression": {}}', "MLOPS_CV_FOLDS": 3}


@pytest.fixture
def fast_app(served_instance: Path, tmp_path: Path) -> Flask:
    """diabetes v1 in production (accuracy 0.77 recorded), fast training settings, low sample minimums."""
    return build_app(served_instance, base_config(tmp_path, **FAST, MLOPS_RETRAIN_MIN_NEW_LABELS=5, MLOPS_DRIFT_MIN_SAMPLES=50))


def _feedback(app: Flask, n: int, *, correct: int | None = None, version: str = "1") -> list[str]:
    """n labelled predictions of `version`; `correct` of them right (prediction == label)."""
    state = get_state(app)
    ids = []
    now = datetime.now(timezone.utc)
    with state.session() as s, s.begin():
        for i in range(n):
            pid = uuid.uuid4().hex
            ids.append(pid)
            label = i % 2
            right = correct is None or i < correct
            s.add(Feedback(prediction_id=pid, model_name="diabetes", model_version=version, prediction_ts=now,
                           prediction=label if right else 1 - label, probability=None, label=label))
    return ids


def test_new_labels_trigger_at_its_threshold(fast_app: Flask) -> None:
    state = get_state(fast_app)
    _feedback(fast_app, 4)
    t = retraining.check(state, "diabetes").triggers["new_labels"]
    assert (t.fired, t.value, t.threshold) == (False, 4, 5)
    _feedback(fast_app, 1)
    chk = retraining.check(state, "diabetes")
    assert chk.triggers["new_labels"].fired and chk.due and any(r.startswith("new_labels") for r in chk.reasons)


def test_decay_trigger_at_its_threshold(fast_app: Flask) -> None:
    state = get_state(fast_app)
    _feedback(fast_app, 100, correct=70)  # 0.70 vs 0.77: relative drop 9.1 % (< 10 %)
    t = retraining.check(state, "diabetes").triggers["decay"]
    assert not t.fired and t.value == pytest.approx(0.0909, abs=1e-3) and t.threshold == 0.10
    with get_state(fast_app).session() as s, s.begin():
        s.query(Feedback).delete()
    _feedback(fast_app, 100, correct=68)  # 0.68: relative drop 11.7 % (> 10 %)
    t = retraining.check(state, "diabetes").triggers["decay"]
    assert t.fired and t.value == pytest.approx(0.1169, abs=1e-3)


def test_drift_trigger_fires_on_critical_psi_only(fast_app: Flask) -> None:
    state = get_state(fast_app)
    client = fast_app.test_client()
    rows = diabetes_frame()[FEATURE_NAMES].sample(120, random_state=0).to_dict("records")
    for row in rows:
        assert client.post("/predict", json=row).status_code == 200
    t = retraining.check(state, "diabetes").triggers["drift"]
    assert not t.fired and t.value is not None and t.value < 0.3 and t.threshold == 0.3
    for row in rows:  # the same people, 70 points more glucose
        client.post("/predict", json={**row, "Glucose": min(row["Glucose"] + 70, 299)})
    t = retraining.check(state, "diabetes").triggers["drift"]
    assert t.fired and t.value > 0.3 and "Glucose" in t.detail


def test_schedule_and_manual_triggers(fast_app: Flask) -> None:
    state = get_state(fast_app)
    now = datetime.now(timezone.utc)
    chk = retraining.check(state, "diabetes", now=now)
    assert not chk.triggers["schedule"].fired and not chk.triggers["manual"].fired and not chk.due
    assert retraining.check(state, "diabetes", now=now + timedelta(days=8)).triggers["schedule"].fired
    assert retraining.check(state, "diabetes", manual=True).due
    assert retraining.scheduled_check(state) == {"diabetes": {"due": False, "reasons": [], "run": None}}


def test_training_data_adds_labelled_predictions_deduplicated(fast_app: Flask) -> None:
    state = get_state(fast_app)
    client = fast_app.test_client()
    df = diabetes_frame()
    known = df[FEATURE_NAMES].iloc[0].to_dict()  # a base row sent back: a duplicate once labelled like the base
    new = {**known, "Glucose": 101.0, "Age": 77}
    ids = [client.post("/predict", json=row).headers["X-Prediction-ID"] for row in (known, new, new)]
    labels = [int(df["Outcome"].iloc[0]), 1, 1]
    for pid, label in zip(ids, labels, strict=True):
        assert client.post("/mlops/api/feedback", json={"prediction_id": pid, "label": label}, headers=AUTH).status_code in (200, 201)
    X, y, info = retraining.training_data(state, "diabetes")
    assert info["base_rows"] == 768 and info["feedback_labels"] == 3 and info["feedback_rows"] == 3
    assert info["duplicates_dropped"] == 2 and len(y) == info["rows"] == 769
    assert X[-1, FEATURE_NAMES.index("Age")] == 77 and y[-1] == 1


def test_trigger_runs_in_background_and_a_second_gets_409(fast_app: Flask) -> None:
    state = get_state(fast_app)
    client = fast_app.test_client()
    with state.session() as s:  # an active run held by this (live) process
        held = runs.claim(s, "diabetes", trigger="manual", reasons=[], actor="test")
        assert held is not None
        held_id = held.id
    busy = client.post("/mlops/api/retrain/trigger", json={"model": "diabetes"}, headers=AUTH)
    assert busy.status_code == 409 and busy.get_json()["error"]["details"]["run"]["id"] == held_id
    with pytest.raises(ConflictError):
        retraining.start(state, "diabetes", background=False)
    with state.session() as s, s.begin():
        held_row = s.get(runs.RetrainRun, held_id)
        assert held_row is not None
        runs.finish(s, held_row, "failed", error="test")

    assert client.post("/mlops/api/retrain/trigger", json={}, headers=READ_AUTH).status_code == 403
    started = client.post("/mlops/api/retrain/trigger", json={"model": "diabetes", "reason": "test"}, headers=AUTH)
    assert started.status_code == 202
    body = started.get_json()
    assert body["url"].endswith(f"/mlops/api/retrain/runs/{body['run_id']}") and started.headers["Location"] == body["url"]
    # the web process never trains: this host app has no import path, so the run waits for a runner
    assert body["runner"] == "queue" and body["status"] == "queued"
    assert not state.extras.get("retrain_threads")
    again = client.post("/mlops/api/retrain/trigger", json={"model": "diabetes"}, headers=AUTH)
    assert again.status_code == 409  # the queued run holds the slot
    assert client.get(body["url"], headers=READ_AUTH).get_json()["status"] == "queued"
    ran = fast_app.test_cli_runner().invoke(args=["mlops", "retrain", "--run-queued"])
    assert ran.exit_code == 0, ran.output
    assert f"run {body['run_id']} (diabetes)" in ran.output
    finished = retraining.get_run(state, body["run_id"])
    polled = client.get(body["url"], headers=READ_AUTH).get_json()
    assert polled["status"] == finished["status"] in ("succeeded", "rejected"), polled["error"]
    assert any("candidate 1 of 1" in line for line in polled["log"])
    result = polled["result"]
    assert result["candidate"] == "logistic_regression" and result["semver"] and result["gates"]
    assert result["data"]["base_rows"] == 768
    assert (alias_version(state, "diabetes") == result["version"]) is result["promoted"]
    listed = client.get("/mlops/api/retrain/runs", headers=READ_AUTH).get_json()["runs"]
    assert listed[0]["id"] == body["run_id"]
    assert "no queued retraining run" in fast_app.test_cli_runner().invoke(args=["mlops", "retrain", "--run-queued"]).output
    chk = client.get("/mlops/api/retrain/check", headers=READ_AUTH).get_json()
    assert set(chk["triggers"]) == {"drift", "decay", "new_labels", "schedule", "manual"}
    assert all({"value", "threshold", "fired"} <= set(t) for t in chk["triggers"].values())


def test_stale_run_is_reaped() -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    engine = create_engine("sqlite://")
    runs.ensure_tables(engine)
    with Session(engine) as s:
        run = runs.claim(s, "m", trigger="manual", reasons=[], actor="t")
        assert run is not None and runs.claim(s, "m", trigger="manual", reasons=[], actor="t") is None
        run.heartbeat_at = datetime.now(timezone.utc) - timedelta(seconds=30)
        s.commit()
    with Session(engine) as s, s.begin():
        assert runs.reap_stale(s, 60) is None  # alive and recent
        s.get(runs.RetrainRun, 1).holder = "otherhost:1"  # type: ignore[union-attr]
        assert runs.reap_stale(s, 10) is not None
    with Session(engine) as s:
        row = s.get(runs.RetrainRun, 1)
        assert row is not None and row.status == "failed" and row.slot is None and "no heartbeat" in (row.error or "")
        assert runs.claim(s, "m", trigger="manual", reasons=[], actor="t") is not None


@pytest.mark.slow
def test_a_killed_retrain_leaves_production_serving(fast_app: Flask, served_instance: Path, tmp_path: Path) -> None:
    state = get_state(fast_app)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from tests.conftest import build_app, base_config\n"
        "from tests.test_retraining import FAST\n"
        "from flask_mlops.services import retraining\n"
        "from flask_mlops.extension import get_state\n"
        "app = build_app(Path(sys.argv[2]), base_config(Path(sys.argv[3]), **{**FAST, 'MLOPS_CANDIDATES': None}))\n"
        "retraining.start(get_state(app), 'diabetes', background=False, actor='doomed')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(ROOT), str(served_instance), str(tmp_path / "child")],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        run_id = None
        while time.monotonic() < deadline:
            listed = retraining.list_runs(state)
            if listed and listed[0]["status"] == "running" and any("fold" in line for line in listed[0]["log"]):
                run_id = listed[0]["id"]
                break
            assert proc.poll() is None, "the retraining process ended before it could be killed"
            time.sleep(0.2)
        assert run_id is not None, "the run never reached training"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert alias_version(state, "diabetes") == 1
    row = dict(zip(FEATURE_NAMES, [1, 120, 70, 20, 80, 30, 0.4, 35], strict=True))
    response = fast_app.test_client().post("/predict", json=row)
    assert response.status_code == 200 and response.headers["X-Model-Version"] == "1"
    failed = retraining.get_run(state, run_id)  # found abandoned (its process is gone)
    assert failed["status"] == "failed" and "abandoned" in failed["error"]
    assert np.isfinite(float(response.get_json()["probability"]))
    assert retraining.start(state, "diabetes", background=False)["status"] in ("succeeded", "rejected")  # slot free again


def test_cli_retrain_exits_non_zero_when_the_gates_reject(served_instance: Path, tmp_path: Path) -> None:
    """A scheduled job (mlops-training.yml) relies on the exit code to fail on a gate failure."""
    app = build_app(served_instance, base_config(tmp_path, **FAST, MLOPS_PROMOTION_GATES={"accuracy": 0.99}))
    result = app.test_cli_runner().invoke(args=["mlops", "retrain", "--name", "diabetes", "--force"])
    assert result.exit_code == 1, result.output
    assert "rejected" in result.output and "failed the promotion gates" in result.output
    assert get_state(app).models.production_versions() == {"diabetes": 1}
