"""Fleet state: workers report what they serve; health and GET /api/fleet name the hosts that disagree with production."""

from __future__ import annotations

import logging
import shutil
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, update
from sqlalchemy.engine import Engine

from flask_mlops.services import fleet
from flask_mlops.services.registry import set_alias
from flask_mlops.services.state import get_state
from flask_mlops.store import Base
from flask_mlops.store import fleet as store
from flask_mlops.store.base import utcnow

from .conftest import FEATURE_NAMES, READ_AUTH, base_config, build_app, diabetes_frame, quick_model


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine(db_url)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_reports_replace_a_workers_rows_and_expire_on_the_database_clock(engine: Engine) -> None:
    started = utcnow()
    store.report(engine, "a:1:x", "a", 1, started, [store.Served("m", 2, 2, started, None), store.Served("n", 1, 1, None, None)], expire_s=60)
    store.report(engine, "b:2:y", "b", 2, started, [store.Served("m", 1, 2, None, "v2: boom")], expire_s=60)
    store.report(engine, "a:1:x", "a", 1, started, [store.Served("m", 2, 2, started, None)], expire_s=60)  # n no longer served
    rows, now = store.members(engine)
    assert [(r.worker, r.model, r.version, r.last_error) for r in rows] == [("a:1:x", "m", 2, None), ("b:2:y", "m", 1, "v2: boom")]
    assert all(0 <= r.age_s < 5 and r.heartbeat_at <= now for r in rows)
    with engine.begin() as conn:  # b went silent two minutes ago (by the database's clock)
        conn.execute(update(store.FleetMember).where(store.FleetMember.worker == "b:2:y").values(heartbeat_at=now - timedelta(minutes=2)))
    store.report(engine, "a:1:x", "a", 1, started, [store.Served("m", 2, 2, started, None)], expire_s=60)
    assert [r.worker for r in store.members(engine)[0]] == ["a:1:x"]  # the silent worker's rows expired
    store.leave(engine, "a:1:x")
    assert store.members(engine)[0] == []


def _copy_version(src: Path, dest: Path, version: int) -> None:
    (dest / "diabetes" / str(version)).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "diabetes" / str(version) / "model.joblib", dest / "diabetes" / str(version) / "model.joblib")


def _cut_off_host(instance: Path, cache: Path) -> dict[str, str]:
    """Another host: its own model cache (holding v1) and no way to reach the artifact store (a dead MLflow server)."""
    _copy_version(instance / "mlops_models", cache, 1)
    return {"MLOPS_MODEL_CACHE_DIR": str(cache), "MLOPS_TRACKING_URI": "http://127.0.0.1:9"}


def _worker(instance: Path, tmp_path: Path, name: str, **extra: Any) -> Flask:
    return build_app(instance, base_config(tmp_path / name, **extra), name=name)


def test_health_names_the_host_that_cannot_load_production(served_instance: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet.socket, "gethostname", lambda: "host-a")
    a = _worker(served_instance, tmp_path, "a")
    sa = get_state(a)
    with sa.engine.begin() as conn:  # the template's registering app reported too: start from an empty fleet
        conn.execute(store.FleetMember.__table__.delete())
    assert sa.models.report(force=True)
    monkeypatch.setattr(fleet.socket, "gethostname", lambda: "host-b")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    b = _worker(served_instance, tmp_path, "b", **_cut_off_host(served_instance, tmp_path / "b-cache"))
    sb = get_state(b)
    sb.models.refresh()
    body = a.test_client().get("/mlops/api/fleet", headers=READ_AUTH).get_json()
    assert body["status"] == "ok" and body["production"] == {"diabetes": 1}
    assert sorted((m["host"], m["version"], m["state"]) for m in body["members"]) == [("host-a", 1, "ok"), ("host-b", 1, "ok")]
    assert a.test_client().get("/mlops/api/fleet").status_code == 401

    # v2 is promoted from host a; host b cannot reach the artifact store, so it keeps serving v1
    mlops = a.extensions["test_mlops"]
    info = mlops.register("diabetes", quick_model(seed=1), app=a, reference=diabetes_frame()[FEATURE_NAMES], threshold=0.5)
    set_alias(sa, "diabetes", "production", info.version)  # straight to production (no gates: this is about serving it)
    sb.models.refresh()
    assert sb.models.production_versions() == {"diabetes": 1}
    status = fleet.fleet_status(sa)
    assert status.status == "degraded" and status.hosts == ["host-b"]
    (problem,) = status.problems
    assert (problem["model"], problem["version"], problem["production"]) == ("diabetes", 1, 2) and problem["last_error"]
    health = b.test_client().get("/mlops/api/health").get_json()  # public, no token
    assert health["status"] == "degraded" and health["fleet"]["hosts"] == ["host-b"]
    assert health["fleet"]["problems"] == [{"host": "host-b", "model": "diabetes", "version": 1, "production": 2}]
    page = a.test_client().get("/mlops/models", headers=READ_AUTH)
    assert page.status_code == 200 and b'data-state="cannot_load"' in page.data and b"host-b" in page.data

    _copy_version(served_instance / "mlops_models", tmp_path / "b-cache", 2)  # fixed: the file reaches b's disk, sha256-checked
    sb.models.refresh()
    sa.extras.pop("fleet_health", None)
    assert fleet.fleet_status(sa).status == "ok"
    assert a.test_client().get("/mlops/api/health").get_json()["status"] == "ok"


def test_a_worker_that_has_not_looked_since_a_promotion_is_updating_not_degraded(served_app: Flask) -> None:
    state = get_state(served_app)
    state.models.refresh()
    store.report(state.engine, "late:9:z", "late-host", 9, utcnow(), [store.Served("diabetes", 0, 0, None, None)], expire_s=3600)
    status = fleet.fleet_status(state)
    late = next(m for m in status.members if m["worker"] == "late:9:z")
    assert late["state"] == "updating" and status.status == "ok"


def test_reporting_never_breaks_serving_when_the_database_is_away(caplog: pytest.LogCaptureFixture) -> None:
    unreachable = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none", connect_args={"connect_timeout": 2})
    reporter = fleet.Reporter(SimpleNamespace(engine=unreachable, config=SimpleNamespace(reload_interval=0.0)))  # type: ignore[arg-type]
    served = [store.Served("diabetes", 1, 1, None, None)]
    with caplog.at_level(logging.WARNING, logger="flask_mlops.services.fleet"):
        assert reporter.report(served, force=True) is False
        assert reporter.report(served, force=True) is False
    assert len([r for r in caplog.records if "fleet report failed" in r.message]) == 1  # said once, not per reload
    unreachable.dispose()


@pytest.mark.integration
@pytest.mark.slow
def test_two_gunicorn_hosts_health_shows_the_one_that_cannot_load_a_promotion(
    gunicorn_factory: Any, served_instance: Path, tmp_path: Path
) -> None:
    """Two real gunicorn "hosts" on one database; host b cannot reach the artifact store."""
    import requests

    from .ops_helpers import wait_for

    env = {"MLOPS_RELOAD_INTERVAL": "1"}
    a = gunicorn_factory(served_instance, workers=2, env=env)
    cut_off = {**_cut_off_host(served_instance, tmp_path / "host-b-cache"), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    b = gunicorn_factory(served_instance, workers=2, env={**env, **cut_off})
    admin = build_app(served_instance, base_config(tmp_path / "admin"))
    v2 = admin.extensions["test_mlops"].register("diabetes", quick_model(seed=3), app=admin, threshold=0.5).version
    set_alias(get_state(admin), "diabetes", "production", v2)
    wait_for(lambda: requests.get(f"{a.url}/mlops/api/health", timeout=5).json()["status"] == "degraded",
             30, "host a's health to see host b")  # idle workers follow promotions too (reload loop from post_worker_init)
    stuck, fine = set(b.worker_pids()), set(a.worker_pids())

    def settled() -> dict[str, Any] | None:  # every worker reports within its reload interval
        view = requests.get(f"{a.url}/mlops/api/fleet", headers=READ_AUTH, timeout=5).json()
        on_v2 = {m["pid"] for m in view["members"] if m["live"] and m["version"] == v2}
        return view if {p["pid"] for p in view["problems"]} == stuck and fine <= on_v2 else None

    fleet_view = wait_for(settled, 20, "host b's workers stuck on v1, host a's on v2")
    assert all(p["version"] == 1 and p["production"] == v2 for p in fleet_view["problems"]), fleet_view["problems"]
    assert all(p["last_error"] for p in fleet_view["problems"]), fleet_view["problems"]
    def degraded() -> dict[str, Any] | None:  # each worker caches its fleet view for up to 5 s
        body: dict[str, Any] = requests.get(f"{a.url}/mlops/api/health", timeout=5).json()
        return body if body["status"] == "degraded" else None

    wait_for(degraded, 15, "a worker of host a to report the fleet problem")
    time.sleep(5.5)  # past every worker's 5 s fleet cache: from now on any worker of host a answers the same
    for _ in range(4):
        health = requests.get(f"{a.url}/mlops/api/health", timeout=5).json()
        assert health["status"] == "degraded" and health["fleet"]["hosts"] == [socket.gethostname()]
    assert health["models"] == {"diabetes": {"production_version": v2}}
