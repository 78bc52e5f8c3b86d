"""Monitoring through the app: feedback, drift, performance, report, summary, alerts, HTML, CLI, webhook."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_mlops.store.predictions import PredictionLogWriter, format_ts

from .conftest import AUTH, FEATURE_NAMES, READ_AUTH, base_config, build_app, diabetes_frame, quick_model

API = "/mlops/api"


def predict_rows(client: Any, n: int, seed: int = 0) -> list[str]:
    """Real tracked requests with rows of the training data; returns the prediction ids."""
    df = diabetes_frame()
    rows = df[FEATURE_NAMES].sample(n=n, replace=True, random_state=seed).to_dict("records")
    ids = []
    for row in rows:
        response = client.post("/predict", json=row)
        assert response.status_code == 200, response.get_json()
        ids.append(response.headers["X-Prediction-ID"])
    return ids


def write_shifted(app: Flask, n: int, *, glucose_shift: float, seed: int = 1) -> None:
    """Records as the tracker writes them, with Glucose moved by `glucose_shift`."""
    df = diabetes_frame()
    sample = df[FEATURE_NAMES].sample(n=n, replace=True, random_state=seed).reset_index(drop=True)
    sample["Glucose"] = sample["Glucose"] + glucose_shift
    proba = quick_model().predict_proba(df[FEATURE_NAMES].sample(n=n, replace=True, random_state=seed).to_numpy(float))[:, 1]
    writer = PredictionLogWriter(app.extensions["mlops"].log_dir)
    now = datetime.now(timezone.utc)
    for i, row in enumerate(sample.to_dict("records")):
        writer.write(
            {
                "id": f"{seed:08x}{i:024x}", "ts": format_ts(now), "model": "diabetes", "model_version": "1",
                "variant": None, "unit_id": None, "features": {k: float(v) for k, v in row.items()},
                "prediction": int(proba[i] >= 0.5), "probability": float(proba[i]), "latency_ms": 2.0, "status": 200,
            },
            now.date(),
        )
    writer.close()


# -- feedback ----------------------------------------------------------------------------------
def test_feedback_single_duplicate_overwrite_and_unknown(client: Any) -> None:
    (pid,) = predict_rows(client, 1)
    ok = client.post(f"{API}/feedback", json={"prediction_id": pid, "label": 1}, headers=AUTH)
    assert ok.status_code == 201, ok.get_json()
    assert ok.get_json()["created"] == 1
    dup = client.post(f"{API}/feedback", json={"prediction_id": pid, "label": 0}, headers=AUTH)
    assert dup.status_code == 409
    assert dup.get_json()["error"]["code"] == "duplicate_feedback"
    again = client.post(f"{API}/feedback", json={"prediction_id": pid, "label": 0, "overwrite": True}, headers=AUTH)
    assert again.status_code == 201 and again.get_json()["updated"] == 1
    missing = client.post(f"{API}/feedback", json={"prediction_id": "f" * 32, "label": 1}, headers=AUTH)
    assert missing.status_code == 404
    assert missing.get_json()["error"]["details"]["unknown"] == ["f" * 32]
    assert client.post(f"{API}/feedback", json={"prediction_id": pid, "label": 1}, headers=READ_AUTH).status_code == 403
    bad = client.post(f"{API}/feedback", json={"prediction_id": pid}, headers=AUTH)
    assert bad.status_code == 400


def test_bulk_feedback_is_all_or_nothing(client: Any) -> None:
    ids = predict_rows(client, 4, seed=3)
    bad = client.post(f"{API}/feedback", json=[{"prediction_id": ids[0], "label": 1}, {"prediction_id": "0" * 32, "label": 0}], headers=AUTH)
    assert bad.status_code == 404
    repeated = client.post(f"{API}/feedback", json=[{"prediction_id": ids[0], "label": 1}] * 2, headers=AUTH)
    assert repeated.status_code == 400
    ok = client.post(f"{API}/feedback", json={"items": [{"prediction_id": i, "label": n % 2} for n, i in enumerate(ids)]}, headers=AUTH)
    assert ok.status_code == 201 and ok.get_json()["created"] == 4
    perf = client.get(f"{API}/monitoring/performance", headers=READ_AUTH).get_json()
    assert perf["n_labelled"] == 4  # the refused requests stored nothing


def test_bulk_feedback_size_limit(served_instance: Path, tmp_path: Path) -> None:
    app = build_app(served_instance, base_config(tmp_path, MLOPS_FEEDBACK_BATCH_MAX=2))
    client = app.test_client()
    ids = predict_rows(client, 3)
    response = client.post(f"{API}/feedback", json=[{"prediction_id": i, "label": 1} for i in ids], headers=AUTH)
    assert response.status_code == 413
    assert response.get_json()["error"]["details"]["max"] == 2


# -- drift, performance, report ----------------------------------------------------------------
def test_drift_insufficient_then_ok_then_shifted(served_app: Flask, client: Any) -> None:
    predict_rows(client, 20)
    small = client.get(f"{API}/monitoring/drift", headers=READ_AUTH)
    assert small.status_code == 200
    assert small.get_json()["status"] == "insufficient_data" and small.get_json()["level"] is None
    predict_rows(client, 200, seed=5)
    same = client.get(f"{API}/monitoring/drift?last=200", headers=READ_AUTH).get_json()
    assert same["status"] == "ok"
    assert same["drifted_features"] == [], {k: v["why"] for k, v in same["features"].items()}
    assert same["window"]["reference_version"] == 1
    assert {"psi", "ks_stat", "ks_pvalue", "level", "test", "decided_by", "why"} <= set(same["features"]["Glucose"])
    write_shifted(served_app, 300, glucose_shift=40.0)
    moved = client.get(f"{API}/monitoring/drift?last=300", headers=READ_AUTH).get_json()
    assert moved["drifted_features"] == ["Glucose"]
    assert moved["features"]["Glucose"]["test"] == "ks"  # 768 reference rows: judged by p-value
    assert client.get(f"{API}/monitoring/drift/runs", headers=READ_AUTH).get_json()["items"] == []  # reads store nothing
    assert client.post(f"{API}/monitoring/drift/runs?last=300", headers=READ_AUTH).status_code == 403
    stored = client.post(f"{API}/monitoring/drift/runs?last=300", headers=AUTH)
    assert stored.status_code == 201 and stored.get_json()["trigger"] == "api"
    runs = client.get(f"{API}/monitoring/drift/runs", headers=READ_AUTH).get_json()["items"]
    assert len(runs) == 1 and runs[0]["level"] == moved["level"] and runs[0]["id"] == stored.get_json()["id"]
    assert Path(runs[0]["report_path"]).is_file()
    assert json.loads(Path(runs[0]["report_path"]).read_text())["features"]["Glucose"]["level"] == moved["features"]["Glucose"]["level"]


def test_performance_and_report(client: Any) -> None:
    ids = predict_rows(client, 120, seed=7)
    df = diabetes_frame()
    rows = df.sample(n=120, replace=True, random_state=7)
    labels = rows["Outcome"].tolist()
    response = client.post(f"{API}/feedback", json=[{"prediction_id": i, "label": int(y)} for i, y in zip(ids, labels, strict=True)], headers=AUTH)
    assert response.status_code == 201
    perf = client.get(f"{API}/monitoring/performance", headers=READ_AUTH).get_json()
    assert perf["n_labelled"] == 120
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        assert 0.0 <= perf[key] <= 1.0
    assert perf["baseline"]["accuracy"] == 0.77
    assert perf["decay"]["metric"] == "accuracy" and perf["decay"]["level"] in ("ok", "monitor", "warning", "critical")
    assert perf["estimated"]["n"] == 120 and 0.5 < perf["estimated"]["accuracy"] <= 1.0
    assert set(perf["by_version"]) == {"1"}
    report = client.get(f"{API}/monitoring/report", headers=READ_AUTH).get_json()
    assert {"health", "drift", "performance", "operations"} <= set(report)
    assert report["health"]["status"] in ("healthy", "warning", "critical")
    assert report["operations"]["n_requests"] == 120
    summary = client.get(f"{API}/stats/summary", headers=READ_AUTH).get_json()
    assert summary["models"]["diabetes"]["requests"] == 120
    assert summary["models"]["diabetes"]["labelled"] == 120
    assert summary["models"]["diabetes"]["production_version"] == 1


def test_predictions_list_pages_back_in_time(client: Any) -> None:
    ids = predict_rows(client, 7)
    first = client.get(f"{API}/monitoring/predictions?limit=3", headers=READ_AUTH).get_json()
    assert [r["id"] for r in first["items"]] == ids[::-1][:3]
    second = client.get(f"{API}/monitoring/predictions?limit=3&cursor={first['next_cursor']}", headers=READ_AUTH).get_json()
    third = client.get(f"{API}/monitoring/predictions?limit=3&cursor={second['next_cursor']}", headers=READ_AUTH).get_json()
    assert [r["id"] for r in second["items"] + third["items"]] == ids[::-1][3:]
    assert third["next_cursor"] is None
    assert client.get(f"{API}/monitoring/predictions?status=error", headers=READ_AUTH).get_json()["items"] == []
    assert client.get(f"{API}/monitoring/predictions?limit=0", headers=READ_AUTH).status_code == 400
    assert client.get(f"{API}/monitoring/predictions").status_code == 401


def test_unknown_model_and_bad_window(client: Any) -> None:
    assert client.get(f"{API}/monitoring/drift?model=nope", headers=READ_AUTH).status_code == 404
    bad = client.get(f"{API}/monitoring/drift?since=2026-01-02T00:00:00&until=2026-01-01T00:00:00", headers=READ_AUTH)
    assert bad.status_code == 400


def test_html_drift_report_is_offline(served_app: Flask, client: Any) -> None:
    write_shifted(served_app, 200, glucose_shift=40.0)
    response = client.get("/mlops/reports/drift?last=200", headers=READ_AUTH)
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert html.count("<svg") == len(FEATURE_NAMES) + 1  # every feature and the prediction
    assert "Glucose" in html and "critical" in html
    assert "<script" not in html and "src=" not in html and "@import" not in html
    assert re.findall(r'href="([^"]+)"', html) == ["data:,", "/mlops/static/mlops-report.css"]  # an empty icon, its stylesheet
    assert "https://" not in html and html.count("http://") == html.count('xmlns="http://www.w3.org/2000/svg"')
    # a stored run renders from its JSON file
    run_id = client.post(f"{API}/monitoring/drift/runs?last=200", headers=AUTH).get_json()["id"]
    stored = client.get(f"/mlops/reports/drift?run={run_id}", headers=READ_AUTH)
    assert stored.status_code == 200 and "Glucose" in stored.get_data(as_text=True)
    assert client.get("/mlops/reports/drift?run=999", headers=READ_AUTH).status_code == 404


def test_cli_drift_and_report_exit_codes(served_app: Flask, client: Any) -> None:
    runner = served_app.test_cli_runner()
    predict_rows(client, 150, seed=11)
    calm = runner.invoke(args=["mlops", "drift", "--last", "150"])
    assert calm.exit_code == 0, calm.output
    assert "Glucose" in calm.output and "decided_by" in calm.output
    write_shifted(served_app, 300, glucose_shift=60.0)
    hot = runner.invoke(args=["mlops", "drift", "--last", "300", "--no-save"])
    assert hot.exit_code == 2, hot.output
    assert "critical" in hot.output
    as_json = runner.invoke(args=["mlops", "drift", "--last", "300", "--json", "--no-save"])
    assert json.loads(as_json.output)["features"]["Glucose"]["drifted"] is True
    report = runner.invoke(args=["mlops", "report", "--last", "300", "--no-alerts"])
    assert report.exit_code == 2, report.output
    assert "CRITICAL" in report.output and "drift critical" in report.output
    assert runner.invoke(args=["mlops", "drift", "--model", "nope"]).exit_code == 1


# -- alerts and the webhook --------------------------------------------------------------------
class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append({"content_type": self.headers["Content-Type"], "body": json.loads(body)})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def test_alerts_are_posted_once_per_condition_until_the_cooldown(served_instance: Path, tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]) -> None:
    from flask_mlops.extension import get_state
    from flask_mlops.jobs.monitoring import drift_check

    url, received = webhook
    app = build_app(served_instance, base_config(tmp_path, MLOPS_ALERT_WEBHOOK=url, MLOPS_ALERT_COOLDOWN_S=3600))
    write_shifted(app, 300, glucose_shift=60.0)
    state = get_state(app)
    first = drift_check(state)
    assert first["diabetes"]["health"] == "critical" and first["diabetes"]["alerts_sent"] == 1
    assert len(received) == 1
    alert = received[0]
    assert alert["content_type"] == "application/json"
    assert "diabetes" in alert["body"]["text"] and alert["body"]["source"] == "drift" and alert["body"]["level"] == "critical"
    # the same condition again within the cool-down: nothing sent
    second = drift_check(state)
    assert second["diabetes"]["alerts_sent"] == 0 and len(received) == 1
    client = app.test_client()
    listed = client.get(f"{API}/alerts", headers=READ_AUTH).get_json()["items"]
    assert len(listed) == 1 and listed[0]["delivered"] is True and listed[0]["reason"] == "new"
    # after the cool-down (0 s here) the condition is sent again
    app2 = build_app(served_instance, base_config(tmp_path, MLOPS_ALERT_WEBHOOK=url, MLOPS_ALERT_COOLDOWN_S=0), name="host2")
    runner = app2.test_cli_runner()
    result = runner.invoke(args=["mlops", "report", "--since", "2000-01-01"])
    assert result.exit_code == 2, result.output
    assert len(received) == 2 and received[1]["body"]["reason"] == "cooldown_elapsed"


def test_webhook_failure_is_recorded(served_instance: Path, tmp_path: Path) -> None:
    from flask_mlops.extension import get_state
    from flask_mlops.jobs.monitoring import drift_check

    app = build_app(served_instance, base_config(tmp_path, MLOPS_ALERT_WEBHOOK="http://127.0.0.1:9/nothing-listens"))
    write_shifted(app, 300, glucose_shift=60.0)
    assert drift_check(get_state(app))["diabetes"]["alerts_sent"] == 1
    (alert,) = app.test_client().get(f"{API}/alerts", headers=READ_AUTH).get_json()["items"]
    assert alert["delivered"] is False and alert["delivery_error"]


def test_drift_without_a_registered_version_uses_the_training_data(app: Flask) -> None:
    client = app.test_client()
    assert client.get(f"{API}/monitoring/drift", headers=READ_AUTH).get_json()["status"] == "insufficient_data"
    write_shifted(app, 150, glucose_shift=0.0)
    report = client.get(f"{API}/monitoring/drift", headers=READ_AUTH).get_json()
    assert report["status"] == "ok" and report["window"]["reference"] == "training data diabetes.csv"
    assert report["window"]["reference_version"] is None and report["prediction"] is None
    assert report["drifted_features"] == []


def test_raw_reads_are_capped_at_the_newest_records(served_instance: Path, tmp_path: Path) -> None:
    """MLOPS_RAW_READ_MAX bounds a window read from the records: the newest N, and the answer says so."""
    app = build_app(served_instance, base_config(tmp_path, MLOPS_RAW_READ_MAX=150, MLOPS_AGGREGATE_MIN_RECORDS=10**9))
    client = app.test_client()
    predict_rows(client, 100)  # unshifted, older
    write_shifted(app, 150, glucose_shift=60.0)  # the newest 150
    capped = client.get(f"{API}/monitoring/drift", headers=READ_AUTH).get_json()
    assert capped["window"]["n"] == 150 and capped["window"]["record_cap"] == 150 and capped["window"]["source"] == "log"
    glucose = capped["features"]["Glucose"]
    newest = client.get(f"{API}/monitoring/drift?last=150", headers=READ_AUTH).get_json()["features"]["Glucose"]
    assert glucose["n_current"] == 150 and glucose["ks_stat"] == newest["ks_stat"] and glucose["psi"] == newest["psi"]  # the newest 150
    small = client.get(f"{API}/monitoring/drift?last=40", headers=READ_AUTH).get_json()
    assert small["window"]["n"] == 40 and "record_cap" not in small["window"]  # under the cap: nothing to say
    ops = client.get(f"{API}/monitoring/report", headers=READ_AUTH).get_json()["operations"]
    assert ops["n_requests"] == 150, ops  # operations read through the same bounded read
