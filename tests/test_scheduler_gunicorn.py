"""Exactly once under real gunicorn: 4 workers each run the scheduler, one tick runs once; `kill -9` of the holder loses no tick silently."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from .ops_helpers import AppGunicorn, check_ticks_once, gaps, holder_pid, job_runs, lease_holder, wait_for

INTERVAL_S = 1
TTL_S = 2


@pytest.mark.integration
@pytest.mark.slow
def test_each_tick_once_across_four_workers_and_takeover_after_kill(instance: Path, tmp_path: Path, db_url: str) -> None:
    probe_file = tmp_path / "probe.lines"
    server = AppGunicorn(
        instance, tmp_path / "logs", workers=4, app_module="tests.sched_app:app",
        env={
            "MLOPS_SCHEDULER_ENABLED": "1", "MLOPS_ROLLOUT_INTERVAL_S": str(INTERVAL_S), "MLOPS_LEASE_TTL_S": str(TTL_S),
            "MLOPS_DATABASE_URI": db_url, "MLOPS_TEST_PROBE_FILE": str(probe_file),
        },
    ).start()
    try:
        workers = wait_for(lambda: len(server.worker_pids()) == 4 and server.worker_pids(), 30, "4 workers")
        wait_for(lambda: len(job_runs(db_url, "probe")) >= 5, 30, "5 probe runs")
        holder = wait_for(lambda: lease_holder(db_url), 10, "a lease holder")
        victim = holder_pid(holder)
        assert victim in workers, "the lease holder is a worker, never the master"
        before = len(job_runs(db_url, "probe"))
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: (h := lease_holder(db_url)) and h != holder, 30, "another holder")
        takeover_s = time.monotonic() - killed_at
        wait_for(lambda: len([r for r in job_runs(db_url, "probe") if r["holder"] != holder]) >= 5, 30, "5 runs by the new holder")
    finally:
        output = server.stop()
        print(output[-4000:])  # shown by pytest when the test fails
    runs = job_runs(db_url, "probe")
    summary = check_ticks_once(runs, len(probe_file.read_text().splitlines()), INTERVAL_S)
    assert summary["holders"][0] == holder and len(summary["holders"]) >= 2
    assert "Traceback" not in output, output[-3000:]
    # no tick lost silently: every tick from the first to the last has a row (run, retried, caught up or missed)
    assert gaps([r["tick"] for r in runs], INTERVAL_S) == [], runs
    takeover = [r for r in runs if r["holder"] != holder and (r["status"] == "missed" or r["trigger"] in ("catch-up", "retry"))]
    assert takeover, "the takeover left no trace of the ticks nobody ran"
    assert takeover_s <= TTL_S + 5 and before >= 5
    # the other job on the same grid ran once per tick too
    rollouts = job_runs(db_url, "rollout_evaluation")
    assert len({r["tick"] for r in rollouts}) == len(rollouts) >= 5
    assert gaps([r["tick"] for r in rollouts], INTERVAL_S) == [], rollouts
