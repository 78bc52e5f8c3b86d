"""`flask mlops logs ship | pull | status`: the prediction log through the object store (MLOPS_LOG_STORE)."""

from __future__ import annotations

import click

from ..services.logsync import pull as pull_log
from ..services.logsync import ship as ship_log
from ..services.logsync import status as ship_status
from ..services.state import get_state
from ..store.logstore import shown
from .group import cli, echo_table, mlops_errors


@cli.group("logs")
def logs() -> None:
    """The prediction log in an object store (MLOPS_LOG_STORE): ship this host's files, pull the others'."""


def _store_failed(exc: OSError) -> click.ClickException:
    return click.ClickException(f"the log store is unreachable or refused: {str(exc).strip().splitlines()[0]}")


@logs.command("ship")
@mlops_errors
def ship() -> None:
    """Upload what this host's log files grew by since the last ship (whole lines only).

    Under gunicorn with flask_mlops.gunicorn's hooks one worker per host already does this
    every MLOPS_LOG_SYNC_INTERVAL_S; run it from cron on hosts served otherwise.
    """
    state = get_state()
    try:
        result = ship_log(state)
    except OSError as exc:
        raise _store_failed(exc) from exc
    if result is None:
        raise click.ClickException("MLOPS_LOG_STORE is not set: nothing to ship to")
    click.echo(f"shipped {result.segments} segment(s), {result.bytes} bytes, of {result.shipped_files} of this host's "
               f"{result.files} file(s) (writer {state.log_writer.writer}) to {shown(state.config.log_store)}"
               + (f"; {result.consolidated} closed file(s) uploaded whole in place of their segments" if result.consolidated else ""))
    for problem in result.problems:
        click.echo(f"  {problem}", err=True)


@logs.command("pull")
@click.option("--days", type=click.IntRange(1), help="UTC days to bring in, today included (default: MLOPS_LOG_PULL_DAYS).")
@mlops_errors
def pull(days: int | None) -> None:
    """Bring the other hosts' shipped log files into MLOPS_LOG_DIR (local files only grow)."""
    state = get_state()
    try:
        result = pull_log(state, days=days)
    except OSError as exc:
        raise _store_failed(exc) from exc
    if result is None:
        raise click.ClickException("MLOPS_LOG_STORE is not set: nothing to pull from")
    click.echo(f"pulled {result.bytes} bytes into {result.grown} of {result.files} file(s) of other hosts "
               f"({result.days} day(s)) from {shown(state.config.log_store)}")
    for problem in result.problems:
        click.echo(f"  {problem}", err=True)
    if result.problems:
        raise click.ClickException(f"{len(result.problems)} file(s) could not be pulled")


@logs.command("status")
@mlops_errors
def status() -> None:
    """This host's log files: bytes written, shipped and not shipped yet (a line being written waits)."""
    state = get_state()
    rows = ship_status(state)
    click.echo(f"writer {state.log_writer.writer}, store {shown(state.config.log_store)}, "
               f"{sum(r['pending'] for r in rows)} byte(s) not shipped yet")
    echo_table(rows)
