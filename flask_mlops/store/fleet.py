"""`mlops_fleet`: what each serving worker on each host reports it serves (one row per worker and model).

A worker (one process of one app; `worker` is ``host:pid:nonce``) replaces its own rows on
every report and stamps them with the DATABASE's clock (`leases.db_now`), so liveness does
not depend on any host's clock. Rows whose heartbeat is older than the expiry are deleted by
whoever reports next; rows older than the live window are shown as stale.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Integer, String, Text, delete, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow
from .leases import db_now


class FleetMember(Base):
    """One worker's report about one model: the version it serves, the one it should, its last load error."""

    __tablename__ = "mlops_fleet"

    worker: Mapped[str] = mapped_column(String(200), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    version: Mapped[int | None]  # served now (None: nothing loaded)
    wanted: Mapped[int | None]  # the production version when the worker last looked
    since: Mapped[datetime | None]  # when `version` started serving here
    last_error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)


@dataclass(frozen=True)
class Served:
    """What a worker reports for one model."""

    model: str
    version: int | None
    wanted: int | None
    since: datetime | None
    error: str | None


@dataclass(frozen=True)
class MemberRow:
    worker: str
    host: str
    pid: int
    model: str
    version: int | None
    wanted: int | None
    since: datetime | None
    last_error: str | None
    started_at: datetime
    heartbeat_at: datetime
    age_s: float  # seconds since the heartbeat, by the database's clock

    def to_dict(self) -> dict[str, Any]:
        return {k: (_iso(v) if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def report(engine: Engine, worker: str, host: str, pid: int, started_at: datetime, served: Iterable[Served], *, expire_s: float) -> None:
    """Replace `worker`'s rows with `served`, heartbeat now (database clock); drop rows silent for `expire_s`."""
    rows = [
        {"worker": worker, "model_name": s.model, "host": host[:200], "pid": pid, "version": s.version, "wanted": s.wanted,
         "since": s.since, "last_error": None if s.error is None else s.error[:2000], "started_at": started_at}
        for s in served
    ]
    with engine.begin() as conn:
        conn.execute(delete(FleetMember).where(FleetMember.worker == worker))
        if rows:
            conn.execute(insert(FleetMember).values(heartbeat_at=db_now()), rows)
        conn.execute(delete(FleetMember).where(FleetMember.heartbeat_at < db_now(-expire_s)))


def leave(engine: Engine, worker: str) -> None:
    """A worker that exits cleanly removes its rows (a killed one expires)."""
    with engine.begin() as conn:
        conn.execute(delete(FleetMember).where(FleetMember.worker == worker))


def members(engine: Engine) -> tuple[list[MemberRow], datetime]:
    """Every reported row (host, pid, model order) and the database's time they were read at."""
    with engine.connect() as conn:
        now = conn.scalar(select(db_now()))
        rows = conn.execute(select(FleetMember).order_by(FleetMember.host, FleetMember.pid, FleetMember.model_name)).all()
    assert now is not None
    return [
        MemberRow(r.worker, r.host, r.pid, r.model_name, r.version, r.wanted, r.since, r.last_error, r.started_at, r.heartbeat_at,
                  max(0.0, (now - r.heartbeat_at).total_seconds()))
        for r in rows
    ], now
