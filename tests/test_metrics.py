"""Prometheus metrics: per-request counters and latency, job hooks, registry state, and gunicorn workers adding up."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_mlops import get_state
from flask_mlops.services.prometheus import get_metrics, record_drift, record_health, record_retrain, record_rollout

from .conftest import AUTH, READ_AUTH, SAMPLE_ROW, base_config, build_app


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format (None when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(4))
    return None


def scrape(client: Any) -> str:
    r = client.get("/mlops/metrics", headers=READ_AUTH)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    return r.get_data(as_text=True)


def test_predictions_are_counted_by_model_version_variant_status(client: Any) -> None:
    for _ in range(3):
        assert client.post("/predict", json=SAMPLE_ROW).status_code == 200
    assert client.post("/predict", json={**SAMPLE_ROW, "Glucose": "high"}).status_code == 400
    text = scrape(client)
    assert sample(text, "mlops_predictions_total", model="diabetes", version="1", variant="", status="200") == 3
    assert sample(text, "mlops_predictions_total", model="diabetes", version="1", status="400") == 1
    assert sample(text, "mlops_prediction_latency_seconds_count", model="diabetes", version="1") == 4
    assert (sample(text, "mlops_prediction_latency_seconds_sum", model="diabetes", version="1") or 0) > 0


def test_registry_state_comes_from_the_database(client: Any) -> None:
    text = scrape(client)
    assert sample(text, "mlops_production_version", model="diabetes") == 1
    assert sample(text, "mlops_registry_events_total", model="diabetes", action="register") == 1
    assert sample(text, "mlops_registry_events_total", model="diabetes", action="promote") == 1


def test_job_hooks_drift_health_retrain_rollout(served_app: Flask) -> None:
    state = get_state(served_app)
    record_drift(state, "diabetes", "warning", {"Glucose": {"psi": 0.27, "ks_stat": 0.2}, "Age": {"psi": None}})
    record_health(state, "diabetes", "critical")
    record_retrain(state, "diabetes", "drift", "promoted")
    record_rollout(state, "diabetes", 3, "advanced")
    text = scrape(served_app.test_client())
    assert sample(text, "mlops_drift_score", model="diabetes", feature="Glucose", statistic="psi") == pytest.approx(0.27)
    assert sample(text, "mlops_drift_level", model="diabetes") == 2
    assert sample(text, "mlops_health_level", model="diabetes") == 2
    assert sample(text, "mlops_retrain_events_total", model="diabetes", trigger="drift", outcome="promoted") == 1
    assert sample(text, "mlops_rollout_events_total", model="diabetes", experiment="3", action="advanced") == 1


def test_two_apps_keep_their_own_metrics(served_app: Flask, tmp_path: Path, instance: Path) -> None:
    other = build_app(instance, base_config(tmp_path / "other"), name="other")
    served_app.test_client().post("/predict", json=SAMPLE_ROW)
    assert get_metrics(get_state(served_app)) is not get_metrics(get_state(other))
    text = scrape(other.test_client())
    assert sample(text, "mlops_predictions_total", model="diabetes", status="200") is None


def test_metrics_need_the_read_role(client: Any) -> None:
    assert client.get("/mlops/metrics").status_code == 401
    assert client.get("/mlops/metrics", headers=AUTH).status_code == 200


@pytest.mark.integration
@pytest.mark.slow
def test_gunicorn_workers_add_up(gunicorn_factory: Any, served_instance: Path, tmp_path: Path) -> None:
    """Under gunicorn with 2 workers (multiprocess mode), any worker's scrape counts every worker's requests."""
    import requests

    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    server = gunicorn_factory(served_instance, workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(prom_dir)})
    assert len(server.worker_pids()) == 2

    def predict(i: int) -> int:
        r = requests.post(f"{server.url}/predict", json={**SAMPLE_ROW, "Age": 20 + i % 60}, headers={"Connection": "close"}, timeout=30)
        return r.status_code

    def writers() -> set[str]:
        return {p.name.rsplit("_", 1)[-1] for p in prom_dir.glob("counter_*.db")}

    # concurrent requests, so both sync workers (one request at a time each) take some; which worker accepts
    # is the kernel's choice, so rounds go on (bounded) until both have counted predictions
    n = 0
    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(max_workers=8) as pool:
        while n < 80 or (len(writers()) < 2 and n < 2000 and time.monotonic() < deadline):
            assert set(pool.map(predict, range(40))) == {200}
            n += 40
    assert len(writers()) >= 2, f"only {writers()} wrote counters after {n} requests: they did not spread over both workers"
    for _ in range(4):  # whichever worker answers the scrape, the total is the same
        text = requests.get(f"{server.url}/mlops/metrics", headers={**READ_AUTH, "Connection": "close"}, timeout=30).text
        assert sample(text, "mlops_predictions_total", model="diabetes", version="1", variant="", status="200") == n
        assert sample(text, "mlops_prediction_latency_seconds_count", model="diabetes", version="1") == n
        assert sample(text, "mlops_production_version", model="diabetes") == 1


@pytest.mark.integration
@pytest.mark.slow
def test_gunicorn_conf_turns_multiprocess_mode_on_by_default(gunicorn_factory: Any, served_instance: Path, monkeypatch: Any) -> None:
    """With no PROMETHEUS_MULTIPROC_DIR set, example_app/gunicorn.conf.py picks one, so counts still add up."""
    import requests

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    server = gunicorn_factory(served_instance, workers=2)
    n = 60
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = set(pool.map(lambda i: requests.post(f"{server.url}/predict", json=SAMPLE_ROW, headers={"Connection": "close"}, timeout=30).status_code, range(n)))
    assert statuses == {200}
    for _ in range(4):
        text = requests.get(f"{server.url}/mlops/metrics", headers={**READ_AUTH, "Connection": "close"}, timeout=30).text
        assert sample(text, "mlops_predictions_total", model="diabetes", version="1", variant="", status="200") == n
