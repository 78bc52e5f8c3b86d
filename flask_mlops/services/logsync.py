"""The fleet's log through an object store (`MLOPS_LOG_STORE`): ship this host's files, pull the others'.

Every host ships: under gunicorn (`flask_mlops.gunicorn`), every worker runs a `LogSync` thread,
and one of them per host — the holder of a host-local `flock`, taken over by another worker
when it exits — ships this host's files and pulls the others' every `MLOPS_LOG_SYNC_INTERVAL_S`
(so each host's API and dashboard see the fleet), and ships once more on a clean exit. Elsewhere
`flask mlops logs ship` / `pull` from cron do the same. The scheduled jobs that read the log
(aggregates, drift, Parquet) pull first, so the lease holder reads what was shipped up to then.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from ..store.logstore import LogStore, PullResult, ShipResult, backlog, open_store, shown, try_leader
from ..store.logstore import pull as pull_files
from ..store.logstore import purge_older_than as purge_store
from ..store.logstore import ship as ship_files
from .prometheus import record_log_store

if TYPE_CHECKING:
    from .state import MLOpsState

logger = logging.getLogger(__name__)

_STORE_KEY = "log_store"
_SYNC_KEY = "log_sync"


def log_store(state: MLOpsState) -> LogStore | None:
    """The app's resolved log store (once per app), or None without `MLOPS_LOG_STORE`."""
    if not state.config.log_store:
        return None
    store = state.extras.get(_STORE_KEY)
    if store is None:
        store = state.extras[_STORE_KEY] = open_store(state.config.log_store, state.config.log_store_options)
    return store  # type: ignore[no-any-return]


def ship(state: MLOpsState) -> ShipResult | None:
    """Upload what this host's log files grew by (None without a store)."""
    store = log_store(state)
    if store is None:
        return None
    try:
        result = ship_files(state.log_dir, store, state.log_writer.writer)
    except Exception:
        record_log_store(state, "ship", 0, ok=False)
        raise
    record_log_store(state, "ship", result.bytes, ok=not result.problems)
    if result.segments:
        logger.info("log store: shipped %d segment(s), %d bytes of %d file(s)", result.segments, result.bytes, result.shipped_files)
    return result


def pull(state: MLOpsState, *, days: int | None = None) -> PullResult | None:
    """Bring the other hosts' files of the last `days` UTC days (default `MLOPS_LOG_PULL_DAYS`, never
    past the retention) into the local log folder (None without a store)."""
    store = log_store(state)
    if store is None:
        return None
    today = datetime.now(timezone.utc).date()
    since = today - timedelta(days=(days or state.config.log_pull_days) - 1)
    if state.config.log_retention_days:
        since = max(since, today - timedelta(days=state.config.log_retention_days))  # never bring back what retention deleted
    try:
        result = pull_files(state.log_dir, store, writer=state.log_writer.writer, since=since)
    except Exception:
        record_log_store(state, "pull", 0, ok=False)
        raise
    record_log_store(state, "pull", result.bytes, ok=not result.problems)
    if result.bytes:
        logger.info("log store: pulled %d bytes into %d file(s)", result.bytes, result.grown)
    return result


def status(state: MLOpsState) -> list[dict[str, Any]]:
    """This host's log files with their size and what was shipped of them (oldest day first)."""
    return [{"file": rel, "bytes": size, "shipped": done, "pending": max(size - done, 0)}
            for rel, size, done in backlog(state.log_dir, state.log_writer.writer)]


def purge(state: MLOpsState, days: int) -> list[str]:
    """Retention in the store: the days older than `days` days (the lease holder's `log_retention` job)."""
    store = log_store(state)
    return [] if store is None else purge_store(store, days, today=datetime.now(timezone.utc).date())


class LogSync:
    """One per worker; the one holding the host's sync lock ships and pulls every interval."""

    def __init__(self, state: MLOpsState) -> None:
        self.state = state
        self.interval = state.config.log_sync_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._leader: int | None = None  # the lock's descriptor while this process is the host's shipper
        self._warned = 0.0

    @property
    def leader(self) -> bool:
        return self._leader is not None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mlops-log-sync", daemon=True)
            self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop; the host's shipper ships once more first (within `timeout`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self.tick()
            if self._stop.wait(self.interval):
                break
        if self.leader:
            self._guarded(ship, self.state)  # what the workers wrote since the last tick
            os.close(self._leader)  # type: ignore[arg-type]
            self._leader = None

    def tick(self) -> None:
        if self._leader is None:
            self._leader = try_leader(self.state.log_dir, self.state.log_writer.writer)
        if self._leader is not None:
            self._guarded(ship, self.state)
            self._guarded(pull, self.state)

    def _guarded(self, step: Any, state: MLOpsState) -> None:
        try:
            step(state)
        except Exception as exc:  # noqa: BLE001 - a store outage must not end the thread; the next tick retries
            if time.monotonic() - self._warned > 60:
                self._warned = time.monotonic()
                logger.warning("log store %s: %s failed: %s", shown(state.config.log_store), step.__name__, exc)


def start_in_worker(wsgi_app: Any) -> bool:
    """For gunicorn's ``post_worker_init``: start this worker's `LogSync` (with a store and an interval)."""
    state = (getattr(wsgi_app, "extensions", None) or {}).get("mlops")
    if state is None or not state.config.log_store or state.config.log_sync_interval_s <= 0:
        return False
    sync = state.extras.get(_SYNC_KEY)
    if sync is None:
        sync = state.extras[_SYNC_KEY] = LogSync(state)
    sync.start()
    return True


def stop_in_worker(wsgi_app: Any, *, timeout: float) -> None:
    """For gunicorn's ``worker_exit``: the host's shipper ships what is left, then the thread ends."""
    state = (getattr(wsgi_app, "extensions", None) or {}).get("mlops")
    sync = state.extras.get(_SYNC_KEY) if state is not None else None
    if sync is not None:
        sync.stop(timeout)


__all__ = ["LogSync", "log_store", "pull", "purge", "ship", "start_in_worker", "status", "stop_in_worker"]
