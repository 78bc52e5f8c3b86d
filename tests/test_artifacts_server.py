"""Artifacts every host can load: a real `mlflow server` with proxied artifacts, two app instances as two hosts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from flask_mlops.config import load_config
from flask_mlops.errors import ArtifactStoreUnavailable
from flask_mlops.services.registry import artifact_location, check_artifact_store, mlflow_session
from flask_mlops.services.state import get_state

from .conftest import AUTH, FEATURE_NAMES, SAMPLE_ROW, base_config, build_app, diabetes_frame, quick_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _host(folder: Path, server: dict[str, Any], db: Path, **extra: Any) -> Any:
    """One host: its own instance folder (MLflow client state, model cache), the shared `mlops` database and server."""
    instance = folder / "instance"
    instance.mkdir(parents=True)
    return build_app(instance, base_config(folder, MLOPS_TRACKING_URI=server["uri"], MLOPS_DATABASE_URI=f"sqlite:///{db}", **extra),
                     name=folder.name)


def test_artifact_roots_are_taken_as_mlflow_takes_them(tmp_path: Path) -> None:
    assert artifact_location("mlflow-artifacts:/") == "mlflow-artifacts:/"
    assert artifact_location("mlflow-artifacts:/team/models") == "mlflow-artifacts:/team/models"
    assert artifact_location("s3://bucket/prefix") == "s3://bucket/prefix"
    assert artifact_location(str(tmp_path / "arts")) == (tmp_path / "arts").resolve().as_uri()
    remote = load_config({"MLOPS_TRACKING_URI": "https://mlflow.example"}, str(tmp_path), environ={})
    assert remote.artifact_root == "mlflow-artifacts:/"  # with a server: its proxied store, so every host can load
    chosen = load_config({"MLOPS_TRACKING_URI": "https://mlflow.example", "MLOPS_ARTIFACT_ROOT": "s3://b/p"}, str(tmp_path), environ={})
    assert chosen.artifact_root == "s3://b/p"
    assert load_config({}, str(tmp_path), environ={}).artifact_root == str(tmp_path / "mlartifacts")


def test_a_version_registered_on_one_host_is_served_by_another(mlflow_server: dict[str, Any], tmp_path: Path) -> None:
    db = tmp_path / "mlops.db"
    a = _host(tmp_path / "host-a", mlflow_server, db)
    b = _host(tmp_path / "host-b", mlflow_server, db)
    sa, sb = get_state(a), get_state(b)
    assert check_artifact_store(sa).startswith("mlflow-artifacts:/")
    info = a.extensions["test_mlops"].register(
        "diabetes", quick_model(), app=a, reference=diabetes_frame()[FEATURE_NAMES], threshold=0.5,
        metrics={"accuracy": 0.77, "f1": 0.66, "roc_auc": 0.83}, promote=True,
    )
    with mlflow_session(sa) as mlflow:
        run = mlflow.get_run(info.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert list(mlflow_server["artifacts"].rglob("model.joblib"))  # the file lives with the server, not on host a
    assert not (tmp_path / "host-b" / "instance" / "mlops_models").exists()
    sb.models.refresh()  # host b fetches v1 through the server, checks its sha256, serves it
    assert sb.models.production_versions() == {"diabetes": info.version}
    answer = b.test_client().post("/predict", json=SAMPLE_ROW)
    assert answer.status_code == 200 and answer.get_json()["model_version"] == info.version
    assert (tmp_path / "host-b" / "instance" / "mlops_models" / "diabetes" / str(info.version) / "model.joblib").exists()
    health = b.test_client().get("/mlops/api/fleet", headers=AUTH).get_json()
    assert health["status"] == "ok" and {m["version"] for m in health["members"] if m["live"]} == {info.version}


def test_an_unwritable_artifact_store_fails_before_training(mlflow_server: dict[str, Any], tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the artifact folder should be")
    app = _host(tmp_path / "host-c", mlflow_server, tmp_path / "mlops.db", MLOPS_ARTIFACT_ROOT=str(blocker / "artifacts"),
                MLOPS_EXPERIMENT_NAME="unwritable")
    progress: list[str] = []
    started = time.monotonic()
    with pytest.raises(ArtifactStoreUnavailable, match="cannot be written from this host") as caught:
        app.extensions["test_mlops"].train("diabetes", app=app, progress=progress.append)
    assert progress == []  # training never started
    assert caught.value.details["artifact_location"].endswith("not-a-folder/artifacts")
    assert time.monotonic() - started < 60
