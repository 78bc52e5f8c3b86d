"""The `flask mlops` command group; area modules add their commands to `cli`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click
from flask.cli import AppGroup

from ..errors import MLOpsError
from ..store.availability import first_line, is_unavailable

cli = AppGroup("mlops", help="flask-mlops: train, register, monitor and operate models.")


def mlops_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn MLOpsError and an unreachable database into a ClickException (clean message, exit code 1)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MLOpsError as exc:
            raise click.ClickException(exc.message or str(exc)) from exc
        except Exception as exc:
            if is_unavailable(exc):
                raise click.ClickException(f"the mlops database is unreachable: {first_line(exc)}") from exc
            raise

    return wrapper


def echo_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """Print rows as an aligned text table."""
    if not rows:
        click.echo("(none)")
        return
    columns = columns or list(rows[0])
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    click.echo("  ".join("-" * w for w in widths))
    for r in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)

