"""`MLOpsState`, everything one app's MLOps owns, and `get_state(app)` to find it.

It lives in the services layer so that services and adapters can reach it without importing
`extension.py`, which sits on top and mounts them (see docs/architecture.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from flask import Flask, current_app
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from ..config import MLOpsConfig
from ..errors import MLOpsError
from ..store import Base, PredictionLogWriter
from ..store.availability import is_unavailable
from ..store.availability import status as db_status
from ..store.day_cache import OpenDayCache
from ..store.leases import schema_lock
from ..store.migrate import add_missing_columns
from .serving import ModelStore, Router

logger = logging.getLogger(__name__)

EXTENSION_KEY = "mlops"


class HostHooks(Protocol):
    """What services read from the `MLOps` instance: the host's hooks."""

    auth_handler: Callable[..., str | tuple[str, str] | None] | None


class MLOpsState:
    """Everything one app's MLOps owns. Lives in `app.extensions["mlops"]`, never in globals."""

    def __init__(self, ext: HostHooks, app: Flask, config: MLOpsConfig, engine: Engine) -> None:
        self.ext = ext
        self.config = config
        self.engine = engine
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False)
        self.log_dir = Path(config.log_dir).resolve()
        self.log_writer = PredictionLogWriter(self.log_dir, config.log_writer_id)
        self.open_days = OpenDayCache()  # today's log files, parsed incrementally by reads
        self.models: ModelStore = ModelStore(self)
        self.router: Router = Router(self)
        self.started_at = time.time()
        self.schema_ready = False  # set once the tables exist (created here, by init-db, or lazily)
        self._schema_tried = 0.0
        # per-feature state (scheduler, metrics registry, ...), keyed by feature name
        self.extras: dict[str, Any] = {}

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A short-lived session on the `mlops` bind, independent of the host's request session."""
        if not self.schema_ready:
            self.ensure_schema()
        with self._sessions() as session:
            yield session

    def ensure_schema(self, *, retry_after_s: float = 1.0) -> bool:
        """Create the tables unless done; never raises. With the database unreachable (at boot
        or later) it is tried again on the next use, at most every `retry_after_s` seconds."""
        if self.schema_ready:
            return True
        now = time.monotonic()
        if self._schema_tried and now - self._schema_tried < retry_after_s:
            return False
        self._schema_tried = now
        try:
            self.create_tables()
        except Exception as exc:
            if not is_unavailable(exc):
                logger.exception("could not create the mlops tables")
                return False
            db_status(self).failed(exc)
            logger.warning("mlops tables not checked (database unreachable); retried on next use, or run `flask mlops init-db`")
            return False
        return True

    def create_tables(self) -> None:
        """Create missing `mlops_*` tables; tolerate a concurrent creator (several workers)."""
        for attempt in range(3):
            try:
                with schema_lock(self.engine) as conn:  # PostgreSQL: one creator at a time
                    Base.metadata.create_all(conn, checkfirst=True)
                    add_missing_columns(conn)  # columns newer releases added to existing tables
                self.schema_ready = True
                return
            except (OperationalError, ProgrammingError) as exc:  # lost a race with another worker
                if attempt == 2 or _unreachable(self.engine):  # ... unless there is no database at all
                    raise
                logger.debug("create_all raced (%s); retrying", exc)
                time.sleep(0.2 * (attempt + 1))


def _unreachable(engine: Engine) -> bool:
    """No connection at all (not a creation race): nothing to retry for."""
    try:
        engine.connect().close()
    except Exception:
        return True
    return False


def get_state(app: Flask | None = None) -> MLOpsState:
    """The MLOps state of `app` (default: the current app)."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        return app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]
    except KeyError:
        raise MLOpsError(
            "MLOps is not initialised on this app: call MLOps(app) or mlops.init_app(app)"
        ) from None
