"""`MLOps(app)` / `init_app(app)`: reads config once, keeps per-app state, mounts routes and CLI."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from .config import MLOpsConfig, load_config
from .errors import MLOpsError
from .store import BIND_KEY, Base, PredictionLogWriter

if TYPE_CHECKING:
    from .services.serving import ModelStore, Prediction, Router

logger = logging.getLogger(__name__)

EXTENSION_KEY = "mlops"


class MLOpsState:
    """Everything one app's MLOps owns. Lives in `app.extensions["mlops"]`, never in globals."""

    def __init__(self, ext: MLOps, app: Flask, config: MLOpsConfig, engine: Engine, db: SQLAlchemy) -> None:
        from .services.serving import ModelStore, Router
        from .store.day_cache import OpenDayCache

        self.ext = ext
        self.app_name = app.import_name
        self.config = config
        self.db = db
        self.engine = engine
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False)
        self.log_dir = Path(config.log_dir).resolve()
        self.log_writer = PredictionLogWriter(self.log_dir)
        self.open_days = OpenDayCache()  # today's log files, parsed incrementally by reads
        self.models: ModelStore = ModelStore(self)
        self.router: Router = Router(self)
        self.started_at = time.time()
        # per-feature state (scheduler, metrics registry, ...), keyed by feature name
        self.extras: dict[str, Any] = {}

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A short-lived session on the `mlops` bind, independent of the host's request session."""
        with self._sessions() as session:
            yield session

    def create_tables(self) -> None:
        """Create missing `mlops_*` tables; tolerate a concurrent creator (several workers)."""
        for attempt in range(3):
            try:
                from .store.leases import schema_lock

                with schema_lock(self.engine) as conn:  # PostgreSQL: one creator at a time
                    Base.metadata.create_all(conn, checkfirst=True)
                return
            except (OperationalError, ProgrammingError) as exc:  # lost a race with another worker
                if attempt == 2:
                    raise
                logger.debug("create_all raced (%s); retrying", exc)
                time.sleep(0.2 * (attempt + 1))


def get_state(app: Flask | None = None) -> MLOpsState:
    """The MLOps state of `app` (default: the current app)."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        return app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]
    except KeyError:
        raise MLOpsError(
            "MLOps is not initialised on this app: call MLOps(app) or mlops.init_app(app)"
        ) from None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _bind_engine(app: Flask, uri: str) -> tuple[SQLAlchemy, Engine]:
    """The engine of the `mlops` bind, managed by Flask-SQLAlchemy.

    A host that already registered its own `SQLAlchemy()` keeps it: the bind is added to
    that instance. A host without one gets a private instance that is not left in
    `app.extensions["sqlalchemy"]`, so the host can still register its own later.
    """
    options: dict[str, Any] = {"url": uri, "pool_pre_ping": True}
    if uri.startswith("sqlite"):
        options["connect_args"] = {"timeout": 30, "check_same_thread": False}
    binds = app.config.setdefault("SQLALCHEMY_BINDS", {})
    binds.setdefault(BIND_KEY, dict(options))
    host_db = app.extensions.get("sqlalchemy")
    if host_db is not None:
        db = host_db
        engines = db._app_engines.setdefault(app, {})
        if BIND_KEY not in engines:  # the host initialised its db before MLOps: add our bind
            db._make_metadata(BIND_KEY)
            db._apply_driver_defaults(options, app)
            engines[BIND_KEY] = db._make_engine(BIND_KEY, options, app)
    else:
        db = SQLAlchemy(add_models_to_shell=False)
        db.init_app(app)
        app.extensions.pop("sqlalchemy", None)
    with app.app_context():
        engine = db._app_engines[app][BIND_KEY]
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return db, engine


class MLOps:
    """The flask-mlops extension.

    ``mlops = MLOps(app)`` or ``mlops = MLOps(); mlops.init_app(app)``. Keyword options
    override ``MLOPS_*`` config keys (``MLOps(app, log_dir="/var/log/mlops")``).
    """

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        self._options: Mapping[str, Any] = options
        #: host-provided authentication: ``f(request) -> role | (role, who) | None`` (see services/auth.py)
        self.auth_handler: Callable[..., str | tuple[str, str] | None] | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError("MLOps is already registered on this app; use that instance")
        config = load_config(app.config, app.instance_path, self._options)
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        db, engine = _bind_engine(app, config.database_uri or "")
        state = MLOpsState(self, app, config, engine, db)
        app.extensions[EXTENSION_KEY] = state
        state.create_tables()
        from .services.ratelimit import install as install_limiter

        install_limiter(state)  # a wrong MLOPS_RATELIMIT_STORAGE_URI fails here, at start-up

        from . import jobs  # noqa: F401  (registers the built-in scheduled jobs)
        from .api.blueprint import make_blueprint
        from .cli.group import load_commands

        app.register_blueprint(make_blueprint(), url_prefix=config.url_prefix)
        app.cli.add_command(load_commands())
        if config.load_on_start:
            state.models.refresh()
        if config.scheduler_enabled:  # built (schedules validated) now; started in the serving process
            from .services.scheduler import install

            install(app, state)

    # -- host-facing API ------------------------------------------------------------
    def state(self, app: Flask | None = None) -> MLOpsState:
        return get_state(app)

    def track(self, model: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator for a prediction view: logs one record per request (see tracking.py)."""
        from .services.tracking import track

        return track(self, model, **options)

    def predict(
        self, name: str, features: Mapping[str, Any], *, unit_id: str | None = None, app: Flask | None = None
    ) -> Prediction:
        """Predict with the version this unit is routed to (production or an A/B variant)."""
        from .services.serving import predict

        return predict(get_state(app), name, features, unit_id=unit_id)

    def register(self, name: str, estimator: Any, *, app: Flask | None = None, **kwargs: Any) -> Any:
        """Register a fitted estimator as a new version (see registry.register)."""
        from .services.registry import register

        return register(get_state(app), name, estimator, **kwargs)

    def train(self, name: str, data: Any = None, *, target: str | None = None, app: Flask | None = None, **kwargs: Any) -> Any:
        """Train (CV + selection), register and (if it passes the gates) promote a model."""
        from .services.lifecycle import train_and_register

        return train_and_register(get_state(app), name, data, target=target, **kwargs)
