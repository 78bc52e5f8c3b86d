"""Dashboard sessions, server-side: one row per login, so logout and token removal end it.

The row is keyed by a keyed hash of the session id (HMAC with the secret key, computed by
`services/sessions.py`), never by the id itself: a copy of the table cannot be replayed as
cookies. `token_fingerprint` (HMAC of the token that signed in) ties the session to its
token, so removing or rotating that token ends every session it opened.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Index, String, Table, delete, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow


class DashboardSession(Base):
    """One signed-in browser: its role when it signed in, which token, until when."""

    __tablename__ = "mlops_sessions"
    __table_args__ = (Index("ix_mlops_sessions_expires_at", "expires_at"),)

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    token_fingerprint: Mapped[str] = mapped_column(String(64))
    client: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


def _table() -> Table:
    return cast(Table, DashboardSession.__table__)


def create(engine: Engine, id_hash: str, *, role: str, token_fingerprint: str, client: str | None, lifetime_s: float) -> datetime:
    """Store a new session; return when it expires."""
    now = utcnow()
    expires = now + timedelta(seconds=lifetime_s)
    with engine.begin() as conn:
        conn.execute(
            _table().insert().values(
                id_hash=id_hash, role=role, token_fingerprint=token_fingerprint,
                client=(client or "")[:64] or None, created_at=now, expires_at=expires, revoked_at=None,
            )
        )
    return expires


def active(engine: Engine, id_hash: str) -> DashboardSession | None:
    """The session if it exists, is not revoked and has not expired."""
    t = _table()
    with engine.connect() as conn:
        row = conn.execute(
            select(t.c.id_hash, t.c.role, t.c.token_fingerprint, t.c.client, t.c.created_at, t.c.expires_at, t.c.revoked_at)
            .where(t.c.id_hash == id_hash, t.c.revoked_at.is_(None), t.c.expires_at > utcnow())
        ).first()
    return None if row is None else DashboardSession(**row._asdict())


def revoke(engine: Engine, id_hash: str) -> bool:
    """End a session now (logout); True if it was active."""
    t = _table()
    with engine.begin() as conn:
        done = conn.execute(update(t).where(t.c.id_hash == id_hash, t.c.revoked_at.is_(None)).values(revoked_at=utcnow())).rowcount
    return done == 1


def purge(engine: Engine, *, keep_s: float = 86400.0) -> int:
    """Delete sessions that expired or were revoked more than `keep_s` ago (housekeeping at login)."""
    t = _table()
    cutoff = utcnow() - timedelta(seconds=keep_s)
    with engine.begin() as conn:
        return int(conn.execute(delete(t).where(or_(t.c.expires_at < cutoff, t.c.revoked_at < cutoff))).rowcount)
