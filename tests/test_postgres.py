"""Everything that works on SQLite works on PostgreSQL: the mlops bind, the registry audit, MLflow's store.

`db_url` (tests/pg.py) runs each test on SQLite and on a fresh PostgreSQL database; the
MLflow test points MLflow's backend store itself at PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import inspect, select

from flask_mlops.extension import get_state
from flask_mlops.services.lifecycle import register_model
from flask_mlops.services.registry import alias_version, list_versions, register, set_alias
from flask_mlops.store import Base
from flask_mlops.store.models import AuditEvent

from .conftest import FEATURE_NAMES, SAMPLE_ROW, base_config, build_app, diabetes_frame, logged_records, quick_model


def _app(instance: Path, tmp_path: Path, db_url: str, **extra: Any) -> Flask:
    return build_app(instance, base_config(tmp_path, MLOPS_DATABASE_URI=db_url, **extra))


def test_extension_tables_on_the_bind(instance: Path, tmp_path: Path, db_url: str) -> None:
    app = _app(instance, tmp_path, db_url)
    state = get_state(app)
    assert state.engine.dialect.name == db_url.split(":")[0].split("+")[0]
    tables = set(inspect(state.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables  # every mlops_* table, whoever declared it
    assert all(name.startswith("mlops_") for name in Base.metadata.tables)
    # a second app (another worker) on the same database finds them and creates nothing twice
    other = build_app(instance, base_config(tmp_path / "w2", MLOPS_DATABASE_URI=db_url), name="w2")
    assert set(inspect(get_state(other).engine).get_table_names()) == tables
    state.engine.dispose()
    get_state(other).engine.dispose()


def test_registry_audit_and_serving(instance: Path, tmp_path: Path, db_url: str) -> None:
    """register → promote → register → promote → roll back, all audited; the JSONL log is unaffected."""
    app = _app(instance, tmp_path, db_url)
    state = get_state(app)
    reference = diabetes_frame()[FEATURE_NAMES]
    v1 = register_model(state, "diabetes", quick_model(), reference=reference, threshold=0.5, promote=True, force=True, actor="alice", reason="first")
    v2 = register(state, "diabetes", quick_model(seed=1), threshold=0.5, actor="bob")
    previous = set_alias(state, "diabetes", "production", v2.version, actor="bob", reason="better", action="promote")
    assert previous == v1.version and alias_version(state, "diabetes") == v2.version
    set_alias(state, "diabetes", "production", v1.version, actor="carol", reason="regression", action="rollback")
    assert [v.version for v in list_versions(state, "diabetes")] == [v2.version, v1.version]
    with state.session() as session:
        events = session.execute(
            select(AuditEvent.action, AuditEvent.version, AuditEvent.previous_version, AuditEvent.actor).order_by(AuditEvent.id)
        ).all()
    assert [tuple(e) for e in events] == [
        ("register", 1, None, "alice"),
        ("promote", 1, None, "alice"),
        ("register", 2, None, "bob"),
        ("promote", 2, 1, "bob"),
        ("rollback", 1, 2, "carol"),
    ]
    # serving and the prediction log do not care which database the bind is on
    response = app.test_client().post("/predict", json=SAMPLE_ROW)
    assert response.status_code == 200 and response.headers["X-Model-Version"] == "1"
    assert [r["id"] for r in logged_records(tmp_path / "logs")] == [response.headers["X-Prediction-ID"]]
    state.engine.dispose()


@pytest.mark.postgres
@pytest.mark.integration
@pytest.mark.slow
def test_mlflow_backend_store_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    """MLOPS_TRACKING_URI=postgresql+psycopg://...: MLflow migrates its schema there and the registry works."""
    instance = tmp_path / "instance"
    app = build_app(instance, base_config(tmp_path, MLOPS_TRACKING_URI=pg_url, MLOPS_DATABASE_URI=pg_url))
    state = get_state(app)
    try:
        _mlflow_on_postgresql(app, state, pg_url)
    finally:
        state.engine.dispose()
        _dispose_mlflow_engines(pg_url)


def _dispose_mlflow_engines(url: str) -> None:
    """MLflow caches one engine per URI in class attributes; close ours before the database is dropped."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    for store in (TrackingStore, RegistryStore):
        engine = store._engine_map.pop(url, None)
        if engine is not None:
            engine.dispose()


def _mlflow_on_postgresql(app: Flask, state: Any, pg_url: str) -> None:
    import mlflow
    from sqlalchemy import create_engine, text

    info = register_model(state, "diabetes", quick_model(), reference=diabetes_frame()[FEATURE_NAMES], threshold=0.5, promote=True, force=True)
    assert info.version == 1 and info.aliases == ("production",)
    client = mlflow.MlflowClient(tracking_uri=pg_url, registry_uri=pg_url)
    assert str(client.get_model_version_by_alias("diabetes", "production").version) == "1"
    run = client.get_run(info.run_id)
    assert run.data.tags["mlops.sha256"] == info.sha256
    engine = create_engine(pg_url)
    with engine.connect() as conn:  # MLflow's own tables and ours share the database without clashing
        tables = set(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
    engine.dispose()
    assert {"experiments", "runs", "registered_models", "model_versions", "mlops_model_versions", "mlops_aliases"} <= tables
    assert app.test_client().post("/predict", json=SAMPLE_ROW).status_code == 200
