"""Shared fixtures: a bare app per test on tmp_path, and pre-built MLflow/registry templates.

MLflow's first use of a SQLite store runs its migrations (seconds); a registration logs a
run and a model. Both are done once per session into template folders, and each test
gets its own copy, so tests stay independent without paying that cost every time.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from flask import Flask, jsonify, request

pytest_plugins = ["tests.pg"]  # PostgreSQL fixtures: pg_url, db_url (sqlite + postgresql)

#: Stores named in the environment (a production shell, a CI job holding production secrets)
#: are never used by tests: every `MLOPS_*` / `MLFLOW_*` variable is removed before any app,
#: gunicorn child or MLflow client is created; each test pins temporary stores in `base_config`.
#: `MLOPS_TEST_*` variables configure the test run itself (PostgreSQL server, Chromium) and stay.
PINNED_AWAY = {
    key: os.environ.pop(key)
    for key in list(os.environ)
    if key.startswith(("MLOPS_", "MLFLOW_", "PROMETHEUS_MULTIPROC")) and not key.startswith("MLOPS_TEST_")
}

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "diabetes.csv"
TOKEN = "admin-token-for-tests"
READ_TOKEN = "read-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
READ_AUTH = {"Authorization": f"Bearer {READ_TOKEN}"}

from example_app import FEATURES  # noqa: E402
from flask_mlops.store.predictions import day_of, log_files  # noqa: E402

FEATURE_NAMES = list(FEATURES)
SAMPLE_ROW = {
    "Pregnancies": 6, "Glucose": 148, "BloodPressure": 72, "SkinThickness": 35,
    "Insulin": 0, "BMI": 33.6, "DiabetesPedigreeFunction": 0.627, "Age": 50,
}


def diabetes_frame() -> pd.DataFrame:
    return pd.read_csv(DATA)


def log_paths(log_dir: Path, day: date | None = None) -> list[Path]:
    """The prediction log's files (every writer's, either layout), or those of one UTC day."""
    return [path for path in log_files(log_dir) if day is None or day_of(path) == day]


def logged_records(log_dir: Path, day: date | None = None) -> list[dict[str, Any]]:
    """Every record of the prediction log (or of one UTC day), from every writer's file, in `ts`
    order: the tests' one way to read the log as it is on disk (each line must parse)."""
    records = [json.loads(line) for path in log_paths(log_dir, day) for line in path.read_text().splitlines() if line]
    return sorted(records, key=lambda r: r["ts"])


def quick_model(seed: int = 0) -> Any:
    """A fast, real scikit-learn pipeline on the example data (for serving tests)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    df = diabetes_frame()
    X = df[FEATURE_NAMES].to_numpy(float)
    y = df["Outcome"].to_numpy()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(df), size=len(df), replace=seed != 0)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=1.0 / (1 + seed))).fit(X[idx], y[idx])


def base_config(tmp: Path, **extra: Any) -> dict[str, Any]:
    return {
        "TESTING": True,
        "MLOPS_MODELS": {"diabetes": {"features": FEATURES, "target": "Outcome", "data": str(DATA), "feature_engineering": "pima"}},
        "MLOPS_LOG_DIR": str(tmp / "logs"),
        "MLOPS_API_TOKEN": f"{TOKEN}:admin,{READ_TOKEN}:read",
        "MLOPS_RELOAD_INTERVAL": 0,
        **extra,
    }


def build_app(instance: Path, config: dict[str, Any], *, name: str = "host") -> Flask:
    """A bare host app with one tracked prediction view, the way a user writes it."""
    from flask_mlops import MLOps

    app = Flask(name, instance_path=str(instance))
    app.config.update(config)
    mlops = MLOps(app)

    @app.post("/predict")
    @mlops.track("diabetes")
    def predict() -> Any:
        payload = request.get_json()
        result = mlops.predict("diabetes", payload, unit_id=request.headers.get("X-User"))
        return jsonify(prediction=result.prediction, probability=result.probability, model_version=result.version)

    app.extensions["test_mlops"] = mlops
    return app


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An instance folder whose mlflow.db is already migrated."""
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow-template")
    MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
    return folder


@pytest.fixture(scope="session")
def registered_template(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Path:
    """An instance folder with diabetes v1 registered and in production (plus its logs dir)."""
    folder = tmp_path_factory.mktemp("registered")
    instance = folder / "instance"
    shutil.copytree(mlflow_template, instance)
    app = build_app(instance, base_config(folder))
    mlops = app.extensions["test_mlops"]
    df = diabetes_frame()
    mlops.register(
        "diabetes", quick_model(), app=app, reference=df[FEATURE_NAMES], threshold=0.5,
        metrics={"accuracy": 0.77, "f1": 0.66, "roc_auc": 0.83}, promote=True,
    )
    app.extensions["mlops"].engine.dispose()
    return instance


@pytest.fixture
def instance(tmp_path: Path, mlflow_template: Path) -> Path:
    target = tmp_path / "instance"
    shutil.copytree(mlflow_template, target)
    return target


@pytest.fixture
def app(instance: Path, tmp_path: Path) -> Flask:
    """A host app with MLOps and no registered model."""
    return build_app(instance, base_config(tmp_path))


@pytest.fixture
def served_instance(tmp_path: Path, registered_template: Path) -> Path:
    target = tmp_path / "served-instance"
    shutil.copytree(registered_template, target)
    return target


@pytest.fixture
def served_app(served_instance: Path, tmp_path: Path) -> Flask:
    """A host app whose diabetes model v1 is registered and in production."""
    return build_app(served_instance, base_config(tmp_path))


@pytest.fixture
def client(served_app: Flask) -> Any:
    return served_app.test_client()


@pytest.fixture
def example_client(served_instance: Path, tmp_path: Path) -> Any:
    from example_app import create_app

    cfg = base_config(tmp_path)
    cfg.pop("MLOPS_MODELS")
    return create_app(cfg, instance_path=str(served_instance)).test_client()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not come up in {timeout}s")


class Gunicorn:
    """A real gunicorn serving example_app.wsgi:app on a free loopback port."""

    def __init__(self, instance: Path, log_dir: Path, workers: int = 2, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.env = {
            **os.environ,
            "EXAMPLE_INSTANCE_PATH": str(instance),
            "MLOPS_LOG_DIR": str(log_dir),
            "MLOPS_API_TOKEN": f"{TOKEN}:admin,{READ_TOKEN}:read",
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            "GUNICORN_WORKERS": str(workers),
            "GUNICORN_ACCESSLOG": "",
            "GUNICORN_LOGLEVEL": "warning",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.app_module = "example_app.wsgi:app"
        self.output = log_dir.parent / f"gunicorn-{self.port}.out"  # a file, not a pipe: a chatty server never blocks

    def start(self) -> Gunicorn:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "example_app/gunicorn.conf.py", self.app_module],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )
        wait_http(f"{self.url}/mlops/api/health")
        return self

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> str:
        if self.proc is None:
            return ""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.output.read_text(errors="replace") if self.output.exists() else ""


@pytest.fixture(scope="module")  # per module that uses it
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One `mlflow server` for the module: SQLite backend, artifacts served from its own folder."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
         "--serve-artifacts"],
        stdout=log, stderr=subprocess.STDOUT, cwd=root,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=120)
        yield {"uri": f"http://127.0.0.1:{port}", "artifacts": root / "artifacts", "log": root / "server.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()  # reaped: an unreaped Popen is an unraisable ResourceWarning (an error under -W error)
        log.close()


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the server's request lines
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def gunicorn_factory(tmp_path: Path) -> Iterator[Callable[..., Gunicorn]]:
    started: list[Gunicorn] = []

    def start(instance: Path, workers: int = 2, env: dict[str, str] | None = None) -> Gunicorn:
        server = Gunicorn(instance, tmp_path / "logs", workers=workers, env=env).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
