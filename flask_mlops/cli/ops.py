"""Operations commands: `scheduler` (run the jobs in this process), `jobs` (runs, run one now), `retention`."""

from __future__ import annotations

import signal
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from ..services.logsync import purge as purge_store
from ..services.monitoring import purge_reports
from ..services.scheduler import get_job, get_scheduler, job_names, new_holder, overview, run_job
from ..services.state import get_state
from ..store import day_cache, leases, parquet
from ..store.logstore import shown
from ..store.predictions import expired, purge_older_than, relative_name
from .group import cli, echo_table, mlops_errors


@cli.command("scheduler")
@click.option("--list", "list_only", is_flag=True, help="Print the jobs and their next run times, then exit.")
@mlops_errors
def scheduler(list_only: bool) -> None:
    """Run the scheduled jobs in this process until SIGTERM/SIGINT.

    Use it instead of MLOPS_SCHEDULER_ENABLED in the web workers; several of these
    processes (on several hosts) are safe: a database lease picks one runner per tick.
    """
    state = get_state()
    runner = get_scheduler(state, current_app._get_current_object())  # type: ignore[attr-defined]
    if list_only:
        echo_table([{"job": name, "next_run": when} for name, when in runner.next_fire_times().items()])
        return
    done = threading.Event()

    def stop(signum: int, _frame: Any) -> None:
        click.echo(f"received signal {signum}; stopping")
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    runner.start()
    click.echo(f"scheduler running as {runner.holder} (lease TTL {runner.ttl:g}s); jobs:")
    for name, when in runner.next_fire_times().items():
        click.echo(f"  {name}: next {when.isoformat() if when else '-'}")
    try:
        while not done.wait(1.0):  # wake up every second, so signals are handled promptly
            continue
    finally:
        runner.stop()
    click.echo("scheduler stopped; lease released")


@cli.group("jobs", invoke_without_command=True)
@click.option("--job", "job", help="Only runs of this job.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.pass_context
@with_appcontext  # a group's own callback gets no app context from AppGroup
@mlops_errors
def jobs(ctx: click.Context, job: str | None, limit: int) -> None:
    """List recent job runs (and the lease holder); `jobs run NAME` runs one job now."""
    if ctx.invoked_subcommand is not None:
        return
    state = get_state()
    if job is not None:
        get_job(job)
    info = overview(state)
    lease = info["lease"]
    if lease and lease["active"]:
        click.echo(f"scheduler lease: {lease['holder']} until {lease['expires_at']}")
    else:
        click.echo("scheduler lease: free (no process is running the scheduler)")
    runs = leases.list_runs(state.engine, job=job, limit=limit)
    echo_table(
        [
            {
                "id": r.id, "job": r.job, "tick": leases._iso(r.tick), "trigger": r.trigger, "status": r.status,
                "ms": r.duration_ms, "holder": r.holder,
                "outcome": (r.error or "").strip().splitlines()[-1][:80] if r.error else _summary(r.result),
            }
            for r in runs
        ]
    )


def _summary(result: Any) -> str:
    if not result:
        return ""
    if isinstance(result, dict) and "reason" in result:
        return str(result["reason"])[:80]
    return str(result)[:80]


@jobs.command("run")
@click.argument("name", type=click.Choice(job_names()))
@mlops_errors
def run_now(name: str) -> None:
    """Run one job now, outside the schedule (recorded with trigger 'manual')."""
    run = run_job(get_state(), name, holder=new_holder("cli:"))
    assert run is not None  # a manual tick is unique to this call
    click.echo(f"{name}: {run['status']} in {run['duration_ms'] or 0:.0f} ms")
    if run["result"] is not None:
        click.echo(f"  result: {run['result']}")
    if run["error"]:
        raise click.ClickException(run["error"].strip().splitlines()[-1])


@cli.command("retention")
@click.option("--days", type=click.IntRange(0), help="Keep this many days (default: MLOPS_LOG_RETENTION_DAYS).")
@click.option("--dry-run", is_flag=True, help="Only list the files that would be deleted.")
@mlops_errors
def retention(days: int | None, dry_run: bool) -> None:
    """Delete daily prediction log files (with their caches and Parquet partitions, and drift runs, reports) older than their retention periods."""
    state = get_state()
    days = state.config.log_retention_days if days is None else days
    if days == 0:
        click.echo("retention is 0 days (keep forever): nothing to delete")
        return
    if dry_run:
        cutoff = datetime.now(timezone.utc).date() - timedelta(days=days)
        old = [relative_name(state.log_dir, p) for p in expired(state.log_dir, days)]
        click.echo(f"would delete {len(old)} file(s) older than {cutoff.isoformat()}: {', '.join(old) or '-'}")
        return
    removed = purge_older_than(state.log_dir, days)
    caches = day_cache.purge_older_than(state.log_dir, days)
    partitions = parquet.purge_older_than(state.log_dir, days)
    click.echo(f"deleted {len(removed)} file(s) older than {days} days: {', '.join(relative_name(state.log_dir, p) for p in removed) or '-'}"
               f" (and {len(caches)} columnar cache file(s), {len(partitions)} Parquet partition(s))")
    if state.config.log_store:
        store_days = purge_store(state, days)
        click.echo(f"deleted {len(store_days)} day(s) from the log store {shown(state.config.log_store)}: {', '.join(store_days) or '-'}")
    reports = purge_reports(state, state.config.report_retention_days)
    click.echo(f"deleted {reports['runs']} drift run(s) and {reports['files']} report file(s) older than "
               f"{state.config.report_retention_days} days (MLOPS_REPORT_RETENTION_DAYS)")
