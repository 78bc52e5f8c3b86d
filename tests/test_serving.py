"""Serving from the registry: sha256 verification, hot swap on alias change, not-ready errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from flask_mlops import get_state
from flask_mlops.errors import ModelIntegrityError, ModelUnavailable
from flask_mlops.services.registry import list_versions, set_alias
from flask_mlops.services.serving import cache_path, load_version
from flask_mlops.store import artifacts
from flask_mlops.store.models import AuditEvent

from .conftest import SAMPLE_ROW, base_config, build_app, quick_model


def registry_copy(app: Flask, run_id: str) -> Path:
    """Where MLflow keeps a run's serving artifact (a local file store)."""
    from mlflow.tracking import MlflowClient

    uri = MlflowClient(tracking_uri=get_state(app).config.tracking_uri).get_run(run_id).info.artifact_uri
    return Path(uri.removeprefix("file://")) / "serving" / "model.joblib"


def test_tampered_cache_is_replaced_from_the_registry(served_instance: Path, tmp_path: Path) -> None:
    app = build_app(served_instance, base_config(tmp_path))
    state = get_state(app)
    path = cache_path(state, "diabetes", 1)
    good = path.read_bytes()
    path.write_bytes(good + b"\x00")  # one byte appended
    served = load_version(state, "diabetes", 1)  # the bad copy is removed and fetched again
    assert served.version == 1 and path.read_bytes() == good


def test_tampered_everywhere_is_refused_without_paths(served_app: Flask, tmp_path: Path) -> None:
    state = get_state(served_app)
    info = served_app.extensions["test_mlops"].register("diabetes", quick_model(seed=2), app=served_app)
    path = cache_path(state, "diabetes", info.version)
    for copy in (path, registry_copy(served_app, info.run_id)):
        copy.write_bytes(copy.read_bytes() + b"\x00")
    with pytest.raises(ModelIntegrityError, match="sha256") as caught:
        load_version(state, "diabetes", info.version)
    assert str(tmp_path) not in str(caught.value.to_dict())
    assert not path.exists()  # a copy that fails its check does not stay in the cache
    # promoting it, or testing it in an experiment, is refused naming it; production stays v1
    admin = {"Authorization": "Bearer admin-token-for-tests"}
    c = served_app.test_client()
    r = c.post("/mlops/api/models/diabetes/promote", json={"version": info.version, "force": True}, headers=admin)
    assert r.status_code == 422 and r.json["error"]["details"] == {"model": "diabetes", "version": info.version}, r.json
    assert str(tmp_path) not in r.get_data(as_text=True)
    r = c.post("/mlops/api/experiments", json={"model": "diabetes", "treatment_version": info.version, "share": 0.5}, headers=admin)
    assert r.status_code == 422 and f"v{info.version}" in r.json["error"]["message"], r.json
    assert c.post("/predict", json=SAMPLE_ROW).headers["X-Model-Version"] == "1"
    # remembered as failed: asking again neither fetches nor hashes, and callers learn no internals
    calls: list[Path] = []
    artifacts.after_read = calls.append
    try:
        for _ in range(3):
            with pytest.raises(ModelUnavailable) as unavailable:
                state.models.get("diabetes", info.version)
            assert "sha256" not in unavailable.value.message
    finally:
        artifacts.after_read = None
    assert calls == []


def test_missing_cache_is_fetched_from_the_mlflow_artifact_store(served_instance: Path, tmp_path: Path) -> None:
    app = build_app(served_instance, base_config(tmp_path))
    state = get_state(app)
    path = cache_path(state, "diabetes", 1)
    path.unlink()
    served = load_version(state, "diabetes", 1)  # downloads from MLflow, then verifies
    assert path.exists() and served.version == 1


def test_promote_swaps_the_served_version_without_restart(served_app: Flask) -> None:
    state = get_state(served_app)
    mlops = served_app.extensions["test_mlops"]
    c = served_app.test_client()
    assert c.post("/predict", json=SAMPLE_ROW).headers["X-Model-Version"] == "1"
    info = mlops.register("diabetes", quick_model(seed=3), app=served_app, threshold=0.3)
    assert info.version == 2 and info.aliases == ()
    assert c.post("/predict", json=SAMPLE_ROW).headers["X-Model-Version"] == "1"  # registered, not promoted
    previous = set_alias(state, "diabetes", "production", 2, actor="tester", reason="better f1", action="promote")
    assert previous == 1
    r = c.post("/predict", json=SAMPLE_ROW)
    assert r.headers["X-Model-Version"] == "2" and r.json["model_version"] == 2
    # another worker (same databases, separate memory) picks it up on its next refresh
    other = build_app(Path(served_app.instance_path), base_config(Path(served_app.instance_path).parent / "o"))
    assert get_state(other).models.production_versions() == {"diabetes": 2}
    with state.session() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.model_name == "diabetes").order_by(AuditEvent.id)).all()
    assert [(e.action, e.version, e.previous_version) for e in events][-1] == ("promote", 2, 1)
    assert events[-1].actor == "tester" and events[-1].reason == "better f1"
    assert [v.version for v in list_versions(state, "diabetes")] == [2, 1]
    assert list_versions(state, "diabetes")[0].aliases == ("production",)


def test_threshold_recorded_at_registration_is_used(served_app: Flask) -> None:
    state = get_state(served_app)
    mlops = served_app.extensions["test_mlops"]
    info = mlops.register("diabetes", quick_model(), app=served_app, threshold=0.999, promote=True, force=True)
    result = mlops.predict("diabetes", SAMPLE_ROW, app=served_app)
    assert result.version == info.version and result.probability is not None
    assert result.prediction == (1 if result.probability >= 0.999 else 0) == 0
    assert state.models.get("diabetes").threshold == 0.999


def test_no_production_version_is_a_503_with_a_hint(app: Flask) -> None:
    r = app.test_client().post("/predict", json=SAMPLE_ROW)
    assert r.status_code == 503
    assert r.json["error"]["code"] == "model_not_ready"
    assert "flask mlops train --name diabetes" in r.json["error"]["message"]


def test_unknown_model_name(served_app: Flask) -> None:
    mlops = served_app.extensions["test_mlops"]
    with served_app.app_context(), pytest.raises(Exception) as info:
        mlops.predict("nope", SAMPLE_ROW)
    err: Any = info.value
    assert err.code == 404 and err.details == {"known_models": ["diabetes"]}


def test_a_worker_serves_without_importing_mlflow_or_torch(served_instance: Path, tmp_path: Path) -> None:
    """Start-up and the request path of a worker stay lean: no MLflow, no torch."""
    import json
    import subprocess
    import sys

    script = f"""
import sys, json
from example_app import create_app
app = create_app({{"MLOPS_LOG_DIR": {str(tmp_path / "logs")!r}, "MLOPS_RELOAD_INTERVAL": 0}}, instance_path={str(served_instance)!r})
r = app.test_client().post("/predict", json={SAMPLE_ROW!r})
print(json.dumps({{"status": r.status_code, "mlflow": "mlflow" in sys.modules, "torch": "torch" in sys.modules}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"status": 200, "mlflow": False, "torch": False}
