"""Scheduled jobs (drift, retrain check, rollouts, retention): each tick runs once across all processes.

Every process that runs the scheduler (each gunicorn worker with
``MLOPS_SCHEDULER_ENABLED``, or a separate ``flask mlops scheduler``) keeps an APScheduler
with the same jobs, and a keeper thread that takes and renews one database lease
(`store/leases.py`, name ``scheduler``) every ``MLOPS_LEASE_TTL_S / 3`` seconds, timed on
the database's clock (a host with a skewed clock cannot take a live holder's lease).
When a job fires, only the lease holder runs it, and it first claims the row
``(job, tick)`` in ``mlops_job_runs`` — the tick is the scheduled fire time, the same in
every process (interval jobs are aligned to a fixed epoch) — so a tick runs at most once
even if two holders overlap for a moment. A job's result is committed only while its
process still holds the lease under the fencing token it started with.

Nothing is lost silently. A holder that dies stops renewing; after the TTL another process
takes over and retries the dead holder's unfinished runs once (``trigger = "retry"``);
ticks that nobody ran meanwhile are recorded as ``missed``, and with
``MLOPS_SCHEDULER_CATCH_UP = latest`` the newest missed tick of each job runs once.
On shutdown, running jobs get ``MLOPS_SCHEDULER_STOP_TIMEOUT_S`` to finish, then the lease
is released either way (a job still running cannot commit; the next holder retries it).

Jobs live in a registry (`register_job`); each reads its schedule from one config key.
The drift, retrain and rollout jobs call the monitoring, retraining and experiments
entry points; this module holds only the scheduling. Starting is lazy and fork-safe: nothing starts in `init_app`
(which may run in gunicorn's master with ``preload_app``); the scheduler starts in the
process that serves — from gunicorn's ``post_worker_init`` hook or on the first request.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import socket
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from flask import current_app

from ..errors import ConfigError, MLOpsError, NotFoundError
from ..jsonable import jsonable
from ..store import leases

if TYPE_CHECKING:
    from apscheduler.triggers.base import BaseTrigger
    from flask import Flask
    from sqlalchemy.engine import Engine

    from ..config import MLOpsConfig
    from .state import MLOpsState

logger = logging.getLogger(__name__)

LEASE_NAME = "scheduler"
EXTRAS_KEY = "scheduler"
#: interval jobs fire at ANCHOR + k * interval in every process, so their ticks agree
ANCHOR = datetime(2000, 1, 1, tzinfo=timezone.utc)
#: most missed ticks of one job recorded per takeover (older ones are counted in the log only)
MAX_MISSED = 1000


class UnknownJobError(NotFoundError):
    code_name = "unknown_job"


class FenceLost(MLOpsError):
    """This process no longer holds the scheduler lease it started the job under."""

    code_name = "fence_lost"


@dataclass(frozen=True)
class _Fence:
    engine: Engine
    holder: str
    token: int


_FENCE: ContextVar[_Fence | None] = ContextVar("mlops_job_fence", default=None)


def check_fence() -> None:
    """For job bodies: raise `FenceLost` unless this process still holds the scheduler lease
    under the token the job started with. Call it right before a side effect that must not
    happen twice (deleting files, sending a message). A no-op outside scheduled runs."""
    fence = _FENCE.get()
    if fence is not None and not leases.holds(fence.engine, LEASE_NAME, fence.holder, fence.token):
        raise FenceLost(f"{fence.holder} lost the scheduler lease (fence {fence.token}); not committing")


@dataclass(frozen=True)
class JobSpec:
    """A registered job: what it runs and which config key holds its schedule."""

    name: str
    func: Callable[[MLOpsState], Any]
    schedule_key: str  # MLOPS_* key: a cron expression, or seconds for *_INTERVAL_S keys
    doc: str

    def schedule(self, config: MLOpsConfig) -> Any:
        return getattr(config, self.schedule_key.removeprefix("MLOPS_").lower())

    def trigger(self, config: MLOpsConfig) -> BaseTrigger:
        return build_trigger(self.schedule_key, self.schedule(config))


_JOBS: dict[str, JobSpec] = {}


def register_job(name: str, *, schedule_key: str) -> Callable[[Callable[[MLOpsState], Any]], Callable[[MLOpsState], Any]]:
    """Register `func(state) -> result` as job `name`, scheduled by config key `schedule_key`."""

    def decorator(func: Callable[[MLOpsState], Any]) -> Callable[[MLOpsState], Any]:
        _JOBS[name] = JobSpec(name, func, schedule_key, (func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else "")
        return func

    return decorator


def get_job(name: str) -> JobSpec:
    try:
        return _JOBS[name]
    except KeyError:
        raise UnknownJobError(
            f"unknown job {name!r}; registered jobs: {', '.join(sorted(_JOBS))}", details={"jobs": sorted(_JOBS)}
        ) from None


def job_names() -> list[str]:
    return list(_JOBS)


# -- triggers and ticks -----------------------------------------------------------------
def build_trigger(key: str, value: Any) -> BaseTrigger:
    """A UTC trigger from a config value: seconds (``*_INTERVAL_S``) or a 5- or 6-field cron.

    Six fields put seconds first (``sec min hour day month day_of_week``), for tests and
    short intervals; five fields are the usual crontab.
    """
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    try:
        if key.endswith("_INTERVAL_S"):
            seconds = float(value)
            if not seconds > 0:
                raise ValueError("must be > 0")
            return IntervalTrigger(seconds=seconds, start_date=ANCHOR, timezone=timezone.utc)
        fields = str(value).split()
        if len(fields) == 5:
            return CronTrigger.from_crontab(str(value), timezone=timezone.utc)
        if len(fields) == 6:
            second, minute, hour, day, month, dow = fields
            return CronTrigger(second=second, minute=minute, hour=hour, day=day, month=month, day_of_week=dow, timezone=timezone.utc)
        raise ValueError(f"expected 5 cron fields (or 6 with seconds first), got {len(fields)}")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: invalid schedule {value!r}: {exc}") from exc


def last_tick(trigger: BaseTrigger, now: datetime) -> datetime | None:
    """The latest scheduled fire time at or before `now` (None if none in the last day)."""
    from apscheduler.triggers.interval import IntervalTrigger

    if isinstance(trigger, IntervalTrigger):
        step = trigger.interval.total_seconds()
        k = math.floor((now - ANCHOR).total_seconds() / step + 1e-9)
        return ANCHOR + timedelta(seconds=k * step)
    found = None
    moment = trigger.get_next_fire_time(None, now - timedelta(days=1))
    while moment is not None and moment <= now:
        found = moment
        moment = trigger.get_next_fire_time(moment, moment + timedelta(microseconds=1))
    return found


def next_tick(trigger: BaseTrigger, now: datetime) -> datetime | None:
    return trigger.get_next_fire_time(None, now)  # type: ignore[no-any-return]


def ticks_between(trigger: BaseTrigger, after: datetime, until: datetime, *, limit: int = MAX_MISSED) -> list[datetime]:
    """The newest `limit` fire times t with after < t <= until, oldest first."""
    from apscheduler.triggers.interval import IntervalTrigger

    if isinstance(trigger, IntervalTrigger):
        step = trigger.interval.total_seconds()
        hi = math.floor((until - ANCHOR).total_seconds() / step + 1e-9)
        lo = max(math.floor((after - ANCHOR).total_seconds() / step + 1e-9) + 1, hi - limit + 1)
        return [ANCHOR + timedelta(seconds=k * step) for k in range(lo, hi + 1)]
    found: deque[datetime] = deque(maxlen=limit)
    moment = trigger.get_next_fire_time(None, max(after + timedelta(microseconds=1), until - timedelta(days=31)))
    while moment is not None and moment <= until and len(found) < 100_000:
        found.append(moment)
        moment = trigger.get_next_fire_time(moment, moment + timedelta(microseconds=1))
    return list(found)


# -- running one job --------------------------------------------------------------------
def _result(value: Any) -> Any:
    """A job's result as stored: a JSON object (a bare value is wrapped as `{"value": ...}`)."""
    out = jsonable(value)
    return out if out is None or isinstance(out, dict) else {"value": out}


def run_job(
    state: MLOpsState,
    name: str,
    *,
    holder: str,
    tick: datetime | None = None,
    trigger: str = "manual",
    fence: int | None = None,
    run_id: int | None = None,
) -> dict[str, Any] | None:
    """Claim `(name, tick)`, run the job (call it inside an app context), store how it ended.

    With `fence` (the scheduler lease's token) the job runs fenced: `check_fence()` works in
    its body and its result is committed only while `holder` still holds that lease. `run_id`
    runs an already claimed row (a retry). Returns the stored run, or None when that tick had
    already been claimed elsewhere.
    """
    spec = get_job(name)
    tick = tick or leases.utcnow()
    if run_id is None:
        run_id = leases.claim_run(state.engine, name, tick, holder, trigger=trigger)
        if run_id is None:
            logger.debug("job %s tick %s already claimed; skipping", name, tick.isoformat())
            return None
    status, result, error = "succeeded", None, None
    started = time.perf_counter()
    token = _FENCE.set(None if fence is None else _Fence(state.engine, holder, fence))
    try:
        result = _result(spec.func(state))
    except Exception as exc:
        status, error = "failed", "".join(traceback.format_exception(exc))[-4000:]
        logger.exception("job %s (tick %s) failed", name, tick.isoformat())
    finally:
        _FENCE.reset(token)
    stored = leases.finish_run(
        state.engine, run_id, status, result=result, error=error,
        holder=None if fence is None else holder, lease=None if fence is None else (LEASE_NAME, fence),
    )
    if stored != status:
        logger.warning("job %s tick %s: %s, stored as %s (lease lost before committing)", name, tick.isoformat(), status, stored or "someone else's")
    logger.info("job %s tick %s %s in %.0f ms (%s)", name, tick.isoformat(), stored, (time.perf_counter() - started) * 1000, holder)
    run = leases.get_run(state.engine, run_id)
    return None if run is None else run.to_dict()


# -- the per-process scheduler ----------------------------------------------------------
def new_holder(prefix: str = "") -> str:
    return f"{prefix}{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Scheduler:
    """One app's scheduler in one process: APScheduler + the lease keeper thread."""

    def __init__(self, app: Flask, state: MLOpsState, *, jobs: list[str] | None = None) -> None:
        self._app = app
        self._state = state
        self.jobs = [get_job(n) for n in (jobs or job_names())]
        self.triggers = {spec.name: spec.trigger(state.config) for spec in self.jobs}  # bad schedules fail here
        self.ttl = state.config.lease_ttl_s
        self.holder = ""
        self._pid = 0
        self._deadline = 0.0  # time.monotonic() until which this process may act as the holder
        self._fence: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._scheduler: Any = None
        self._keeper: threading.Thread | None = None
        self._busy = threading.Condition()
        self._inflight = 0
        self._covered: dict[str, datetime] = {}  # per job: every tick up to here has a row (or is being claimed)

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._pid == os.getpid() and self._scheduler is not None

    def ensure_started(self) -> None:
        """Start in this process unless already running here (cheap; safe to call per request)."""
        if self._pid != os.getpid():
            self.start()

    def start(self) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        with self._lock:
            if self._pid == os.getpid():
                return
            # after a fork the parent's threads are gone: start from scratch in this process
            self._pid = os.getpid()
            self.holder = new_holder()
            self._deadline, self._fence, self._inflight, self._covered = 0.0, None, 0, {}
            self._stop = threading.Event()
            self._busy = threading.Condition()
            scheduler = BackgroundScheduler(
                executors={"default": ThreadPoolExecutor(max_workers=4)},
                job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": max(30, int(self.ttl))},
                timezone=timezone.utc,
            )
            for spec in self.jobs:
                scheduler.add_job(self._fire, self.triggers[spec.name], args=[spec.name], id=spec.name, name=spec.name)
            scheduler.start()
            self._scheduler = scheduler
            self._keeper = threading.Thread(target=self._keep_lease, name="mlops-scheduler-lease", daemon=True)
            self._keeper.start()
        atexit.register(self.stop)
        logger.info("scheduler started in pid %s as %s (jobs: %s)", os.getpid(), self.holder, ", ".join(self.triggers))

    def stop(self, timeout: float | None = None) -> None:
        """Stop firing, give running jobs up to `timeout` seconds (default
        MLOPS_SCHEDULER_STOP_TIMEOUT_S), then hand the lease back so another process takes
        over at once. A job still running then cannot commit (its fence is gone) and the next
        holder retries it once."""
        with self._lock:
            if self._pid != os.getpid() or self._scheduler is None:
                return
            self._stop.set()
            scheduler, self._scheduler = self._scheduler, None
        scheduler.shutdown(wait=False)
        wait_s = self._state.config.scheduler_stop_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + wait_s
        with self._busy:
            while self._inflight and (left := deadline - time.monotonic()) > 0:
                self._busy.wait(left)
            unfinished = self._inflight
        if unfinished:
            logger.warning("%d job(s) still running after %.0f s; releasing the scheduler lease anyway "
                           "(they cannot commit; the next holder retries them once)", unfinished, wait_s)
        if self._keeper is not None:
            self._keeper.join(timeout=1)
        try:
            if leases.release(self._state.engine, LEASE_NAME, self.holder):
                logger.info("scheduler lease released by %s", self.holder)
        except Exception as exc:  # database away at shutdown: the TTL hands it over
            logger.warning("could not release the scheduler lease: %s", exc)
        self._deadline, self._fence = 0.0, None
        self._pid = 0

    # -- the lease ----------------------------------------------------------------------
    def is_leader(self) -> bool:
        """Held, by this process's monotonic clock: the lease was granted for `ttl` seconds of
        database time no earlier than we asked, so counting from the request is safe whatever
        the wall clock says."""
        margin = min(1.0, self.ttl / 10)
        return self._fence is not None and time.monotonic() < self._deadline - margin

    def renew(self) -> bool:
        """Take or renew the lease once; on becoming the holder, retry orphans and catch up."""
        was_leader = self.is_leader()
        asked = time.monotonic()
        try:
            grant = leases.acquire(self._state.engine, LEASE_NAME, self.holder, self.ttl)
        except Exception as exc:  # database briefly away: the old grant lapses on its own
            logger.warning("scheduler lease renewal failed: %s", exc)
            return self.is_leader()
        if grant is None:
            self._deadline, self._fence = 0.0, None
            return False
        took_over = not was_leader or grant.fence != self._fence
        last: dict[str, datetime | None] | None = None
        if took_over and not self._stop.is_set():
            # each job's newest recorded tick, read before this process counts as the holder: a tick it
            # fires right after must not hide the ticks nobody ran from the catch-up
            try:
                last = {name: leases.last_scheduled_tick(self._state.engine, name) for name in self.triggers}
            except Exception as exc:  # database away again: read in take_over
                logger.warning("scheduler takeover could not read the last ticks: %s", exc)
        self._deadline, self._fence = asked + self.ttl, grant.fence
        if took_over and not self._stop.is_set():
            logger.info("scheduler lease taken by %s (fence %s)", self.holder, grant.fence)
            try:
                self.take_over(last)
            except Exception as exc:  # database away again: the next takeover retries this
                logger.warning("scheduler takeover checks failed: %s", exc)
        return True

    def _keep_lease(self) -> None:
        stop = self._stop
        while not stop.is_set():
            self.renew()
            stop.wait(self.ttl / 3)

    def take_over(self, last: Mapping[str, datetime | None] | None = None) -> None:
        """Retry once what a previous holder left unfinished, then record and catch up missed ticks
        (since `last`, each job's newest recorded tick when the lease was taken; read now without it)."""
        engine = self._state.engine
        retries, abandoned = leases.reclaim_runs(engine, self.holder, jobs=list(self.triggers))
        if abandoned:
            logger.warning("%d job run(s) abandoned: their retry did not finish either", abandoned)
        for retry in retries:
            logger.warning("retrying job %s tick %s once (%s did not finish it)", retry.job, retry.tick.isoformat(), retry.previous_holder)
            self._submit(retry.job, retry.tick, trigger="retry", run_id=retry.id)
        self.catch_up(last)

    def catch_up(self, last_ticks: Mapping[str, datetime | None] | None = None) -> None:
        """Record every tick since a job's last recorded one as `missed` (nobody ran it) and,
        with MLOPS_SCHEDULER_CATCH_UP=latest, run the newest of them once instead."""
        engine = self._state.engine
        now = max(leases.db_time(engine), leases.utcnow())  # a fast local clock may have fired a tick already
        grace = timedelta(seconds=max(3 * self.ttl, 30))
        run_latest = self._state.config.scheduler_catch_up == "latest"
        for name, trigger in self.triggers.items():
            covered = last_tick(trigger, now)
            if covered is not None:
                self._covered[name] = covered
            last = last_ticks[name] if last_ticks is not None and name in last_ticks else leases.last_scheduled_tick(engine, name)
            if last is None:  # never ran here: no history to compare with; catch up a tick that just passed
                tick = last_tick(trigger, now)
                if tick is not None and now - tick <= grace and run_latest:
                    self._submit(name, tick, trigger="catch-up")
                continue
            missed = ticks_between(trigger, last, now)
            ran = leases.last_scheduled_tick(engine, name) if last_ticks is not None else last
            if ran is not None and ran > last:  # this holder has run the job since it took the lease: no catch-up
                missed, run_latest_here = [t for t in missed if t < ran], False
            else:
                run_latest_here = run_latest
            if not missed:
                continue
            latest = missed[-1] if run_latest_here else None
            recorded = leases.record_missed(
                engine, name, missed[:-1] if latest is not None else missed, self.holder,
                reason="no process held the scheduler lease at this tick (outage or dead host)",
            )
            logger.warning("job %s: %d tick(s) since %s had no runner: %d recorded as missed%s",
                           name, len(missed), last.isoformat(), recorded, f", catching up {latest.isoformat()}" if latest else "")
            if latest is not None:
                self._submit(name, latest, trigger="catch-up")

    def _submit(self, name: str, tick: datetime, *, trigger: str, run_id: int | None = None) -> None:
        if self._scheduler is not None:
            self._scheduler.add_job(self._run, args=[name, tick], kwargs={"trigger": trigger, "run_id": run_id}, name=f"{name}-{trigger}")

    # -- firing -------------------------------------------------------------------------
    def _fire(self, name: str) -> None:
        if not self.is_leader():
            return
        trigger = self.triggers[name]
        tick = last_tick(trigger, leases.utcnow())
        if tick is None:
            return
        covered = self._covered.get(name)
        self._covered[name] = tick if covered is None else max(covered, tick)
        if covered is not None and tick > covered:
            # fires this process skipped while holding the lease (busy executor, a paused process)
            skipped = ticks_between(trigger, covered, tick)[:-1]
            if skipped:
                try:
                    leases.record_missed(self._state.engine, name, skipped, self.holder,
                                         reason="the lease holder's scheduler skipped this fire (overloaded or paused)")
                except Exception as exc:  # database away: the next takeover's catch-up records them
                    logger.warning("could not record skipped ticks of %s: %s", name, exc)
        self._run(name, tick)

    def _run(self, name: str, tick: datetime, *, trigger: str = "schedule", run_id: int | None = None) -> None:
        fence = self._fence
        if self._stop.is_set() or not self.is_leader() or fence is None:
            return
        with self._busy:
            self._inflight += 1
        try:
            with self._app.app_context():  # jobs may use current_app / get_state()
                run_job(self._state, name, holder=self.holder, tick=tick, trigger=trigger, fence=fence, run_id=run_id)
        except Exception as exc:  # the database went away between claim and finish
            logger.error("job %s tick %s could not be recorded: %s", name, tick.isoformat(), exc)
        finally:
            with self._busy:
                self._inflight -= 1
                self._busy.notify_all()

    def next_fire_times(self) -> dict[str, datetime | None]:
        now = leases.utcnow()
        return {name: next_tick(trigger, now) for name, trigger in self.triggers.items()}


# -- wiring -----------------------------------------------------------------------------
def install(app: Flask, state: MLOpsState) -> Scheduler:
    """Called by init_app with MLOPS_SCHEDULER_ENABLED: build now (schedules validated), start lazily."""
    runner = Scheduler(app, state)
    state.extras[EXTRAS_KEY] = runner
    app.before_request(runner.ensure_started)
    return runner


def get_scheduler(state: MLOpsState, app: Flask | None = None) -> Scheduler:
    """This app's scheduler (built on demand for `flask mlops scheduler` when not enabled)."""
    runner = state.extras.get(EXTRAS_KEY)
    if runner is None:

        runner = Scheduler(app or current_app._get_current_object(), state)  # type: ignore[attr-defined]
        state.extras[EXTRAS_KEY] = runner
    return runner  # type: ignore[no-any-return]


def start_in_worker(wsgi_app: Any) -> bool:
    """For gunicorn's ``post_worker_init`` hook: start the app's scheduler in this worker now.

    Returns False when the WSGI object is not a Flask app with MLOps and the scheduler
    enabled (then it starts on the worker's first request, if enabled at all).
    """
    extensions = getattr(wsgi_app, "extensions", None) or {}
    state = extensions.get("mlops")
    runner = state.extras.get(EXTRAS_KEY) if state is not None else None
    if runner is None:
        return False
    runner.ensure_started()
    return True


def stop_in_worker(wsgi_app: Any, *, graceful_timeout: float | None = None) -> None:
    """For gunicorn's ``worker_exit`` hook: stop the jobs and release the lease on a clean exit,
    within MLOPS_SCHEDULER_STOP_TIMEOUT_S and, when given, well inside gunicorn's `graceful_timeout`
    (after which the arbiter kills the worker, lease and all)."""
    state = (getattr(wsgi_app, "extensions", None) or {}).get("mlops")
    runner = state.extras.get(EXTRAS_KEY) if state is not None else None
    if state is not None and runner is not None:
        timeout = state.config.scheduler_stop_timeout_s
        if graceful_timeout is not None:
            timeout = min(timeout, max(0.5, graceful_timeout / 2))
        runner.stop(timeout=timeout)


def overview(state: MLOpsState) -> dict[str, Any]:
    """Jobs with their schedule, next fire time and last run; the lease; this process's role."""
    runner = state.extras.get(EXTRAS_KEY)
    now = leases.utcnow()
    last = leases.last_runs(state.engine)
    jobs = []
    for spec in _JOBS.values():
        schedule = spec.schedule(state.config)
        try:
            upcoming = next_tick(spec.trigger(state.config), now)
        except ConfigError:
            upcoming = None
        run = last.get(spec.name)
        jobs.append(
            {
                "name": spec.name,
                "description": spec.doc,
                "schedule": {"key": spec.schedule_key, "value": schedule},
                "next_run": leases._iso(upcoming),
                "last_run": run.to_dict() if run is not None else None,
            }
        )
    lease = leases.current(state.engine, LEASE_NAME)
    if lease is not None:
        now = leases.db_time(state.engine)  # the lease is timed on the database's clock
    return {
        "enabled": state.config.scheduler_enabled,
        "running_here": bool(runner is not None and runner.running),
        "lease": None if lease is None else {**lease.to_dict(), "active": lease.expires_at > now},
        "jobs": jobs,
    }
