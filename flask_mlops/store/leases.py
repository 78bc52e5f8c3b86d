"""Expiring database leases (one holder per name, across processes and hosts) and job-run records.

A lease is one row per name. Taking or renewing it is a single conditional UPDATE::

    UPDATE mlops_leases SET holder = :me, expires_at = <db now> + ttl, ...
    WHERE name = :name AND (holder = :me OR expires_at < <db now>)

which the database applies atomically on SQLite (one writer at a time) and PostgreSQL
(a concurrent UPDATE of the same row re-checks the WHERE clause after the first
commits), so at most one caller gets ``rowcount == 1``. Every time in that statement is
the DATABASE's clock (`db_now`), never the caller's: a host whose clock runs fast cannot
see a live holder's lease as expired. A holder that dies simply stops renewing: after
``ttl`` seconds anyone may take the lease over, and `fence` (the fencing token) grows by
one, so work started under the old token can be refused when it tries to commit
(`holds`, `finish_run(..., lease=...)`).

`JobRun` rows carry a unique ``(job, tick)`` key: even two holders that overlap for a
moment (a paused process waking up after its lease expired) cannot both run a tick.
A run's status is ``running``, ``succeeded``, ``failed``, ``missed`` (no holder ran the
tick), ``fenced`` (its holder lost the lease before committing) or ``abandoned`` (its
holder died twice); a run whose holder died is retried once (``trigger = "retry"``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, cast

from sqlalchemy import (
    Index,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from .base import Base, UTCDateTime, utcnow

logger = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: statuses of a finished run (anything else is still `running`)
FINAL = ("succeeded", "failed", "missed", "fenced", "abandoned")


class db_now(FunctionElement[datetime]):  # noqa: N801 - reads like the SQL function it is
    """The database server's current UTC time plus `seconds`, as one SQL expression.

    PostgreSQL: ``statement_timestamp() + make_interval(secs => s)``. SQLite: ``strftime``
    with millisecond resolution, formatted exactly as SQLAlchemy stores a datetime there
    (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC), so text comparisons with stored times are exact.
    """

    type = UTCDateTime()
    inherit_cache = True
    name = "db_now"

    def __init__(self, seconds: float = 0.0) -> None:
        super().__init__(literal(float(seconds)))


@compiles(db_now, "sqlite")
def _db_now_sqlite(element: db_now, compiler: Any, **kw: Any) -> str:
    return f"strftime('%Y-%m-%d %H:%M:%f000', 'now', printf('%+.6f seconds', {compiler.process(element.clauses, **kw)}))"


@compiles(db_now, "postgresql")
def _db_now_postgresql(element: db_now, compiler: Any, **kw: Any) -> str:
    return f"(statement_timestamp() + make_interval(secs => CAST({compiler.process(element.clauses, **kw)} AS DOUBLE PRECISION)))"


@compiles(db_now)
def _db_now_default(element: db_now, compiler: Any, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP"  # other databases: no offsets are taken with them (tests cover SQLite and PostgreSQL)


def db_time(engine: Engine) -> datetime:
    """What time the database thinks it is (aware UTC): the one clock every host agrees on."""
    with engine.connect() as conn:
        value = conn.scalar(select(db_now()))
    assert value is not None
    return cast(datetime, value)


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


def acquire(engine: Engine, name: str, holder: str, ttl_s: float, *, now: datetime | None = None) -> LeaseInfo | None:
    """Take or renew lease `name` for `holder` on the database's clock; None if someone else holds it.

    Returns the lease as granted (its expiry and fencing token). `now` stands in for the
    database's clock (tests of the expiry arithmetic only).
    """
    _ensure_row(engine, name)
    table = cast(Table, Lease.__table__)
    moment: ColumnElement[Any]
    expires: ColumnElement[Any]
    if now is None:
        moment, expires = db_now(), db_now(ttl_s)
    else:
        moment, expires = literal(now, UTCDateTime()), literal(now + timedelta(seconds=ttl_s), UTCDateTime())
    same = table.c.holder == holder
    with engine.begin() as conn:
        taken = conn.execute(
            update(table)
            .where(table.c.name == name, same | (table.c.expires_at < moment))
            .values(
                holder=holder,
                renewed_at=moment,
                expires_at=expires,
                # a change of holder restarts `acquired_at` and bumps the fencing token
                acquired_at=case((same, table.c.acquired_at), else_=moment),
                fence=case((same, table.c.fence), else_=table.c.fence + 1),
            )
        ).rowcount
        if taken != 1:
            return None
        row = conn.execute(select(table.c.name, table.c.holder, table.c.expires_at, table.c.fence).where(table.c.name == name)).one()
    return LeaseInfo(row.name, row.holder, row.expires_at, row.fence)


def release(engine: Engine, name: str, holder: str) -> bool:
    """Give the lease up now (on clean shutdown) so the next holder need not wait for the TTL."""
    table = cast(Table, Lease.__table__)
    with engine.begin() as conn:
        done = conn.execute(update(table).where(table.c.name == name, table.c.holder == holder).values(expires_at=EPOCH)).rowcount
    return done == 1


def _holds(name: str, holder: str, fence: int) -> ColumnElement[bool]:
    """SQL: `holder` still holds lease `name` under token `fence`, by the database's clock."""
    return cast(
        "ColumnElement[bool]",
        select(Lease.name)
        .where(Lease.name == name, Lease.holder == holder, Lease.fence == fence, Lease.expires_at > db_now())
        .exists(),
    )


def holds(engine: Engine, name: str, holder: str, fence: int) -> bool:
    """Is `holder` still the live holder of `name` with fencing token `fence`? (the fence check)"""
    with engine.connect() as conn:
        return bool(conn.scalar(select(_holds(name, holder, fence))))


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


def finish_run(
    engine: Engine,
    run_id: int,
    status: str,
    *,
    result: Any = None,
    error: str | None = None,
    holder: str | None = None,
    lease: tuple[str, int] | None = None,
) -> str | None:
    """Store how a run ended; returns the status stored (None when the run is no longer ours).

    With `lease=(name, fence)` the result is committed only while `holder` still holds that
    lease under that token (checked in the same transaction, on the database's clock);
    otherwise the run is stored as ``fenced`` without its result, and the next holder
    retries it once. With `holder`, a run another holder has taken over is left alone.
    """
    table = cast(Table, JobRun.__table__)
    end = utcnow()
    with engine.begin() as conn:
        if lease is not None and holder is not None and not conn.scalar(select(_holds(lease[0], holder, lease[1]))):
            status, result = "fenced", None
            error = f"{holder} lost the {lease[0]!r} lease (fence {lease[1]}) before committing; the result was discarded" + (
                f"\n{error}" if error else ""
            )
        started = conn.scalar(select(table.c.started_at).where(table.c.id == run_id))
        duration = (end - started).total_seconds() * 1000 if started is not None else None
        mine = [table.c.id == run_id] + ([table.c.holder == holder, table.c.status == "running"] if holder is not None else [])
        done = conn.execute(
            update(table).where(*mine).values(status=status, finished_at=end, duration_ms=duration, result=result, error=error)
        ).rowcount
    return status if done == 1 else None


@dataclass(frozen=True)
class Retry:
    """A scheduled run taken over from a dead (or fenced) holder, to be run again by the new one."""

    id: int
    job: str
    tick: datetime
    previous_holder: str


def reclaim_runs(engine: Engine, holder: str, *, jobs: list[str] | None = None) -> tuple[list[Retry], int]:
    """Take over scheduled runs another holder left unfinished: retry each once, abandon a retry.

    Called by a new lease holder. A first attempt (``running`` under another holder, or
    ``fenced``) becomes a ``retry`` owned by `holder`, returned for running; a retry that was
    itself left unfinished is marked ``abandoned`` (counted). Each row is taken with a
    conditional UPDATE, so two holders that overlap for a moment cannot both retry it.
    """
    table = cast(Table, JobRun.__table__)
    orphaned = or_(and_(table.c.status == "running", table.c.holder != holder), table.c.status == "fenced")
    with engine.connect() as conn:
        rows = conn.execute(
            select(table.c.id, table.c.job, table.c.tick, table.c.holder, table.c.status, table.c.trigger)
            .where(orphaned, table.c.trigger.in_(("schedule", "catch-up", "retry")), *([table.c.job.in_(jobs)] if jobs is not None else []))
            .order_by(table.c.tick)
        ).all()
    retries: list[Retry] = []
    abandoned = 0
    for row in rows:
        same = [table.c.id == row.id, table.c.holder == row.holder, table.c.status == row.status]
        with engine.begin() as conn:
            if row.trigger == "retry":
                abandoned += conn.execute(
                    update(table).where(*same).values(
                        status="abandoned", finished_at=utcnow(),
                        error=f"the retry by {row.holder} did not finish either (its holder died or lost the lease); not retried again",
                    )
                ).rowcount
                continue
            taken = conn.execute(
                update(table).where(*same).values(
                    holder=holder, trigger="retry", status="running", started_at=utcnow(), finished_at=None,
                    error=f"retry: {row.holder} did not finish it ({row.status})",
                )
            ).rowcount
        if taken == 1:
            retries.append(Retry(row.id, row.job, row.tick, row.holder))
    return retries, abandoned


def last_scheduled_tick(engine: Engine, job: str) -> datetime | None:
    """The newest tick of `job` with any scheduled record (run, retried, caught up or missed)."""
    with engine.connect() as conn:
        return cast(
            "datetime | None",
            conn.scalar(select(func.max(JobRun.tick)).where(JobRun.job == job, JobRun.trigger != "manual")),
        )


def record_missed(engine: Engine, job: str, ticks: Iterable[datetime], holder: str, *, reason: str) -> int:
    """Record ticks nobody ran as ``missed`` (a tick that has a row already keeps it); returns how many."""
    rows = [
        {"job": job, "tick": t, "trigger": "schedule", "holder": holder, "status": "missed",
         "started_at": utcnow(), "finished_at": utcnow(), "error": reason}
        for t in ticks
    ]
    if not rows:
        return 0
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
        return len(conn.execute(dialect_insert(JobRun).on_conflict_do_nothing().returning(JobRun.id), rows).all())


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
