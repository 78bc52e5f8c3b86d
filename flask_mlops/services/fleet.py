"""Fleet state: each worker reports what it serves; health and the API say where the fleet disagrees.

The serving reload loop calls `Reporter.report` after every check (on a load, a swap or a
failure at once; otherwise at most once per `MLOPS_RELOAD_INTERVAL`, as a heartbeat). A
worker is *live* while its heartbeat (database clock) is younger than `live_window_s`; a
live worker that knows the production version but serves another one (or none) — it could
not load it — makes the fleet `degraded`, naming the host. A worker that has not looked
since a promotion is only `updating`. Reporting never breaks serving: with the database
away, the error is logged once and the report skipped.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ..store import fleet as store
from ..store.base import utcnow
from ..store.models import PRODUCTION, Alias

if TYPE_CHECKING:
    from .state import MLOpsState

logger = logging.getLogger(__name__)


def live_window_s(state: MLOpsState) -> float:
    """A worker is live while its last report is younger than this (three reload intervals, at least 30 s)."""
    return max(3 * state.config.reload_interval, 30.0)


def expire_s(state: MLOpsState) -> float:
    """Rows silent for this long are deleted (a killed worker's, a scaled-down host's)."""
    return max(20 * live_window_s(state), 3600.0)


class Reporter:
    """One worker's fleet row writer (per app, per process: the worker id is renewed after a fork)."""

    def __init__(self, state: MLOpsState) -> None:
        self._state = state
        self._pid = 0
        self.worker = ""
        self.started_at = utcnow()
        self._last: tuple[Any, ...] | None = None
        self._last_at = 0.0
        self._failing = False
        self._lock = threading.Lock()

    def report(self, served: list[store.Served], *, force: bool = False) -> bool:
        """Write this worker's rows if they changed or a heartbeat is due; never raises."""
        with self._lock:
            if self._pid != os.getpid():
                self._pid, self.started_at = os.getpid(), utcnow()
                self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
                self._last = None
                atexit.register(self.leave)  # a clean exit leaves the fleet at once; a killed worker's rows go stale
            key = tuple((s.model, s.version, s.wanted, s.error) for s in served)
            beat = max(self._state.config.reload_interval, 1.0)
            if not force and key == self._last and time.monotonic() - self._last_at < 0.9 * beat:
                return False
            try:
                store.report(self._state.engine, self.worker, socket.gethostname(), os.getpid(), self.started_at, served,
                             expire_s=expire_s(self._state))
            except Exception as exc:  # the database is away: serving goes on; say so once
                if not self._failing:
                    logger.warning("fleet report failed (serving continues; retried every reload interval): %s", exc)
                self._failing = True
                return False
            if self._failing:
                logger.info("fleet report written again")
            self._failing, self._last, self._last_at = False, key, time.monotonic()
            return True

    def leave(self) -> None:
        if self._pid == os.getpid() and self.worker:
            try:
                store.leave(self._state.engine, self.worker)
            except Exception as exc:  # best effort: the row expires anyway
                logger.debug("fleet leave failed: %s", exc)


@dataclass(frozen=True)
class FleetStatus:
    status: str  # ok | degraded
    production: dict[str, int]
    members: list[dict[str, Any]]
    problems: list[dict[str, Any]] = field(default_factory=list)
    live_window_s: float = 0.0
    checked_at: datetime | None = None

    @property
    def hosts(self) -> list[str]:
        return sorted({p["host"] for p in self.problems})

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "hosts": self.hosts,
            "production": self.production,
            "problems": self.problems,
            "members": self.members,
            "live_window_s": self.live_window_s,
            "checked_at": store._iso(self.checked_at) if self.checked_at else None,
        }


def fleet_status(state: MLOpsState) -> FleetStatus:
    """Every reported worker, whether it is live, and which live ones serve something other than production."""
    rows, now = store.members(state.engine)
    with state.session() as session:
        production = {n: v for n, v in session.execute(select(Alias.model_name, Alias.version).where(Alias.alias == PRODUCTION)).all()}
    window = live_window_s(state)
    members: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    for row in rows:
        live = row.age_s <= window
        current = production.get(row.model)
        if not live:
            state_ = "stale"
        elif current is None or row.version == current:
            state_ = "ok"
        elif row.wanted == current:
            state_ = "cannot_load"  # it knows the production version and still serves another (or none)
        else:
            state_ = "updating"  # has not looked since the change (within one reload interval)
        entry = {**row.to_dict(), "live": live, "production": current, "state": state_}
        members.append(entry)
        if state_ == "cannot_load":
            problems.append({k: entry[k] for k in ("host", "pid", "worker", "model", "version", "production", "last_error")})
    return FleetStatus("degraded" if problems else "ok", production, members, problems, window, now)


HEALTH_CACHE_S = 5.0


def health_summary(state: MLOpsState) -> dict[str, Any] | None:
    """The fleet part of the public health check: status, hosts, what they serve (no logged data).

    Cached for a few seconds per app and process, since load balancers poll it; None while
    the database is away (health then answers from this worker alone).
    """
    at, value = state.extras.get("fleet_health", (-HEALTH_CACHE_S, None))
    if time.monotonic() - at < HEALTH_CACHE_S:
        return value  # type: ignore[no-any-return]
    try:
        status = fleet_status(state)
        value = {"status": status.status, "hosts": status.hosts,
                 "problems": [{k: p[k] for k in ("host", "model", "version", "production")} for p in status.problems]}
    except Exception as exc:  # database away
        logger.debug("fleet status unavailable: %s", exc)
        value = None
    state.extras["fleet_health"] = (time.monotonic(), value)
    return value
