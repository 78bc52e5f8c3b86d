"""`flask mlops drift`, `report` and `aggregate`: readable tables; exit 2 on critical (thin).

A scheduled job (cron, CI) can act on the exit status: 0 when nothing is critical, 2 when
the drift level (or, for `report`, the health) is critical, 1 on errors.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import click

from ..services import engines
from ..services import monitoring as service
from ..services.state import get_state
from ..tasks import task_for
from .group import cli, echo_table, mlops_errors

CRITICAL_EXIT = 2
#: `flask mlops drift --max-unreadable`: too many log lines of the window could not be parsed
UNREADABLE_EXIT = 3


def _when(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def window_options(command: Any) -> Any:
    options = [
        click.option("--model", help="Declared model (required when there are several)."),
        click.option("--version", help="Only records served by this version (and its reference profile)."),
        click.option("--since", type=click.DateTime(), help="Window start (UTC), inclusive."),
        click.option("--until", type=click.DateTime(), help="Window end (UTC), exclusive."),
        click.option("--last", type=click.IntRange(min=1), help="Only the N most recent records."),
        click.option("--json", "as_json", is_flag=True, help="Print the JSON document instead of tables."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _window(model: str | None, version: str | None, since: datetime | None, until: datetime | None, last: int | None) -> service.WindowSpec:
    return service.WindowSpec(model, version, _when(since), _when(until), last)


def _feature_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    features = dict(report.get("features") or {})
    if report.get("prediction"):
        features[f"[{report['prediction']['name']}]"] = report["prediction"]
    return [
        {
            "feature": name,
            "level": f["level"],
            "decided_by": f["decided_by"],
            "psi": f["psi"],
            "wasserstein": f["wasserstein"],
            "js": f["js"],
            "ks_p": f["ks_pvalue"],
            "chi2_p": f["chi2_pvalue"],
            "missing": f["missing_rate"],
        }
        for name, f in features.items()
    ]


def _echo_drift(report: dict[str, Any]) -> None:
    click.echo(f"drift: {report['status']}, level {report['level'] or '-'} ({report['window'].get('n', 0)} records) — {report['message']}")
    if report["status"] == "ok":
        echo_table(_feature_rows(report))


@cli.command("drift")
@window_options
@click.option("--no-save", is_flag=True, help="Do not store this run (DB row and JSON report).")
@click.option(
    "--max-unreadable",
    type=click.FloatRange(0.0, 1.0),
    help=f"Exit {UNREADABLE_EXIT} when more than this share of the window's log lines cannot be read.",
)
@mlops_errors
def drift_command(
    model: str | None, version: str | None, since: datetime | None, until: datetime | None, last: int | None,
    as_json: bool, no_save: bool, max_unreadable: float | None,
) -> None:
    """Data and prediction drift of a window; exits 2 when the level is critical, 3 on unreadable logs."""
    report = service.drift(get_state(), _window(model, version, since, until, last), persist=not no_save, trigger="cli").to_dict()
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        _echo_drift(report)
    if report["level"] == "critical":
        raise SystemExit(CRITICAL_EXIT)
    skipped = int(report["window"].get("skipped_lines") or 0)
    total = skipped + int(report["window"].get("n") or 0)
    if max_unreadable is not None and total and skipped / total > max_unreadable:
        click.echo(f"{skipped} of {total} log lines in the window could not be read (> {max_unreadable:.2%})", err=True)
        raise SystemExit(UNREADABLE_EXIT)


@cli.command("report")
@window_options
@click.option("--no-alerts", is_flag=True, help="Do not raise alerts (log, store, webhook) for warning/critical health.")
@mlops_errors
def report_command(model: str | None, version: str | None, since: datetime | None, until: datetime | None, last: int | None, as_json: bool, no_alerts: bool) -> None:
    """Drift, performance, operations and health; exits 2 when the health is critical."""
    out = service.report(get_state(), _window(model, version, since, until, last), alert=not no_alerts, trigger="cli")
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))
    else:
        health = out["health"]
        click.echo(f"model {out['model']}: {health['status'].upper()}")
        for reason in health["reasons"]:
            click.echo(f"  - {reason['source']} {reason['level']}: {reason['message']}")
        click.echo("")
        if out["drift"].get("status") in ("ok", "insufficient_data"):
            _echo_drift(out["drift"])
        else:
            click.echo(f"drift: {out['drift'].get('message')}")
        perf = out["performance"]
        click.echo("")
        click.echo(f"performance ({perf.get('n_labelled', 0)} labelled):")
        keys = task_for(perf["task"]).performance_metrics
        rows = [{"metric": k, "realised": perf.get(k), "estimated (CBPE)": (perf.get("estimated") or {}).get(k)} for k in keys]
        echo_table(rows)
        d = perf["decay"]
        click.echo(f"decay: {d['level']} ({d['metric']} {d['current']} vs baseline {d['baseline']})")
        ops = out["operations"]
        click.echo("")
        click.echo(
            f"operations: {ops['n_requests']} requests, error rate {ops['error_rate']}, "
            f"latency p50/p95/p99 {ops['latency_p50_ms']}/{ops['latency_p95_ms']}/{ops['latency_p99_ms']} ms"
        )
        for alert in out.get("alerts", []):
            click.echo(f"alert {alert['key']} ({alert['level']}): {'sent' if alert['send'] else 'not sent'} — {alert['reason']}")
    if out["health"]["status"] == "critical":
        raise SystemExit(CRITICAL_EXIT)


@cli.command("aggregate")
@click.option("--engine", type=click.Choice(["builtin", *engines.SQL_ENGINES]),
              help="Count closed days nobody counted yet with this engine (default: MLOPS_AGGREGATE_ENGINE).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON result.")
@mlops_errors
def aggregate_command(engine: str | None, as_json: bool) -> None:
    """Count the log lines not counted yet into the hourly aggregates (what the aggregate_log job does:
    with MLOPS_LOG_STORE, the other hosts' records are pulled first)."""
    out = engines.aggregate(get_state(), engine=engine)
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    if "pulled" in out:
        pulled = out["pulled"]
        click.echo(f"log store: {pulled['grown']} of {pulled['files']} other hosts' file(s) grown here ({pulled['bytes']} bytes)")
    if "sql" in out:
        sql = out["sql"]
        click.echo(f"{out['engine']}: {len(sql['days'])} closed day(s) imported ({sql['records']} records, {sql['aggregates']} hourly "
                   f"aggregate(s)); {len(sql['skipped'])} left to the built-in path")
    click.echo(f"{out['records']} records from {out['files']} file(s) into {out['aggregates']} hourly aggregate(s); "
               f"{out['skipped_lines']} line(s) skipped, {out['conflicts']} batch(es) already counted elsewhere")
    for problem in out["problems"]:
        click.echo(f"  - {problem}")
