"""The extension's shape: per-app state, refusing double registration, hosts with/without Flask-SQLAlchemy."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import inspect, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from flask_mlops import MLOps, get_state
from flask_mlops.errors import ConfigError, MLOpsError

from .conftest import SAMPLE_ROW, base_config, build_app, logged_records


def test_init_app_later_and_state_in_extensions(instance: Path, tmp_path: Path) -> None:
    mlops = MLOps()
    app = Flask("late", instance_path=str(instance))
    app.config.update(base_config(tmp_path))
    mlops.init_app(app)
    state = app.extensions["mlops"]
    assert get_state(app) is state and mlops.state(app) is state
    assert state.config.model_names == ["diabetes"]
    assert "mlops" in app.blueprints
    assert "mlops" in app.cli.commands


def test_second_registration_is_refused(app: Flask) -> None:
    with pytest.raises(RuntimeError, match="already registered"):
        MLOps(app)


def test_bad_config_fails_in_init_app(instance: Path, tmp_path: Path) -> None:
    app = Flask("bad", instance_path=str(instance))
    app.config.update(base_config(tmp_path, MLOPS_LOG_SAMPLE_RATE=2))
    with pytest.raises(ConfigError, match="MLOPS_LOG_SAMPLE_RATE"):
        MLOps(app)


def test_state_outside_an_app_is_a_clear_error() -> None:
    with pytest.raises(MLOpsError, match="not initialised"):
        get_state(Flask("plain"))


def test_two_apps_in_one_process_share_nothing(served_app: Flask, tmp_path: Path, instance: Path) -> None:
    other = build_app(instance, base_config(tmp_path / "other", MLOPS_URL_PREFIX="/ops"), name="other")
    a, b = get_state(served_app), get_state(other)
    assert a is not b
    assert a.config is not b.config and a.config.url_prefix == "/mlops" and b.config.url_prefix == "/ops"
    assert a.engine is not b.engine and str(a.engine.url) != str(b.engine.url)
    assert a.log_writer is not b.log_writer and a.log_dir != b.log_dir
    assert a.models is not b.models
    # app A serves v1; app B has nothing registered: a request to B must not see A's model
    assert served_app.test_client().post("/predict", json=SAMPLE_ROW).status_code == 200
    r = other.test_client().post("/predict", json=SAMPLE_ROW)
    assert r.status_code == 503 and r.json["error"]["code"] == "model_not_ready"
    assert logged_records(tmp_path / "other" / "logs")
    assert other.test_client().get("/ops/api/health").status_code == 200
    assert other.test_client().get("/mlops/api/health").status_code == 404


class HostBase(DeclarativeBase):
    pass


class Customer(HostBase):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


@pytest.mark.parametrize("order", ["host_first", "mlops_first"])
def test_host_with_its_own_flask_sqlalchemy(instance: Path, tmp_path: Path, order: str) -> None:
    host_db = SQLAlchemy(model_class=HostBase)
    app = Flask("withdb", instance_path=str(instance))
    app.config.update(base_config(tmp_path), SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'host.db'}")
    if order == "host_first":
        host_db.init_app(app)
        MLOps(app)
    else:
        MLOps(app)
        host_db.init_app(app)  # the host can still register its own instance afterwards
    state = get_state(app)
    with app.app_context():
        host_db.create_all(bind_key=None)
        host_db.session.add(Customer(name="ada"))
        host_db.session.commit()
        host_tables = set(inspect(host_db.engine).get_table_names())
    mlops_tables = set(inspect(state.engine).get_table_names())
    assert "customers" in host_tables and not any(t.startswith("mlops_") for t in host_tables)
    assert {"mlops_model_versions", "mlops_aliases", "mlops_audit_events"} <= mlops_tables
    assert "customers" not in mlops_tables
    assert str(state.engine.url).endswith("mlops.db")
    with state.session() as session:
        assert session.execute(text("select count(*) from mlops_model_versions")).scalar() == 0


def test_host_without_flask_sqlalchemy(app: Flask) -> None:
    assert "sqlalchemy" not in app.extensions  # our private instance does not claim the slot
    tables = set(inspect(get_state(app).engine).get_table_names())
    assert "mlops_audit_events" in tables


def test_mlops_database_uri_is_used(instance: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    app = build_app(instance, base_config(tmp_path, MLOPS_DATABASE_URI=uri))
    assert str(get_state(app).engine.url) == uri
    assert (tmp_path / "elsewhere.db").exists()


def test_a_relative_sqlite_uri_lives_in_the_instance_folder(instance: Path, tmp_path: Path) -> None:
    """The engine is SQLAlchemy's own (no Flask-SQLAlchemy internals); URIs mean what they mean there."""
    app = build_app(instance, base_config(tmp_path, MLOPS_DATABASE_URI="sqlite:///relative-mlops.db"))
    engine = get_state(app).engine
    assert engine.url.database == str(instance / "relative-mlops.db")
    assert (instance / "relative-mlops.db").exists()
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
