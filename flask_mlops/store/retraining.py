"""Retraining runs (`mlops_retrain_runs`) with a one-at-a-time slot, and each version's holdout.

One run at a time is enforced by the database, not by a process lock, so it holds across
gunicorn workers and hosts: a run occupies the unique `slot` column (1) while queued or
running and frees it (NULL) when it ends; a second claim violates the unique index. A run
whose worker died keeps its slot only until it is found stale (dead pid on this host, or
no heartbeat for the stale timeout) and is then recorded as failed.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Index, String, Text, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from .base import Base, utcnow

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "rejected", "failed")
MAX_LOG_LINES = 200


class RetrainRun(Base):
    __tablename__ = "mlops_retrain_runs"
    __table_args__ = (Index("ix_mlops_retrain_runs_model_created", "model_name", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    slot: Mapped[int | None] = mapped_column(unique=True)  # 1 while active: at most one active run
    trigger: Mapped[str] = mapped_column(String(50), default="manual")
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    actor: Mapped[str] = mapped_column(String(200), default="system")
    holder: Mapped[str | None] = mapped_column(String(200))  # host:pid of the process running it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    progress: Mapped[str | None] = mapped_column(Text)
    log: Mapped[list[Any]] = mapped_column(JSON, default=list)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)

    def to_dict(self) -> dict[str, Any]:
        iso = _iso
        return {
            "id": self.id,
            "model": self.model_name,
            "status": self.status,
            "trigger": self.trigger,
            "reasons": list(self.reasons or []),
            "actor": self.actor,
            "holder": self.holder,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "heartbeat_at": iso(self.heartbeat_at),
            "progress": self.progress,
            "log": list(self.log or []),
            "result": dict(self.result or {}),
            "error": self.error,
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


class ModelHoldout(Base):
    """The holdout rows a version was evaluated on (JSON, never pickle), for "no worse than production"."""

    __tablename__ = "mlops_model_holdouts"

    model_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(primary_key=True)
    features: Mapped[list[Any]] = mapped_column(JSON)  # rows in declared feature order
    labels: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelTrainingRows(Base):
    """The labelled rows a version was fitted on (JSON, capped): what retraining starts from
    when the model declares no `data` (a version trained here, or registered with `labels=`)."""

    __tablename__ = "mlops_model_training_rows"

    model_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(primary_key=True)
    features: Mapped[list[Any]] = mapped_column(JSON)  # rows in declared feature order
    labels: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


#: the holder of a queued run that waits for `flask mlops retrain --run-queued` or the scheduler
QUEUE_HOLDER = "queue"


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def ensure_tables(engine: Engine) -> None:
    """Create these tables if `create_all` ran before this module was imported."""
    for table in (RetrainRun.__table__, ModelHoldout.__table__, ModelTrainingRows.__table__):
        table.create(engine, checkfirst=True)  # type: ignore[attr-defined]


def claim(
    session: Session, model: str, *, trigger: str, reasons: list[Any], actor: str, holder: str | None = None
) -> RetrainRun | None:
    """Insert (and commit) a queued run holding the slot; None when another run holds it.

    `session` must not be inside a transaction block: the unique slot decides atomically.
    `holder`: this process (default), or `QUEUE_HOLDER` for a run left to another runner.
    """
    run = RetrainRun(model_name=model, status="queued", slot=1, trigger=trigger, reasons=reasons, actor=actor,
                     holder=holder or holder_id(), log=[], result={})
    session.add(run)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return None
    return run


def active_run(session: Session) -> RetrainRun | None:
    return session.scalar(select(RetrainRun).where(RetrainRun.slot.is_not(None)))


def _pid_dead(holder: str | None) -> bool:
    """True when `holder` is a process on this host that no longer exists."""
    if not holder or ":" not in holder:
        return False
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def reap_stale(
    session: Session, stale_after_s: float, *, now: datetime | None = None, queue_ttl_s: float = 6 * 3600.0
) -> RetrainRun | None:
    """Fail the active run if its process died or its heartbeat stopped (a run queued for a
    runner: if none picked it up within `queue_ttl_s`); return it if reaped."""
    run = active_run(session)
    if run is None:
        return None
    now = now or utcnow()
    if run.status == "queued" and run.holder == QUEUE_HOLDER:  # waits for a runner, not a process
        if now - run.created_at < timedelta(seconds=queue_ttl_s):
            return None
        finish(session, run, "failed", error=f"abandoned: no runner picked the queued run up within {queue_ttl_s:.0f} s "
               "(run `flask mlops retrain --run-queued`, set MLOPS_RETRAIN_APP, or enable the scheduler)")
        return run
    last = run.heartbeat_at or run.started_at or run.created_at
    dead = _pid_dead(run.holder)
    if not dead and last is not None and now - last < timedelta(seconds=stale_after_s):
        return None
    why = "its process died" if dead else f"no heartbeat for {stale_after_s:.0f} s"
    finish(session, run, "failed", error=f"abandoned: {why} (worker killed or crashed); production untouched")
    return run


def note(session: Session, run_id: int, message: str, *, status: str | None = None) -> None:
    """Progress line + heartbeat (one short transaction)."""
    run = session.get(RetrainRun, run_id)
    if run is None:
        return
    now = utcnow()
    run.progress = message
    run.log = [*list(run.log or [])[-(MAX_LOG_LINES - 1) :], f"{now.strftime('%H:%M:%S')} {message}"]
    run.heartbeat_at = now
    if status is not None:
        run.status = status
        if status == "running" and run.started_at is None:
            run.started_at = now
            run.holder = holder_id()  # the process that runs it (a worker process, the scheduler, the CLI)


def heartbeat(engine: Engine, run_id: int) -> None:
    with Session(engine) as session, session.begin():
        session.execute(update(RetrainRun).where(RetrainRun.id == run_id, RetrainRun.slot.is_not(None)).values(heartbeat_at=utcnow()))


def finish(session: Session, run: RetrainRun, status: str, *, result: dict[str, Any] | None = None, error: str | None = None) -> None:
    run.status = status
    run.slot = None
    run.finished_at = utcnow()
    if result is not None:
        run.result = result
    if error is not None:
        run.error = error[:4000]


__all__ = ["ACTIVE", "FINISHED", "ModelHoldout", "RetrainRun", "active_run", "claim", "ensure_tables", "finish", "heartbeat", "note", "reap_stale"]
