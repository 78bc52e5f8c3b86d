"""The scheduler lease and job-run claims, on SQLite and PostgreSQL (`db_url` runs each test on both)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Engine

from flask_mlops.store import Base, leases
from flask_mlops.store.base import utcnow


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    options = {"connect_args": {"timeout": 30}} if db_url.startswith("sqlite") else {}
    engine = create_engine(db_url, **options)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_tables_exist(engine: Engine) -> None:
    names = set(inspect(engine).get_table_names())
    assert {"mlops_leases", "mlops_job_runs"} <= names


def test_one_holder_until_it_expires_then_takeover(engine: Engine) -> None:
    now = utcnow()
    granted = leases.acquire(engine, "scheduler", "a", 10, now=now)
    assert granted is not None and granted.expires_at == now + timedelta(seconds=10) and granted.holder == "a"
    assert leases.acquire(engine, "scheduler", "b", 10, now=now + timedelta(seconds=1)) is None
    # the holder renews: the lease lives on past the first expiry
    assert leases.acquire(engine, "scheduler", "a", 10, now=now + timedelta(seconds=5)) is not None
    assert leases.acquire(engine, "scheduler", "b", 10, now=now + timedelta(seconds=11)) is None
    first = leases.current(engine, "scheduler")
    assert first is not None and first.holder == "a"
    # a dead holder stops renewing: after its TTL anyone may take over, and the fence grows
    taken = leases.acquire(engine, "scheduler", "b", 10, now=now + timedelta(seconds=16))
    assert taken is not None and taken.expires_at == now + timedelta(seconds=26)
    second = leases.current(engine, "scheduler")
    assert second is not None and second.holder == "b" and second.fence == first.fence + 1
    assert leases.acquire(engine, "scheduler", "a", 10, now=now + timedelta(seconds=17)) is None


def test_release_hands_over_at_once(engine: Engine) -> None:
    assert leases.acquire(engine, "scheduler", "a", 60) is not None
    assert not leases.release(engine, "scheduler", "b")  # only the holder can release
    assert leases.acquire(engine, "scheduler", "b", 60) is None
    assert leases.release(engine, "scheduler", "a")
    assert leases.acquire(engine, "scheduler", "b", 60) is not None


def test_leases_are_independent_by_name(engine: Engine) -> None:
    assert leases.acquire(engine, "one", "a", 60) is not None
    assert leases.acquire(engine, "two", "b", 60) is not None


def test_concurrent_takers_get_one_winner(engine: Engine) -> None:
    """Sixteen threads (own connections) race for an expired lease: exactly one wins each round."""
    for round_ in range(3):
        barrier = threading.Barrier(16)
        wins: list[str] = []

        def take(me: str, barrier: threading.Barrier = barrier, wins: list[str] = wins, ttl: float = 0.5 if round_ < 2 else 60) -> None:
            barrier.wait()
            if leases.acquire(engine, "race", me, ttl) is not None:
                wins.append(me)

        threads = [threading.Thread(target=take, args=(f"r{round_}-t{i}",)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1, wins
        leases.release(engine, "race", wins[0])


def test_a_tick_is_claimed_once(engine: Engine) -> None:
    tick = utcnow().replace(microsecond=0)
    first = leases.claim_run(engine, "drift_check", tick, "a")
    assert first is not None
    assert leases.claim_run(engine, "drift_check", tick, "b") is None
    assert leases.claim_run(engine, "log_retention", tick, "b") is not None  # other job, same tick
    assert leases.has_run(engine, "drift_check", tick)
    leases.finish_run(engine, first, "succeeded", result={"n": 1})
    run = leases.get_run(engine, first)
    assert run is not None and run.status == "succeeded" and run.result == {"n": 1}
    assert run.finished_at is not None and run.duration_ms is not None and run.duration_ms >= 0
    assert run.tick == tick  # round-trips as the same aware UTC datetime on both backends


def test_concurrent_claims_of_one_tick(engine: Engine) -> None:
    tick = utcnow()
    barrier = threading.Barrier(8)
    ids: list[int | None] = []

    def claim(me: str) -> None:
        barrier.wait()
        ids.append(leases.claim_run(engine, "rollout_evaluation", tick, me))

    threads = [threading.Thread(target=claim, args=(f"h{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([i for i in ids if i is not None]) == 1


def test_the_database_clock_times_the_lease(engine: Engine) -> None:
    """The expiry is the database's time plus the TTL, whatever the caller's clock says."""
    before = leases.db_time(engine)
    granted = leases.acquire(engine, "scheduler", "a", 30)
    after = leases.db_time(engine)
    assert granted is not None and granted.fence == 1
    assert before + timedelta(seconds=30) <= granted.expires_at <= after + timedelta(seconds=30)
    assert abs((before - utcnow()).total_seconds()) < 5  # same machine: the clocks agree roughly
    stored = leases.current(engine, "scheduler")
    assert stored is not None and stored.expires_at == granted.expires_at  # round-trips exactly (SQLite text, PG timestamptz)
    assert leases.holds(engine, "scheduler", "a", 1) and not leases.holds(engine, "scheduler", "a", 2)
    assert not leases.holds(engine, "scheduler", "b", 1)
    leases.release(engine, "scheduler", "a")
    assert not leases.holds(engine, "scheduler", "a", 1)  # a released lease fences its holder's work


def test_a_fast_or_slow_caller_clock_cannot_steal_or_lose_the_lease(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    assert leases.acquire(engine, "scheduler", "a", 5) is not None
    skewed = utcnow() + timedelta(hours=1)  # a host an hour fast sees every lease as long expired
    monkeypatch.setattr(leases, "utcnow", lambda: skewed)
    assert leases.acquire(engine, "scheduler", "b", 5) is None
    monkeypatch.setattr(leases, "utcnow", lambda: skewed - timedelta(hours=2))  # the holder an hour slow still renews
    renewed = leases.acquire(engine, "scheduler", "a", 5)
    assert renewed is not None and renewed.fence == 1
    assert abs((renewed.expires_at - leases.db_time(engine)).total_seconds() - 5) < 2


def test_expiry_on_the_database_clock(engine: Engine) -> None:
    assert leases.acquire(engine, "short", "a", 0.3) is not None
    assert leases.acquire(engine, "short", "b", 0.3) is None
    time.sleep(0.5)
    taken = leases.acquire(engine, "short", "b", 0.3)
    assert taken is not None and taken.holder == "b" and taken.fence == 2


def test_a_fenced_run_does_not_commit(engine: Engine) -> None:
    granted = leases.acquire(engine, "scheduler", "a", 60)
    assert granted is not None
    tick = utcnow().replace(microsecond=0)
    kept = leases.claim_run(engine, "drift_check", tick, "a")
    lost = leases.claim_run(engine, "drift_check", tick + timedelta(seconds=1), "a")
    assert kept is not None and lost is not None
    assert leases.finish_run(engine, kept, "succeeded", result={"n": 1}, holder="a", lease=("scheduler", granted.fence)) == "succeeded"
    leases.release(engine, "scheduler", "a")
    assert leases.acquire(engine, "scheduler", "b", 60) is not None  # b holds it now, with a new fence
    assert leases.finish_run(engine, lost, "succeeded", result={"n": 2}, holder="a", lease=("scheduler", granted.fence)) == "fenced"
    run = leases.get_run(engine, lost)
    assert run is not None and run.status == "fenced" and run.result is None and "lost the 'scheduler' lease" in (run.error or "")


def test_unfinished_runs_are_retried_once_then_abandoned(engine: Engine) -> None:
    dead = leases.claim_run(engine, "retrain_check", utcnow(), "dead-holder")
    manual = leases.claim_run(engine, "retrain_check", utcnow() + timedelta(seconds=1), "cli", trigger="manual")
    mine = leases.claim_run(engine, "drift_check", utcnow(), "me")
    retries, abandoned = leases.reclaim_runs(engine, "me")
    assert [r.id for r in retries] == [dead] and abandoned == 0 and retries[0].previous_holder == "dead-holder"
    runs = {r.id: r for r in leases.list_runs(engine)}
    assert (runs[dead].status, runs[dead].trigger, runs[dead].holder) == ("running", "retry", "me")
    assert runs[manual].status == runs[mine].status == "running"  # manual runs are their caller's business; "me" runs its own
    # "me" dies as well: the next holder retries its first attempt, but abandons the retry instead of retrying forever
    retries, abandoned = leases.reclaim_runs(engine, "other")
    assert [r.id for r in retries] == [mine] and abandoned == 1
    dead_run = leases.get_run(engine, dead)
    assert dead_run is not None and dead_run.status == "abandoned" and "did not finish either" in (dead_run.error or "")
    assert leases.get_run(engine, manual).status == "running"  # type: ignore[union-attr]


def test_missed_ticks_are_recorded_once(engine: Engine) -> None:
    base = utcnow().replace(microsecond=0)
    ticks = [base + timedelta(seconds=i) for i in range(5)]
    assert leases.claim_run(engine, "probe", ticks[0], "a") is not None
    assert leases.record_missed(engine, "probe", ticks, "b", reason="outage") == 4  # the claimed tick keeps its row
    assert leases.record_missed(engine, "probe", ticks, "c", reason="outage") == 0
    assert leases.last_scheduled_tick(engine, "probe") == ticks[-1]
    statuses = [r.status for r in sorted(leases.list_runs(engine, job="probe"), key=lambda r: r.tick)]
    assert statuses == ["running"] + ["missed"] * 4


def test_list_runs_pages_newest_first(engine: Engine) -> None:
    base = utcnow()
    ids = [leases.claim_run(engine, "log_retention", base + timedelta(minutes=i), "a") for i in range(5)]
    page = leases.list_runs(engine, limit=2)
    assert [r.id for r in page] == ids[::-1][:2]
    rest = leases.list_runs(engine, limit=10, before_id=page[-1].id)
    assert [r.id for r in rest] == ids[::-1][2:]
    assert set(leases.last_runs(engine)) == {"log_retention"}
