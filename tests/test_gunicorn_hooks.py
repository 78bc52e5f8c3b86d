"""The package's gunicorn hooks (`-c python:flask_mlops.gunicorn`) under real gunicorn, and the loud
warning when several workers serve without them."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from .conftest import READ_AUTH, ROOT, SAMPLE_ROW, Gunicorn, wait_http
from .test_metrics import sample

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class PlainGunicorn(Gunicorn):
    """gunicorn started by flags only: `-w 2 -b ...` plus the given extra arguments (no config file)."""

    def __init__(self, *args: Any, extra: list[str], workers: int = 2, **kwargs: Any) -> None:
        super().__init__(*args, workers=workers, **kwargs)
        self.extra = extra
        self.workers = workers

    def start(self) -> PlainGunicorn:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "gunicorn", *self.extra, "-w", str(self.workers), "-b", f"127.0.0.1:{self.port}", "example_app.wsgi:app"]
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        wait_http(f"{self.url}/mlops/api/health")
        return self


def _serve(served_instance: Path, tmp_path: Path, monkeypatch: Any, extra: list[str], workers: int = 2) -> PlainGunicorn:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)
    return PlainGunicorn(served_instance, tmp_path / "logs", workers=workers, extra=extra).start()


def _predict_concurrently(url: str, n: int) -> set[int]:
    import requests

    def one(i: int) -> int:
        return requests.post(f"{url}/predict", json={**SAMPLE_ROW, "Age": 20 + i % 60}, headers={"Connection": "close"}, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:  # concurrent, so both sync workers take some
        return set(pool.map(one, range(n)))


def test_package_hooks_make_two_workers_add_up(served_instance: Path, tmp_path: Path, monkeypatch: Any) -> None:
    """`gunicorn -c python:flask_mlops.gunicorn -w 2`: every scrape counts both workers' requests, no warning."""
    import requests

    server = _serve(served_instance, tmp_path, monkeypatch, ["-c", "python:flask_mlops.gunicorn"])
    try:
        assert len(server.worker_pids()) == 2
        n = 60
        assert _predict_concurrently(server.url, n) == {200}
        for _ in range(4):  # whichever worker answers, the totals are the same
            text = requests.get(f"{server.url}/mlops/metrics", headers={**READ_AUTH, "Connection": "close"}, timeout=30).text
            assert "# WARNING" not in text
            assert sample(text, "mlops_predictions_total", model="diabetes", version="1", variant="", status="200") == n
            assert sample(text, "mlops_prediction_latency_seconds_count", model="diabetes", version="1") == n
        health = requests.get(f"{server.url}/mlops/api/health", timeout=30).json()
        assert health["warnings"] == []
    finally:
        output = server.stop()
    assert "without PROMETHEUS_MULTIPROC_DIR" not in output


def test_plain_gunicorn_with_two_workers_says_so(served_instance: Path, tmp_path: Path, monkeypatch: Any) -> None:
    """`gunicorn -w 2 app` (no hooks): a warning in each worker's log, in /metrics and in /api/health."""
    import requests

    server = _serve(served_instance, tmp_path, monkeypatch, [])
    try:
        assert _predict_concurrently(server.url, 10) == {200}
        text = requests.get(f"{server.url}/mlops/metrics", headers={**READ_AUTH, "Connection": "close"}, timeout=30).text
        assert text.startswith("# WARNING: gunicorn runs 2 workers without PROMETHEUS_MULTIPROC_DIR")
        assert sample(text, "mlops_predictions_total", model="diabetes", version="1", variant="", status="200") is not None
        health = requests.get(f"{server.url}/mlops/api/health", timeout=30).json()
        assert health["status"] == "ok"  # still serving: a warning, not a failure
        assert len(health["warnings"]) == 1 and "python:flask_mlops.gunicorn" in health["warnings"][0]
    finally:
        output = server.stop()
    assert output.count("flask-mlops: gunicorn runs 2 workers without PROMETHEUS_MULTIPROC_DIR") == 2, output[-2000:]


def test_one_worker_needs_no_multiprocess_mode(served_instance: Path, tmp_path: Path, monkeypatch: Any) -> None:
    """One worker counts everything itself: no warning."""
    import requests

    server = _serve(served_instance, tmp_path, monkeypatch, [], workers=1)
    try:
        assert requests.get(f"{server.url}/mlops/api/health", timeout=30).json()["warnings"] == []
    finally:
        output = server.stop()
    assert "without PROMETHEUS_MULTIPROC_DIR" not in output
