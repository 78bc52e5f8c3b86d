"""A `limits` storage on the `mlops` database: rate-limit counters every gunicorn worker shares.

`limits` (the engine of Flask-Limiter) ships memory, Redis, Memcached and MongoDB storages;
memory is per process, and the others are servers a deployment may not run. The `mlops`
database is already shared by every worker and host of the app, so the default storage of
the failed-credentials limiter keeps its fixed-window counters there, in
`mlops_rate_limits`. `MLOPS_RATELIMIT_STORAGE_URI` picks one of the `limits` storages instead
(e.g. `redis://`), which is cheaper under heavy attack.

`incr` is one atomic upsert (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``) on SQLite and
PostgreSQL: a window that has expired starts again at `amount`, else the count grows.
"""

from __future__ import annotations

import random
import time
from typing import Any, cast

from limits.storage import Storage
from sqlalchemy import Float, Integer, String, Table, case, delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base

#: share of increments that also delete long-expired counters (keeps the table small under a spray)
_PURGE_SHARE = 0.01


class RateLimitCounter(Base):
    """One fixed window of one rate-limit key: how many hits, until when (epoch seconds)."""

    __tablename__ = "mlops_rate_limits"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[float] = mapped_column(Float)


def _table() -> Table:
    return cast(Table, RateLimitCounter.__table__)


def _upsert(dialect: str, table: Table) -> Any:
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    return pg_insert(table)


class DatabaseStorage(Storage):
    """`limits` storage (fixed window) on a SQLAlchemy engine; shared by every process using it."""

    STORAGE_SCHEME = None  # built from the app's engine, not from a URI

    def __init__(self, engine: Engine) -> None:
        super().__init__(uri=None, wrap_exceptions=False)
        self.engine = engine

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        t = _table()
        values = {"key": key[:255], "count": amount, "expires_at": now + expiry}
        dialect = self.engine.dialect.name
        with self.engine.begin() as conn:
            if dialect in ("sqlite", "postgresql"):
                expired = t.c.expires_at <= now
                stmt = (
                    _upsert(dialect, t)
                    .values(**values)
                    .on_conflict_do_update(
                        index_elements=[t.c.key],
                        set_={
                            "count": case((expired, amount), else_=t.c.count + amount),
                            "expires_at": case((expired, now + expiry), else_=t.c.expires_at),
                        },
                    )
                    .returning(t.c.count)
                )
                count = int(conn.execute(stmt).scalar_one())
            else:  # other databases: read, then write, in one transaction
                count = self._incr_portable(conn, key[:255], amount, now, expiry)
            if random.random() < _PURGE_SHARE:
                conn.execute(delete(t).where(t.c.expires_at < now - 3600))
        return count

    @staticmethod
    def _incr_portable(conn: Any, key: str, amount: int, now: float, expiry: int) -> int:
        t = _table()
        row = conn.execute(select(t.c.count, t.c.expires_at).where(t.c.key == key).with_for_update()).first()
        if row is None:
            try:
                with conn.begin_nested():
                    conn.execute(t.insert().values(key=key, count=amount, expires_at=now + expiry))
                return amount
            except IntegrityError:
                row = conn.execute(select(t.c.count, t.c.expires_at).where(t.c.key == key).with_for_update()).first()
        count, expires = (amount, now + expiry) if row.expires_at <= now else (row.count + amount, row.expires_at)
        conn.execute(t.update().where(t.c.key == key).values(count=count, expires_at=expires))
        return int(count)

    def get(self, key: str) -> int:
        t = _table()
        with self.engine.connect() as conn:
            count = conn.scalar(select(t.c.count).where(t.c.key == key[:255], t.c.expires_at > time.time()))
        return int(count or 0)

    def get_expiry(self, key: str) -> float:
        t = _table()
        with self.engine.connect() as conn:
            expires = conn.scalar(select(t.c.expires_at).where(t.c.key == key[:255]))
        return float(expires) if expires is not None and expires > time.time() else time.time()

    def check(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.scalar(select(1))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with self.engine.begin() as conn:
            return int(conn.execute(delete(_table())).rowcount)

    def clear(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(_table()).where(_table().c.key == key[:255]))
