"""The `limits` storage on the `mlops` database and the session rows, on SQLite and PostgreSQL (`db_url`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from limits import parse
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from flask_mlops.store import Base
from flask_mlops.store import sessions as session_rows
from flask_mlops.store.ratelimit import DatabaseStorage


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    options = {"connect_args": {"timeout": 30}} if db_url.startswith("sqlite") else {}
    engine = create_engine(db_url, **options)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_fixed_window_counts_and_expires(engine: Engine) -> None:
    storage = DatabaseStorage(engine)
    limiter = FixedWindowRateLimiter(storage)
    limit = parse("3 per 2 seconds")
    assert [limiter.hit(limit, "auth", "10.0.0.1") for _ in range(4)] == [True, True, True, False]
    assert not limiter.test(limit, "auth", "10.0.0.1") and limiter.test(limit, "auth", "10.0.0.2")
    reset, remaining = limiter.get_window_stats(limit, "auth", "10.0.0.1")
    assert remaining == 0 and time.time() < reset <= time.time() + 2
    time.sleep(2.1)  # the window ends: the count starts again
    assert limiter.test(limit, "auth", "10.0.0.1") and storage.get(limit.key_for("auth", "10.0.0.1")) == 0
    assert limiter.hit(limit, "auth", "10.0.0.1") and storage.get(limit.key_for("auth", "10.0.0.1")) == 1
    limiter.clear(limit, "auth", "10.0.0.1")
    assert storage.get(limit.key_for("auth", "10.0.0.1")) == 0 and storage.check()


def test_concurrent_increments_are_not_lost(engine: Engine) -> None:
    storage = DatabaseStorage(engine)
    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(lambda _: storage.incr("k", 60), range(40)))
    assert sorted(counts) == list(range(1, 41)) and storage.get("k") == 40


def test_session_rows_revoke_and_purge(engine: Engine) -> None:
    session_rows.create(engine, "a" * 64, role="admin", token_fingerprint="f" * 64, client="10.0.0.1", lifetime_s=60)
    session_rows.create(engine, "b" * 64, role="read", token_fingerprint="e" * 64, client=None, lifetime_s=-10)
    row = session_rows.active(engine, "a" * 64)
    assert row is not None and row.role == "admin" and row.client == "10.0.0.1"
    assert session_rows.active(engine, "b" * 64) is None  # expired
    assert session_rows.revoke(engine, "a" * 64) and not session_rows.revoke(engine, "a" * 64)
    assert session_rows.active(engine, "a" * 64) is None
    assert session_rows.purge(engine, keep_s=0) == 2
