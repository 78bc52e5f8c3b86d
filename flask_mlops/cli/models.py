"""Registry lifecycle and retraining commands: promote, rollback, archive, history, retrain (thin)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import click

from ..services import lifecycle, retraining
from ..services.catalog import model_names, model_spec
from ..services.state import get_state
from .group import cli, echo_table, mlops_errors


def _one_model(name: str | None) -> str:
    state = get_state()
    if name is None:
        names = model_names(state)
        if len(names) != 1:
            raise click.UsageError(f"--name is required; models: {', '.join(names)}")
        return names[0]
    model_spec(state, name)
    return name


@cli.command("promote")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--reason", help="Why (kept in the audit log).")
@click.option("--force", is_flag=True, help="Promote even if a gate fails (audited as forced).")
@mlops_errors
def promote(name: str, version: int, reason: str | None, force: bool) -> None:
    """Put VERSION of NAME in production if it passes the promotion gates."""
    state = get_state()
    try:
        out = lifecycle.promote(state, name, version, actor="cli", reason=reason, force=force)
    except lifecycle.GateFailed as exc:
        for check in (exc.details or {}).get("checks", []):
            mark = "ok  " if check["passed"] else "FAIL"
            click.echo(f"  {mark} {check['name']}: {check['value']} (threshold {check['threshold']}) {check['detail']}")
        raise
    if not out["changed"]:
        click.echo(f"{name} v{version} is already in production")
        return
    click.echo(f"{name}: v{version} is in production (was v{out['previous']})")


@cli.command("rollback")
@click.argument("name")
@click.option("--to", "to_version", type=int, help="Target version (default: the previous production).")
@click.option("--reason", help="Why (kept in the audit log).")
@mlops_errors
def rollback(name: str, to_version: int | None, reason: str | None) -> None:
    """Put the previous production version of NAME (or --to VERSION) back in production."""
    out = lifecycle.rollback(get_state(), name, to_version, actor="cli", reason=reason)
    click.echo(f"{name}: rolled back from v{out['previous']} to v{out['version']}")


@cli.command("archive")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--reason", help="Why (kept in the audit log).")
@mlops_errors
def archive(name: str, version: int, reason: str | None) -> None:
    """Archive VERSION of NAME (refused for the production version)."""
    out = lifecycle.archive(get_state(), name, version, actor="cli", reason=reason)
    click.echo(f"{name} v{version} archived" if out["changed"] else f"{name} v{version} was already archived")


@cli.command("history")
@click.argument("name")
@click.option("--at", "at", help="ISO-8601 UTC time: also print the version in production then.")
@click.option("--limit", type=int, default=50, show_default=True)
@mlops_errors
def history(name: str, at: str | None, limit: int) -> None:
    """Audit trail of NAME: who changed what, when and why (newest first)."""
    state = get_state()
    rows = lifecycle.history(state, name, limit=limit)
    echo_table([{k: r[k] for k in ("ts", "action", "version", "previous_version", "actor", "reason")} for r in rows])
    if at:
        moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
        moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
        click.echo(f"in production at {moment.isoformat()}: v{lifecycle.production_at(state, name, moment)}")


@cli.command("retrain")
@click.option("--name", help="Model (required when more than one is declared).")
@click.option("--force", is_flag=True, help="Retrain even if no trigger fires.")
@click.option("--check", "check_only", is_flag=True, help="Only say whether retraining is due, and why.")
@click.option("--scheduled", is_flag=True, help="A scheduled run (a workflow's cron): does nothing unless MLOPS_RETRAIN_BY=workflow.")
@click.option("--no-promote", is_flag=True, help="Register the new version without promoting it (a reviewed `promote` follows).")
@click.option("--result-file", type=click.Path(dir_okay=False, writable=True), help="Write the run's result (version, gates, ...) as JSON here.")
@click.option("--run-id", type=int, help="Run this queued run (what the API's separate process does).")
@click.option("--run-queued", is_flag=True, help="Run the run the API queued, if any (a worker or cron for hosts without MLOPS_RETRAIN_APP).")
@mlops_errors
def retrain(
    name: str | None, force: bool, check_only: bool, scheduled: bool, no_promote: bool, result_file: str | None,
    run_id: int | None, run_queued: bool,
) -> None:
    """Retrain when a trigger fires (drift, decay, new labels, schedule) or with --force; gate; promote."""
    state = get_state()
    if run_id is not None or run_queued:
        done = retraining.run_queued(state, run_id)
        if done is None:
            click.echo("no queued retraining run")
            return
        click.echo(f"run {done['id']} ({done['model']}): {done['status']}")
        if done["error"]:
            raise click.ClickException(done["error"].splitlines()[0])
        click.echo(json.dumps({k: (done["result"] or {}).get(k) for k in ("version", "semver", "promoted", "candidate", "reason")}))
        return
    model = _one_model(name)
    if scheduled and state.config.retrain_by != "workflow":
        click.echo(f"{model}: scheduled retraining runs in the app (MLOPS_RETRAIN_BY={state.config.retrain_by}); nothing to do")
        return
    result = retraining.check(state, model, manual=force)
    for trig in result.triggers.values():
        mark = "FIRED" if trig.fired else ("  -  " if trig.available else " n/a ")
        click.echo(f"  {mark} {trig.name:<11} value={trig.value} threshold={trig.threshold}  {trig.detail}")
    if check_only or not result.due:
        click.echo(f"{model}: retraining {'is due' if result.due else 'is not due'}")
        return
    fired = [n for n, t in result.triggers.items() if t.fired]
    trigger = "manual" if force else fired[0]
    click.echo(f"{model}: retraining ({', '.join(fired)})")
    run = retraining.start(state, model, trigger=trigger, reasons=result.reasons, actor="cli", background=True, promote=not no_promote)
    seen = 0
    while True:
        current = retraining.wait(state, run["id"], timeout=1.0)
        for line in current["log"][seen:]:
            click.echo(f"  {line}")
        seen = len(current["log"])
        if current["status"] not in ("queued", "running"):
            break
    click.echo(f"run {current['id']}: {current['status']}")
    if current["error"]:
        raise click.ClickException(current["error"].splitlines()[0])
    res = current["result"] or {}
    summary = {k: res.get(k) for k in ("version", "semver", "promoted", "candidate", "reason")}
    click.echo(json.dumps(summary))
    if result_file:
        Path(result_file).write_text(json.dumps({"run": current["id"], "status": current["status"], **summary}, indent=2))
    if current["status"] == "rejected":  # gates failed: a scheduled job must see it
        raise click.ClickException(f"v{res.get('version')} failed the promotion gates: {res.get('reason')}")
