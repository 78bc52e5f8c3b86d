"""Expiring database leases (one holder per name, across processes and hosts) and job-run records.

A lease is one row per name. Taking or renewing it is a single conditional UPDATE::

    UPDATE mlops_leases SET holder = :me, expires_at = :now + ttl, ...
    WHERE name = :name AND (holder = :me OR expires_at < :now)

which the database applies atomically on SQLite (one writer at a time) and PostgreSQL
(a concurrent UPDATE of the same row re-checks the WHERE clause after the first
commits), so at most one caller gets ``rowcount == 1``. A holder that dies simply stops
renewing: after ``ttl`` seconds anyone may take the lease over. Times come from the
callers' clocks (UTC); hosts must be NTP-synced, with a skew well below the TTL.

`JobRun` rows carry a unique ``(job, tick)`` key: even two holders that overlap for a
moment (a paused process waking up after its lease expired) cannot both run a tick.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, cast

from sqlalchemy import Index, String, Table, Text, UniqueConstraint, case, func, insert, literal, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from .base import Base, UTCDateTime, utcnow

logger = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class Lease(Base):
    """Who holds a named lease until when; `fence` grows by one on every change of holder."""

    __tablename__ = "mlops_leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200), default="")
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)
    renewed_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(default=lambda: EPOCH)
    fence: Mapped[int] = mapped_column(default=0)


class JobRun(Base):
    """One run of a scheduled (or manually started) job: when, by whom, and how it ended."""

    __tablename__ = "mlops_job_runs"
    __table_args__ = (
        UniqueConstraint("job", "tick", name="uq_mlops_job_runs_job_tick"),
        Index("ix_mlops_job_runs_job_started", "job", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(100))
    tick: Mapped[datetime]  # the scheduled fire time (manual runs: the start time)
    trigger: Mapped[str] = mapped_column(String(20), default="schedule")  # schedule | manual
    holder: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="running")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    duration_ms: Mapped[float | None]
    result: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job": self.job,
            "tick": _iso(self.tick),
            "trigger": self.trigger,
            "holder": self.holder,
            "status": self.status,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_ms": self.duration_ms,
            "result": self.result,
            "error": self.error,
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class LeaseInfo:
    name: str
    holder: str
    expires_at: datetime
    fence: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "holder": self.holder or None, "expires_at": _iso(self.expires_at), "fence": self.fence}


#: pg_advisory_xact_lock key under which workers create the schema one at a time ("mlops" in ASCII)
SCHEMA_LOCK_KEY = 0x6D6C6F7073


@contextmanager
def schema_lock(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the schema lock: concurrent `create_all`s (N workers booting on an
    empty PostgreSQL database) run one after another instead of colliding on the catalog.
    SQLite needs none: its writers are serialised by the database file lock."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        yield conn


def _ensure_row(engine: Engine, name: str) -> None:
    """Create the lease row (expired, no holder) if missing; a concurrent creator is fine."""
    with engine.connect() as conn:
        if conn.scalar(select(Lease.name).where(Lease.name == name)) is not None:
            return
    with contextlib.suppress(IntegrityError), engine.begin() as conn:  # another process may create it first
        now = utcnow()
        conn.execute(insert(Lease).values(name=name, holder="", acquired_at=now, renewed_at=now, expires_at=EPOCH, fence=0))


def acquire(engine: Engine, name: str, holder: str, ttl_s: float, *, now: datetime | None = None) -> datetime | None:
    """Take or renew lease `name` for `holder`; return its new expiry, or None if someone else holds it."""
    _ensure_row(engine, name)
    now = now or utcnow()
    expires = now + timedelta(seconds=ttl_s)
    table = cast(Table, Lease.__table__)
    same = table.c.holder == holder
    with engine.begin() as conn:
        taken = conn.execute(
            update(table)
            .where(table.c.name == name, (table.c.holder == holder) | (table.c.expires_at < now))
            .values(
                holder=holder,
                renewed_at=now,
                expires_at=expires,
                # a change of holder restarts `acquired_at` and bumps the fencing token
                acquired_at=case((same, table.c.acquired_at), else_=literal(now, UTCDateTime())),
                fence=case((same, table.c.fence), else_=table.c.fence + 1),
            )
        ).rowcount
    return expires if taken == 1 else None


def release(engine: Engine, name: str, holder: str) -> bool:
    """Give the lease up now (on clean shutdown) so the next holder need not wait for the TTL."""
    table = cast(Table, Lease.__table__)
    with engine.begin() as conn:
        done = conn.execute(update(table).where(table.c.name == name, table.c.holder == holder).values(expires_at=EPOCH)).rowcount
    return done == 1


def current(engine: Engine, name: str) -> LeaseInfo | None:
    with engine.connect() as conn:
        row = conn.execute(select(Lease.name, Lease.holder, Lease.expires_at, Lease.fence).where(Lease.name == name)).first()
    return None if row is None else LeaseInfo(row.name, row.holder, row.expires_at, row.fence)


# -- job runs -----------------------------------------------------------------------------
def claim_run(engine: Engine, job: str, tick: datetime, holder: str, *, trigger: str = "schedule") -> int | None:
    """Record the start of `job` for `tick`; None when that tick was already claimed (run once)."""
    try:
        with engine.begin() as conn:
            result = conn.execute(
                insert(JobRun).values(job=job, tick=tick, trigger=trigger, holder=holder, status="running", started_at=utcnow())
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])
    except IntegrityError:
        return None


def has_run(engine: Engine, job: str, tick: datetime) -> bool:
    with engine.connect() as conn:
        return conn.scalar(select(JobRun.id).where(JobRun.job == job, JobRun.tick == tick)) is not None


def finish_run(engine: Engine, run_id: int, status: str, *, result: Any = None, error: str | None = None) -> None:
    table = cast(Table, JobRun.__table__)
    end = utcnow()
    with engine.begin() as conn:
        started = conn.scalar(select(table.c.started_at).where(table.c.id == run_id))
        duration = (end - started).total_seconds() * 1000 if started is not None else None
        conn.execute(
            update(table)
            .where(table.c.id == run_id)
            .values(status=status, finished_at=end, duration_ms=duration, result=result, error=error)
        )


def abandon_runs(engine: Engine, holder: str) -> int:
    """Mark scheduled runs still 'running' under another holder as abandoned (it lost the lease)."""
    table = cast(Table, JobRun.__table__)
    with engine.begin() as conn:
        return int(
            conn.execute(
                update(table)
                .where(table.c.status == "running", table.c.trigger == "schedule", table.c.holder != holder)
                .values(status="abandoned", finished_at=utcnow(), error="its holder lost the scheduler lease before the run finished (process died?)")
            ).rowcount
        )


def get_run(engine: Engine, run_id: int) -> JobRun | None:
    with Session(engine) as session:
        row = session.get(JobRun, run_id)
        if row is not None:
            session.expunge(row)
    return row


def list_runs(engine: Engine, *, job: str | None = None, limit: int = 50, before_id: int | None = None) -> list[JobRun]:
    """Newest first; `before_id` is the cursor (runs with a smaller id)."""
    query = select(JobRun).order_by(JobRun.id.desc()).limit(limit)
    if job is not None:
        query = query.where(JobRun.job == job)
    if before_id is not None:
        query = query.where(JobRun.id < before_id)
    with Session(engine) as session:
        rows = list(session.scalars(query))
        session.expunge_all()
    return rows


def last_runs(engine: Engine) -> dict[str, JobRun]:
    """The most recent run of each job."""
    newest = select(func.max(JobRun.id)).group_by(JobRun.job).scalar_subquery()
    with Session(engine) as session:
        rows = list(session.scalars(select(JobRun).where(JobRun.id.in_(newest))))
        session.expunge_all()
    return {r.job: r for r in rows}
