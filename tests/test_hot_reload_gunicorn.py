"""Hot reload under real gunicorn: every worker serves a promoted/rolled-back version within
MLOPS_RELOAD_INTERVAL, and no request fails during the swap."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from flask_mlops import get_state
from flask_mlops.services.fleet import fleet_status
from flask_mlops.services.lifecycle import rollback
from flask_mlops.services.registry import set_alias

from .conftest import SAMPLE_ROW, base_config, build_app, quick_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RELOAD_S = 1.0


class Load:
    """Background clients recording (time, status, version) until stopped (bounded)."""

    def __init__(self, url: str, clients: int = 4, max_seconds: float = 120.0) -> None:
        self.url = url
        self.samples: list[tuple[float, int, str | None]] = []
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        self._lock = threading.Lock()

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                r = session.post(f"{self.url}/predict", json=SAMPLE_ROW, timeout=10)
                sample = (time.monotonic(), r.status_code, r.headers.get("X-Model-Version"))
            except requests.RequestException:
                sample = (time.monotonic(), 0, None)
            with self._lock:
                self.samples.append(sample)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)

    def since(self, moment: float) -> list[tuple[float, int, str | None]]:
        with self._lock:
            return [s for s in self.samples if s[0] >= moment]


def wait_all(load: Load, version: str, start: float, budget: float) -> float:
    """Seconds until 100 consecutive responses all came from `version` (all workers swapped)."""
    while time.monotonic() - start < budget:
        tail = load.since(start)
        if len(tail) >= 100 and all(v == version for _, _, v in tail[-100:]):
            first_run = len(tail) - 100
            while first_run > 0 and tail[first_run - 1][2] == version:
                first_run -= 1
            return tail[first_run][0] - start
        time.sleep(0.1)
    raise AssertionError(f"workers still not all on v{version} after {budget}s: {[v for *_, v in load.since(start)[-20:]]}")


def test_promote_and_rollback_reach_every_worker_without_failures(gunicorn_factory: Any, served_instance: Path, tmp_path: Path) -> None:
    server = gunicorn_factory(served_instance, workers=3, env={"MLOPS_RELOAD_INTERVAL": str(RELOAD_S)})
    admin_app = build_app(served_instance, base_config(tmp_path / "admin"))
    state = get_state(admin_app)
    mlops = admin_app.extensions["test_mlops"]
    v2 = mlops.register("diabetes", quick_model(seed=5), app=admin_app).version
    with Load(server.url) as load:
        time.sleep(1.0)
        assert {v for *_, v in load.since(0)} == {"1"}
        t0 = time.monotonic()
        set_alias(state, "diabetes", "production", v2, actor="test", action="promote")
        took = wait_all(load, str(v2), t0, budget=RELOAD_S + 10)
        assert took <= RELOAD_S + 2.0, f"promotion reached all workers after {took:.2f}s"
        t1 = time.monotonic()
        rollback(state, "diabetes", actor="test", reason="hot reload test")
        took_back = wait_all(load, "1", t1, budget=RELOAD_S + 10)
        assert took_back <= RELOAD_S + 2.0
        # every worker told the fleet table what it serves now (and is live): the view /api/fleet and health use
        workers = set(server.worker_pids())
        fleet = fleet_status(state)
        rows = [m for m in fleet.members if m["pid"] in workers]
        assert fleet.status == "ok" and {m["pid"] for m in rows} == workers and len(workers) == 3, fleet.members
        assert all(m["live"] and m["version"] == 1 and m["state"] == "ok" for m in rows), rows
    statuses = [s for _, s, _ in load.samples]
    assert len(statuses) > 200
    assert set(statuses) == {200}, f"failed requests during the swap: {[s for s in statuses if s != 200][:10]}"
    assert server.proc is not None and server.proc.poll() is None
