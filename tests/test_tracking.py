"""@mlops.track: headers, one JSONL record per request with every field, errors, sampling."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flask import Flask, abort, jsonify, request

from flask_mlops import get_state
from flask_mlops.store.predictions import read_records

from .conftest import AUTH, FEATURE_NAMES, SAMPLE_ROW, base_config, build_app, log_paths

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def records(app: Flask) -> list[dict[str, Any]]:
    return list(read_records(get_state(app).log_dir))


def test_success_record_has_every_field_and_headers(client: Any, served_app: Flask) -> None:
    r = client.post("/predict", json=SAMPLE_ROW, headers={"X-User": "u-1"})
    assert r.status_code == 200
    pid = r.headers["X-Prediction-ID"]
    uuid.UUID(pid)
    assert r.headers["X-Model-Version"] == "1"
    assert "X-MLOps-Variant" not in r.headers  # no experiment running
    (rec,) = records(served_app)
    assert rec["id"] == pid
    assert TS.match(rec["ts"])
    assert rec["model"] == "diabetes" and rec["model_version"] == "1"
    assert rec["variant"] is None and rec["unit_id"] == "u-1"
    assert rec["features"] == {k: float(v) for k, v in SAMPLE_ROW.items()}
    assert rec["prediction"] == r.json["prediction"] and rec["prediction"] in (0, 1)
    assert rec["probability"] == r.json["probability"] and 0.0 <= rec["probability"] <= 1.0
    assert isinstance(rec["latency_ms"], float) and 0 < rec["latency_ms"] < 5000
    assert rec["status"] == 200 and "error" not in rec
    state = get_state(served_app)
    assert log_paths(state.log_dir, datetime.now(timezone.utc).date()) == [state.log_writer.path(datetime.now(timezone.utc).date())]


def test_failed_requests_are_logged_with_status_and_error(client: Any, served_app: Flask) -> None:
    bad = {**SAMPLE_ROW, "Glucose": "high"}
    r = client.post("/predict", json=bad)
    assert r.status_code == 400
    assert r.json["error"]["details"]["fields"] == {"Glucose": "must be a number, got str"}
    (rec,) = records(served_app)
    assert rec["status"] == 400
    assert "Glucose" in rec["error"]
    assert rec["features"]["Glucose"] == "high"  # what the client sent, for debugging
    assert rec["prediction"] is None and rec["id"] == r.headers.get("X-Prediction-ID", rec["id"])


def test_exceptions_in_the_view_are_logged_as_500(served_instance: Path, tmp_path: Path) -> None:
    app = build_app(served_instance, base_config(tmp_path, TESTING=False))
    mlops = app.extensions["test_mlops"]

    @app.post("/boom")
    @mlops.track("diabetes")
    def boom() -> Any:
        raise RuntimeError("kaboom")

    @app.post("/teapot")
    @mlops.track("diabetes")
    def teapot() -> Any:
        abort(418)

    assert app.test_client().post("/boom", json={}).status_code == 500
    assert app.test_client().post("/teapot", json={}).status_code == 418
    recs = records(app)
    assert [r["status"] for r in recs] == [500, 418]
    assert recs[0]["error"] == "RuntimeError: kaboom"


def test_prediction_taken_from_the_json_response_without_predict(served_instance: Path, tmp_path: Path) -> None:
    app = build_app(served_instance, base_config(tmp_path))
    mlops = app.extensions["test_mlops"]

    @app.post("/manual")
    @mlops.track("diabetes", features=lambda: {"custom": request.get_json()["Glucose"]})
    def manual() -> Any:
        return jsonify(prediction=1, probability=0.9, model_version="7")

    r = app.test_client().post("/manual", json=SAMPLE_ROW)
    (rec,) = records(app)
    assert rec["prediction"] == 1 and rec["probability"] == 0.9 and rec["model_version"] == "7"
    assert rec["features"] == {"custom": 148}
    assert r.headers["X-Model-Version"] == "1"  # the header says what production serves


def test_two_models_in_one_app_log_separately(served_instance: Path, tmp_path: Path) -> None:
    cfg = base_config(tmp_path)
    cfg["MLOPS_MODELS"] = {**cfg["MLOPS_MODELS"], "churn": {"features": ["tenure", "plan"]}}
    app = build_app(served_instance, cfg)
    mlops = app.extensions["test_mlops"]

    @app.post("/churn")
    @mlops.track("churn")
    def churn() -> Any:
        return jsonify(prediction=0, probability=0.1)

    c = app.test_client()
    c.post("/predict", json=SAMPLE_ROW)
    c.post("/churn", json={"tenure": 3, "plan": "pro"})
    log_dir = get_state(app).log_dir
    assert [r["model"] for r in read_records(log_dir, model="diabetes")] == ["diabetes"]
    (churn_rec,) = read_records(log_dir, model="churn")
    assert churn_rec["features"] == {"tenure": 3, "plan": "pro"} and churn_rec["model_version"] is None


def test_sampling_is_deterministic_by_prediction_id(served_instance: Path, tmp_path: Path) -> None:
    from flask_mlops.services.tracking import _sampled

    app = build_app(served_instance, base_config(tmp_path, MLOPS_LOG_SAMPLE_RATE=0.25))
    c = app.test_client()
    ids = [c.post("/predict", json=SAMPLE_ROW).headers["X-Prediction-ID"] for _ in range(400)]
    logged = {r["id"] for r in records(app)}
    assert logged == {i for i in ids if _sampled(i, 0.25)}  # the same decision any worker would make
    assert 60 <= len(logged) <= 140  # ~25 % of 400


def test_unserialisable_features_never_lose_the_record(served_instance: Path, tmp_path: Path) -> None:
    """What can be converted is (numpy scalars and names, Decimal, huge ints); what cannot is
    logged as null, named in `features_error` and counted, and the rest of the row is kept."""
    from decimal import Decimal

    import numpy as np

    app = build_app(served_instance, base_config(tmp_path))
    mlops = app.extensions["test_mlops"]
    odd_value = object()

    @app.post("/odd")
    @mlops.track(
        "diabetes",
        features=lambda: {np.str_("Glucose"): np.float32(1.5), "n": np.int64(3), "d": Decimal("2.5"), "big": 10**40, "obj": odd_value},
    )
    def odd() -> Any:
        return jsonify(prediction=0)

    assert app.test_client().post("/odd", json={}).status_code == 200
    (rec,) = records(app)
    assert rec["features"] == {"Glucose": 1.5, "n": 3, "d": 2.5, "big": 1e40, "obj": None}
    assert rec["features_error"] == "not JSON-serialisable, logged as null: 1 x object"
    metrics = app.test_client().get("/mlops/metrics", headers=AUTH).get_data(as_text=True)
    assert 'mlops_log_unserialisable_features_total{cause="object",model="diabetes"} 1.0' in metrics


def test_log_lines_are_single_json_objects(client: Any, served_app: Flask) -> None:
    for i in range(20):
        client.post("/predict", json={**SAMPLE_ROW, "Age": 20 + i})
    [path] = log_paths(get_state(served_app).log_dir)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 21
    assert all(json.loads(line)["features"].keys() == set(FEATURE_NAMES) for line in lines[:-1])


def test_prediction_ids_differ_across_forked_workers() -> None:
    import os

    from flask_mlops.services.serving import new_prediction_id

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: like a gunicorn worker forked from the master
        os.write(write, "".join(new_prediction_id() for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 50 * 32 + 10).decode()
    mine = [new_prediction_id() for _ in range(50)]
    theirs = {child[i : i + 32] for i in range(0, len(child), 32)}
    assert len(theirs) == 50 and not theirs & set(mine)
    assert all(uuid.UUID(i).version == 4 for i in mine)
