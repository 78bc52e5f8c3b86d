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
                with schema_lock(self.engine) as conn:  # PostgreSQL: one creator at a time
                    Base.metadata.create_all(conn, checkfirst=True)
                    add_missing_columns(conn)  # columns newer releases added to existing tables
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
