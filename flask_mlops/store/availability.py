"""Is the `mlops` database reachable? Classify connection failures and remember outages.

Serving never needs the database (models are in memory, the log is a file), so an outage
must not take a worker down: callers that need the database get a 503
(`database_unavailable`, mapped centrally from the errors below), health says `degraded`
with the reason, and everything works again when the database answers, without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)


def is_unavailable(exc: BaseException) -> bool:
    """True for "cannot reach / use the database right now" (connection refused, reset, pool
    exhausted, SQLite locked), as opposed to a bug in a query."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated) or isinstance(exc, (OperationalError, InterfaceError))
    return False


class DatabaseStatus:
    """One app's view of its database: since when it is down (None = up), probed cheaply."""

    PROBE_EVERY_S = 2.0

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self.last_error: str | None = None
        self._probed_at = 0.0

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if self.down_since is None:
                self.down_since = time.time()
                logger.error("the mlops database is unreachable: %s", first_line(exc))
            self.last_error = first_line(exc)

    def ok(self) -> None:
        if self.down_since is not None:
            with self._lock:
                if self.down_since is not None:
                    logger.warning("the mlops database is reachable again (down %.1fs)", time.time() - self.down_since)
                self.down_since = None

    def probe(self, max_age_s: float | None = None) -> bool:
        """Reachable? A `SELECT 1` at most every `max_age_s` seconds per process."""
        now = time.monotonic()
        if now - self._probed_at < (self.PROBE_EVERY_S if max_age_s is None else max_age_s):
            return self.down_since is None
        self._probed_at = now
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # whatever keeps a `SELECT 1` from answering counts as down
            self.failed(exc)
            return False
        self.ok()
        return True


def first_line(exc: BaseException) -> str:
    """The driver's one-line reason (no SQL, no traceback)."""
    message = str(getattr(exc, "orig", None) or exc).strip()
    return (message.splitlines() or [type(exc).__name__])[0][:300]


def status(state: Any) -> DatabaseStatus:
    """The app's DatabaseStatus (in `state.extras`, created on first use)."""
    found = state.extras.get("database")
    if found is None:
        found = state.extras.setdefault("database", DatabaseStatus(state.engine))
    return found  # type: ignore[no-any-return]


__all__ = ["DatabaseStatus", "first_line", "is_unavailable", "status"]
