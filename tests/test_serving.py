"""Serving from the registry: sha256 verification, hot swap on alias change, not-ready errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from flask_mlops import get_state
from flask_mlops.errors import ModelIntegrityError
from flask_mlops.services.registry import list_versions, set_alias
from flask_mlops.services.serving import cache_path, load_version
from flask_mlops.store.models import AuditEvent

from .conftest import SAMPLE_ROW, base_config, build_app, quick_model


def test_tampered_artifact_is_refused(served_instance: Path, tmp_path: Path) -> None:
    app = build_app(served_instance, base_config(tmp_path))
    state = get_state(app)
    path = cache_path(state, "diabetes", 1)
    path.write_bytes(path.read_bytes() + b"\x00")  # one byte appended
    with pytest.raises(ModelIntegrityError, match="sha256"):
        load_version(state, "diabetes", 1)
    # a fresh worker refuses to serve it: 503 not-ready rather than an unverified model
    worker = build_app(served_instance, base_config(tmp_path / "w2"))
    r = worker.test_client().post("/predict", json=SAMPLE_ROW)
    assert r.status_code == 503
    assert "sha256" in (get_state(worker).models.last_error or "")


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
