"""Scheduler: job registry, schedules, runs stored, one runner among several processes' schedulers, CLI and API."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_mlops.errors import ConfigError
from flask_mlops.extension import get_state
from flask_mlops.services import scheduler as sched
from flask_mlops.store import day_cache, leases, parquet
from flask_mlops.store.predictions import PredictionLogWriter

from .conftest import AUTH, READ_AUTH, base_config, build_app


@pytest.fixture
def probe_job() -> Iterator[list[tuple[str, int]]]:
    """A registered test job (every MLOPS_ROLLOUT_INTERVAL_S) that records who ran it."""
    calls: list[tuple[str, int]] = []

    @sched.register_job("probe", schedule_key="MLOPS_ROLLOUT_INTERVAL_S")
    def probe(state: Any) -> dict[str, Any]:
        """Test probe."""
        calls.append((threading.current_thread().name, os.getpid()))
        return {"calls": len(calls)}

    yield calls
    sched._JOBS.pop("probe", None)


def test_registry_lists_names_on_unknown_job() -> None:
    with pytest.raises(sched.UnknownJobError, match="drift_check, log_retention, parquet_compaction, retrain_check, retrain_queue, rollout_evaluation"):
        sched.get_job("nope")
    assert {"drift_check", "retrain_check", "rollout_evaluation", "log_retention"} <= set(sched.job_names())


@pytest.mark.parametrize(
    ("key", "value", "fires"),
    [
        ("MLOPS_DRIFT_CRON", "0 2 * * *", datetime(2026, 1, 2, 2, 0, tzinfo=timezone.utc)),
        ("MLOPS_RETRAIN_CRON", "0 3 * * sun", datetime(2026, 1, 4, 3, 0, tzinfo=timezone.utc)),  # 2026-01-04 is a Sunday
        ("MLOPS_RETENTION_CRON", "*/20 * * * * *", datetime(2026, 1, 1, 12, 0, 20, tzinfo=timezone.utc)),
        ("MLOPS_ROLLOUT_INTERVAL_S", 300.0, datetime(2026, 1, 1, 12, 5, tzinfo=timezone.utc)),
    ],
)
def test_schedules_are_utc_and_ticks_agree_everywhere(key: str, value: Any, fires: datetime) -> None:
    trigger = sched.build_trigger(key, value)
    now = datetime(2026, 1, 1, 12, 0, 1, tzinfo=timezone.utc)
    assert sched.next_tick(trigger, now) == fires
    # the tick of a fire time is itself, a moment later too: every process names it the same
    assert sched.last_tick(trigger, fires) == fires
    assert sched.last_tick(trigger, fires + timedelta(milliseconds=900)) == fires


def test_interval_ticks_are_aligned_to_the_epoch() -> None:
    trigger = sched.build_trigger("MLOPS_ROLLOUT_INTERVAL_S", 300)
    assert sched.last_tick(trigger, datetime(2026, 3, 1, 10, 7, 13, tzinfo=timezone.utc)) == datetime(2026, 3, 1, 10, 5, tzinfo=timezone.utc)


@pytest.mark.parametrize("bad", ["every day", "0 2 * *", "61 * * * *", "0 2 * * * * *"])
def test_bad_schedule_fails_at_start_up_naming_the_key(instance: Path, tmp_path: Path, bad: str) -> None:
    app = Flask("bad", instance_path=str(instance))
    app.config.update(base_config(tmp_path, MLOPS_SCHEDULER_ENABLED=True, MLOPS_DRIFT_CRON=bad))
    from flask_mlops import MLOps

    with pytest.raises(ConfigError, match="MLOPS_DRIFT_CRON"):
        MLOps(app)


def test_disabled_by_default_and_nothing_started_in_init_app(app: Flask, instance: Path, tmp_path: Path) -> None:
    assert "scheduler" not in get_state(app).extras
    enabled = build_app(instance, base_config(tmp_path / "b", MLOPS_SCHEDULER_ENABLED=True), name="enabled")
    runner = get_state(enabled).extras["scheduler"]
    assert not runner.running  # lazily: in the serving process, not where init_app ran (gunicorn master)
    assert not [t for t in threading.enumerate() if t.name == "mlops-scheduler-lease"]


_RECORD = (
    '{"id": "0123456789abcdef0123456789abcdef", "ts": "DAYT12:00:00.000000Z", "model": "diabetes", "model_version": "1", '
    '"variant": null, "unit_id": null, "features": {"Glucose": 120}, "prediction": 1, "probability": 0.7, '
    '"latency_ms": 1.0, "status": 200}\n'
)


def test_retention_removes_old_drift_runs_and_reports(app: Flask) -> None:
    from flask_mlops.store.monitoring import DriftRun, list_drift_runs, write_report_file

    state = get_state(app)
    now = datetime.now(timezone.utc)
    paths = []
    with state.session() as session, session.begin():
        for age in (200, 1):
            created = now - timedelta(days=age)
            path = write_report_file(state.log_dir, created, {"features": {}}, "diabetes")
            os.utime(path, (created.timestamp(), created.timestamp()))
            paths.append(path)
            session.add(DriftRun(created_at=created, model_name="diabetes", status="ok", report_path=str(path), trigger="test"))
    html = state.log_dir / "reports" / "drift-gone.html"
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text("<html></html>")
    os.utime(html, (now.timestamp() - 200 * 86400,) * 2)
    with app.app_context():
        run = sched.run_job(state, "log_retention", holder="test")
    assert run is not None and run["result"]["reports_removed"] == {"runs": 1, "files": 2}, run
    assert [not p.exists() for p in paths] == [True, False] and not html.exists()
    with state.session() as session:
        assert len(list_drift_runs(session, model="diabetes")) == 1


def test_runs_are_stored_with_their_outcome(app: Flask, tmp_path: Path) -> None:
    state = get_state(app)
    old = state.log_dir / "predictions" / f"{(date.today() - timedelta(days=90)).isoformat()}.jsonl"
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_text(_RECORD.replace("DAY", old.stem))
    day_cache.compact(state.log_dir)  # the day's columnar cache, as the readers leave it
    cache = day_cache.cache_path(state.log_dir, old)
    assert cache.exists()
    assert parquet.compact(state.log_dir).parts == 1  # and its Parquet partition
    with app.app_context():
        run = sched.run_job(state, "log_retention", holder="test")
        assert run is not None and run["status"] == "succeeded" and run["trigger"] == "manual"
        assert {k: run["result"][k] for k in ("retention_days", "removed", "caches_removed")} == {
            "retention_days": 30, "removed": [old.name], "caches_removed": [cache.name]}
        assert run["result"]["reports_removed"] == {"runs": 0, "files": 0}
        assert run["result"]["parquet_partitions_removed"] == [f"model=diabetes/date={old.stem}"]
        assert not old.exists() and not cache.exists() and not list(parquet.root(state.log_dir).glob("model=*"))
        retrain = sched.run_job(state, "retrain_check", holder="test")
    assert retrain is not None and retrain["status"] == "succeeded", retrain
    first = retrain["result"]["diabetes"]  # never trained: the schedule trigger trains the first version
    assert first["due"] is True and any("schedule" in r for r in first["reasons"]), first
    assert first["run"]["status"] in ("succeeded", "rejected")


def test_a_failing_job_is_recorded_with_its_error(app: Flask) -> None:
    @sched.register_job("boom", schedule_key="MLOPS_DRIFT_CRON")
    def boom(state: Any) -> None:
        raise RuntimeError("kaput")

    try:
        with app.app_context():
            run = sched.run_job(get_state(app), "boom", holder="test")
    finally:
        sched._JOBS.pop("boom")
    assert run is not None and run["status"] == "failed" and "RuntimeError: kaput" in run["error"]


def _twin_apps(instance: Path, tmp_path: Path, n: int, db_url: str | None = None, **extra: Any) -> list[Flask]:
    """n apps on one database: what n gunicorn workers (or hosts) look like to the lease."""
    settings = {"MLOPS_SCHEDULER_ENABLED": True, "MLOPS_ROLLOUT_INTERVAL_S": 1, "MLOPS_LEASE_TTL_S": 2,
                "MLOPS_DATABASE_URI": db_url or f"sqlite:///{instance / 'shared.db'}", **extra}
    config = base_config(tmp_path, **settings)
    return [build_app(instance, config, name=f"worker{i}") for i in range(n)]


def _probe_runs(app: Flask) -> list[leases.JobRun]:
    return [r for r in leases.list_runs(get_state(app).engine, job="probe", limit=1000) if r.status != "running"]


@pytest.mark.slow
def test_one_runner_per_tick_and_takeover_when_the_holder_dies(instance: Path, tmp_path: Path, probe_job: list[Any]) -> None:
    apps = _twin_apps(instance, tmp_path, 3)
    runners = [get_state(a).extras["scheduler"] for a in apps]
    try:
        for r in runners:
            r.start()
        time.sleep(4.5)
        leaders = [r for r in runners if r.is_leader()]
        assert len(leaders) == 1
        holder = leaders[0]
        before = _probe_runs(apps[0])
        assert len(before) >= 3 and {r.holder for r in before} == {holder.holder}
        # the holder "dies": its threads stop, it never renews nor releases
        holder._stop.set()
        holder._scheduler.shutdown(wait=True)
        holder._scheduler = None
        holder._deadline, holder._fence = 0.0, None
        died = leases.utcnow()
        time.sleep(5)
        after = _probe_runs(apps[0])
        new = [r for r in after if r.holder != holder.holder]
        assert new, "no other runner took over"
        assert len({r.holder for r in new}) == 1
        assert min(r.tick for r in new) - died <= timedelta(seconds=2 + 1.5)  # TTL + a tick
    finally:
        for r in runners:
            r.stop()
    runs = _probe_runs(apps[0])
    ticks = sorted(r.tick for r in runs)
    assert len(ticks) == len(set(ticks))  # each tick once (the table would refuse a second claim)
    done = [r for r in runs if r.status == "succeeded"]
    assert len(probe_job) == len(done)  # ... and the job body ran exactly once per stored run
    assert {r.status for r in runs} <= {"succeeded", "missed"}
    assert all(round((b - a).total_seconds()) == 1 for a, b in zip(ticks, ticks[1:], strict=False))  # no tick left without a row


def test_a_stopped_scheduler_releases_the_lease(instance: Path, tmp_path: Path) -> None:
    first, second = (get_state(a).extras["scheduler"] for a in _twin_apps(instance, tmp_path, 2))
    try:
        first.start()
        deadline = time.monotonic() + 5
        while not first.is_leader() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.is_leader()
        second.start()
        assert not second.renew()
        first.stop()
        assert second.renew()  # no waiting for the TTL after a clean stop
    finally:
        first.stop()
        second.stop()


def test_cli_jobs_run_and_list(app: Flask) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["mlops", "jobs", "run", "log_retention"])
    assert result.exit_code == 0, result.output
    assert "log_retention: succeeded" in result.output
    listed = runner.invoke(args=["mlops", "jobs"])
    assert listed.exit_code == 0 and "log_retention" in listed.output and "manual" in listed.output
    assert "scheduler lease: free" in listed.output
    unknown = runner.invoke(args=["mlops", "jobs", "--job", "nope"])
    assert unknown.exit_code == 1 and "registered jobs: " in unknown.output
    listing = runner.invoke(args=["mlops", "scheduler", "--list"])
    assert listing.exit_code == 0 and "rollout_evaluation" in listing.output


def test_cli_retention(app: Flask) -> None:
    """Old days of both layouts go: a legacy day file, and a day folder with another host's file."""
    log_dir = get_state(app).log_dir
    folder = log_dir / "predictions"
    folder.mkdir(parents=True, exist_ok=True)
    old = folder / f"{(date.today() - timedelta(days=10)).isoformat()}.jsonl"
    old.write_text(_RECORD.replace("DAY", old.stem))
    other = PredictionLogWriter(log_dir, "host-b")
    day = date.today() - timedelta(days=9)
    other.write(json.loads(_RECORD.replace("DAY", day.isoformat())), day)
    other.close()
    day_cache.compact(log_dir)
    runner = app.test_cli_runner()
    dry = runner.invoke(args=["mlops", "retention", "--days", "5", "--dry-run"])
    listed = f"{day.isoformat()}/host-b-{os.getpid()}.jsonl"
    assert dry.exit_code == 0 and "would delete 2 file(s)" in dry.output and old.name in dry.output and listed in dry.output
    assert old.exists() and other.path(day).exists()
    done = runner.invoke(args=["mlops", "retention", "--days", "5"])
    assert done.exit_code == 0 and "deleted 2 file" in done.output and listed in done.output and not old.exists()
    assert not other.path(day).parent.exists()  # the day's folder too
    assert "and 2 columnar cache file" in done.output and not day_cache.cache_path(log_dir, old).exists()
    assert not day_cache.cache_path(log_dir, other.path(day)).exists()


def test_api_jobs(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/mlops/api/jobs").status_code == 401
    with app.app_context():
        for _ in range(3):
            sched.run_job(get_state(app), "log_retention", holder="test")
    body = client.get("/mlops/api/jobs?limit=2", headers=READ_AUTH).get_json()
    assert {j["name"] for j in body["jobs"]} >= {"drift_check", "retrain_check", "rollout_evaluation", "log_retention"}
    retention = next(j for j in body["jobs"] if j["name"] == "log_retention")
    assert retention["schedule"] == {"key": "MLOPS_RETENTION_CRON", "value": "30 1 * * *"}
    assert retention["last_run"]["status"] == "succeeded" and retention["next_run"].endswith("Z")
    assert body["enabled"] is False and body["running_here"] is False
    assert len(body["runs"]) == 2 and body["next_cursor"]
    rest = client.get(f"/mlops/api/jobs?limit=2&cursor={body['next_cursor']}", headers=AUTH).get_json()
    assert len(rest["runs"]) == 1 and rest["next_cursor"] is None
    missing = client.get("/mlops/api/jobs?job=nope", headers=READ_AUTH)
    assert missing.status_code == 404 and "log_retention" in missing.get_json()["error"]["message"]


# -- nothing lost silently: the DB clock, retries, missed ticks, fences, shutdown ---------------------------------
def test_a_skewed_process_clock_cannot_steal_the_lease(instance: Path, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    apps = _twin_apps(instance, tmp_path, 2, db_url, MLOPS_LEASE_TTL_S=30)
    live, skewed = (get_state(a).extras["scheduler"] for a in apps)
    live.holder, skewed.holder = "live-holder", "skewed-host"
    try:
        assert live.renew() and live.is_leader()
        fast = leases.utcnow() + timedelta(minutes=10)  # the skewed host's clock: far past the live lease's expiry
        monkeypatch.setattr(leases, "utcnow", lambda: fast)
        assert not skewed.renew() and not skewed.is_leader()
        monkeypatch.undo()
        assert live.renew() and live.is_leader()  # the live holder keeps it, fence unchanged
        lease = leases.current(get_state(apps[0]).engine, "scheduler")
        assert lease is not None and lease.holder == "live-holder" and lease.fence == 1
    finally:
        for a in apps:
            get_state(a).engine.dispose()


def _wait(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.mark.slow
@pytest.mark.parametrize("slow_takeover", [False, True], ids=["takeover", "slow-takeover"])
def test_takeover_retries_a_dead_holders_run_and_records_missed_ticks(
    instance: Path, tmp_path: Path, db_url: str, probe_job: list[Any], monkeypatch: Any, slow_takeover: bool
) -> None:
    reclaim = leases.reclaim_runs

    def slow_reclaim(*args: Any, **kwargs: Any) -> Any:  # a slow takeover (busy database): the new holder's
        time.sleep(1.5)  # scheduler fires its first ticks meanwhile, which must not hide the missed ones
        return reclaim(*args, **kwargs)

    if slow_takeover:
        monkeypatch.setattr(leases, "reclaim_runs", slow_reclaim)
    (app,) = _twin_apps(instance, tmp_path, 1, db_url)
    state = get_state(app)
    now = leases.db_time(state.engine).replace(microsecond=0)
    dead_tick = now - timedelta(seconds=10)
    orphan = leases.claim_run(state.engine, "probe", dead_tick, "dead-host:1:x")  # its holder died mid-run
    runner = state.extras["scheduler"]
    try:
        runner.start()
        _wait(lambda: len([r for r in leases.list_runs(state.engine, job="probe") if r.status == "succeeded"]) >= 3)
    finally:
        runner.stop()
        state.engine.dispose()
    runs = sorted(leases.list_runs(state.engine, job="probe", limit=1000), key=lambda r: r.tick)
    by_tick = {r.tick: r for r in runs}
    retried = by_tick[dead_tick]
    assert retried.id == orphan and (retried.status, retried.trigger, retried.holder) == ("succeeded", "retry", runner.holder)
    missed = [r for r in runs if r.status == "missed"]
    assert len(missed) >= 8 and all(r.tick > dead_tick for r in missed)  # the outage is on record, tick by tick
    caught_up = [r for r in runs if r.trigger == "catch-up"]
    if slow_takeover:  # the job ran on schedule before the catch-up looked: nothing to catch up
        assert caught_up == [] and any(r.trigger == "schedule" and r.status == "succeeded" and r.tick > max(m.tick for m in missed) for r in runs)
    else:
        assert len(caught_up) == 1 and caught_up[0].status == "succeeded" and caught_up[0].tick > max(r.tick for r in missed)
    ticks = [r.tick for r in runs]
    assert all(round((b - a).total_seconds()) == 1 for a, b in zip(ticks, ticks[1:], strict=False))  # every tick has a row
    assert len(probe_job) == len([r for r in runs if r.status == "succeeded"])


def test_catch_up_none_records_without_running(instance: Path, tmp_path: Path, probe_job: list[Any]) -> None:
    (app,) = _twin_apps(instance, tmp_path, 1, MLOPS_SCHEDULER_CATCH_UP="none", MLOPS_ROLLOUT_INTERVAL_S=3600)
    state = get_state(app)
    last = sched.last_tick(sched.build_trigger("MLOPS_ROLLOUT_INTERVAL_S", 3600), leases.utcnow())
    assert last is not None
    leases.claim_run(state.engine, "probe", last - timedelta(hours=3), "old")
    runner = state.extras["scheduler"]
    runner.holder = "me"
    assert runner.renew()  # takes over: the old holder's run is retried (not started here), three ticks are missed
    runs = {r.tick: r.status for r in leases.list_runs(state.engine, job="probe")}
    assert [runs[last - timedelta(hours=h)] for h in (2, 1, 0)] == ["missed"] * 3 and probe_job == []


def test_a_job_that_lost_its_fence_does_not_commit(app: Flask) -> None:
    state = get_state(app)
    assert leases.acquire(state.engine, "scheduler", "someone-else", 60) is not None
    seen: list[str] = []

    @sched.register_job("careful", schedule_key="MLOPS_DRIFT_CRON")
    def careful(state: Any) -> dict[str, Any]:
        try:
            sched.check_fence()
        except sched.FenceLost as exc:
            seen.append(str(exc))
            raise
        return {"committed": True}

    try:
        with app.app_context():
            run = sched.run_job(state, "careful", holder="me", fence=1, trigger="schedule")
            manual = sched.run_job(state, "careful", holder="cli")  # unfenced (manual) runs are not checked
    finally:
        sched._JOBS.pop("careful")
    assert run is not None and run["status"] == "fenced" and run["result"] is None and seen
    assert manual is not None and manual["status"] == "succeeded"


@pytest.mark.slow
def test_shutdown_stops_within_the_timeout_and_releases_the_lease(instance: Path, tmp_path: Path) -> None:
    release = threading.Event()

    @sched.register_job("slow", schedule_key="MLOPS_ROLLOUT_INTERVAL_S")
    def slow(state: Any) -> None:
        release.wait(30)

    try:
        first, second = (get_state(a).extras["scheduler"] for a in _twin_apps(instance, tmp_path, 2))
        engine = first._state.engine
        first.start()
        _wait(lambda: [r for r in leases.list_runs(engine, job="slow") if r.status == "running"])
        started = time.monotonic()
        first.stop(timeout=0.5)
        assert time.monotonic() - started < 3
        assert second.renew()  # released: taken at once, not after the TTL
        release.set()  # the old job finishes late: it cannot commit, and the new holder retried it
        runs = _wait(lambda: [r for r in leases.list_runs(engine, job="slow") if r.holder == second.holder])
        assert runs[0].trigger == "retry"
    finally:
        release.set()
        sched._JOBS.pop("slow")
        second.stop(timeout=1)
