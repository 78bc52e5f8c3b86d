"""Dashboard pages, rendered by the real app: every panel comes from the service that owns it.

The browser test (test_dashboard_browser.py) checks what a person sees; these check, without a
browser, that each page renders its panels (no "could not load"), that reading pages stores
nothing, and that a promotion from the dashboard goes through the same gates as the API.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from flask_mlops import get_state
from flask_mlops.services.registry import alias_version
from flask_mlops.store.monitoring import list_drift_runs

from .conftest import AUTH, SAMPLE_ROW, quick_model

PAGES = ("/mlops/", "/mlops/drift", "/mlops/models", "/mlops/experiments", "/mlops/jobs")


def _predict(client: Any, n: int) -> None:
    for i in range(n):
        assert client.post("/predict", json={**SAMPLE_ROW, "Glucose": 80 + i % 100}).status_code == 200


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_its_panels(served_app: Flask, path: str) -> None:
    client = served_app.test_client()
    _predict(client, 40)
    page = client.get(path, headers=AUTH)
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    html = page.get_data(as_text=True)
    assert "could not load" not in html  # a panel whose service raised
    assert "not available in this installation" not in html


def test_the_overview_and_drift_pages_show_monitoring_verdicts(served_app: Flask) -> None:
    client = served_app.test_client()
    _predict(client, 120)  # over MLOPS_DRIFT_MIN_SAMPLES (100)
    overview = client.get("/mlops/", headers=AUTH).get_data(as_text=True)
    assert 'data-kpi="health"' in overview
    assert 'data-kpi="requests">120<' in overview  # monitoring's operations over the traffic window
    assert "Drift:" in overview  # the report's drift section (a reference profile exists)
    drift = client.get("/mlops/drift", headers=AUTH).get_data(as_text=True)
    assert "Glucose" in drift  # per-feature rows of the live drift


def test_reading_pages_stores_no_drift_run(served_app: Flask) -> None:
    client = served_app.test_client()
    _predict(client, 40)
    for path in PAGES:
        assert client.get(path, headers=AUTH).status_code == 200
    state = get_state(served_app)
    with state.session() as session:
        assert list_drift_runs(session, model="diabetes") == []


def test_dashboard_promotion_goes_through_the_gates(served_app: Flask) -> None:
    """An archived version is refused by the gates (lifecycle.promote), never moved by a bare alias write."""
    mlops = served_app.extensions["test_mlops"]
    with served_app.app_context():
        info = mlops.register("diabetes", quick_model(seed=1), threshold=0.5,
                              metrics={"accuracy": 0.5, "f1": 0.1, "roc_auc": 0.5}, promote=False)
    version = info.version if hasattr(info, "version") else info["version"]
    client = served_app.test_client()
    r = client.post("/mlops/models/diabetes/promote", headers=AUTH, data={"version": str(version)})
    assert r.status_code == 303
    production = alias_version(get_state(served_app), "diabetes")
    if "promotion+refused" in r.headers["Location"]:
        assert production == 1  # refused: production untouched
    else:
        pytest.fail(f"a version far worse than production was promoted from the dashboard: {r.headers['Location']}")


def test_the_jobs_page_badges_a_run_by_its_status(served_app: Flask) -> None:
    """A succeeded run is green, a failed one red (the badge once compared against 'ok', a status no run has)."""
    runner = served_app.test_cli_runner()
    assert runner.invoke(args=["mlops", "jobs", "run", "log_retention"]).exit_code == 0
    html = served_app.test_client().get("/mlops/jobs", headers=AUTH).get_data(as_text=True)
    assert '<span class="badge healthy">succeeded</span>' in html
    assert '<span class="badge warning">succeeded</span>' not in html


def test_the_hourly_traffic_chart_bins_the_columnar_window(served_app: Flask) -> None:
    """Per hour: requests, the 5xx share and the p95 latency, from the log's columnar window read."""
    from datetime import datetime, timedelta, timezone

    from flask_mlops.dashboard.data import traffic

    state = get_state(served_app)
    now = datetime.now(timezone.utc).replace(minute=30, second=0, microsecond=0)  # every record below is before it
    start = now.replace(minute=0) - timedelta(hours=2)
    rows = [(-1, 200, 99.0),  # before the window: not counted
            (0, 200, 10.0), (0, 200, 20.0), (0, 503, 30.0), (0, 404, 40.0),  # a 404 is not an error here
            (2, 200, 5.0)]
    for i, (hour, status, latency) in enumerate(rows):
        ts = start + timedelta(hours=hour, minutes=1, seconds=i)
        record = {"id": f"t{i}", "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "model": "diabetes", "model_version": "1",
                  "features": {}, "prediction": 1, "latency_ms": latency, "status": status}
        state.log_writer.write(record, ts.date())
    with served_app.app_context():
        chart = traffic(state, "diabetes", hours=3, now=now)
    assert chart["counts"] == [4, 0, 1]
    assert chart["error_rate"] == [0.25, None, 0.0]
    assert chart["latency_p95"][0] == pytest.approx(38.5) and chart["latency_p95"][1] is None and chart["latency_p95"][2] == 5.0
    assert chart["n"] == 5 and chart["errors"] == 1  # the totals: monitoring's operations over the same window
