"""Training commands: train (CV, register, promote through the gates), versions; and init-db for deploy scripts."""

from __future__ import annotations

from pathlib import Path

import click

from ..services.catalog import model_names, model_spec
from ..services.lifecycle import train_and_register
from ..services.registry import alias_version, list_versions
from ..services.state import get_state
from ..tasks import task_for
from .group import cli, echo_table, mlops_errors


@cli.command("init-db")
@mlops_errors
def init_db() -> None:
    """Create the mlops tables: the deploy step (init_app tries once but boots without the database; see docs/deployment.md)."""
    state = get_state()
    state.create_tables()
    click.echo(f"mlops tables ready on {state.engine.url.render_as_string(hide_password=True)}")


@cli.command("train")
@click.option("--name", required=True, help="Declared model name (MLOPS_MODELS).")
@click.option("--data", "data_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Training CSV (default: the model's `data`).")
@click.option("--target", help="Target column (default: the model's `target`).")
@click.option("--promote/--no-promote", default=True, help="Promote the new version if it passes the gates (default) or only register it.")
@click.option("--if-missing", is_flag=True, help="Do nothing when the model already has a production version.")
@mlops_errors
def train(name: str, data_path: Path | None, target: str | None, promote: bool, if_missing: bool) -> None:
    """Train, register and (when allowed) promote a model."""
    from ..training import format_comparison  # scikit-learn: only for this command, not at app start-up

    state = get_state()
    model_spec(state, name)
    if if_missing and alias_version(state, name) is not None:
        click.echo(f"{name}: production is v{alias_version(state, name)}; nothing to do (--if-missing)")
        return
    result, outcome = train_and_register(state, name, csv=data_path, target=target, promote=promote, actor="cli", progress=click.echo)
    click.echo("")
    click.echo(format_comparison(result))
    click.echo("")
    click.echo(f"selected {result.candidate}; registered {name} v{outcome['version']} ({outcome['semver']})")
    for key in task_for(result.task).metrics:
        if isinstance(result.holdout.get(key), (int, float)):
            click.echo(f"  holdout {key}: {result.holdout[key]:.4f}")
    if outcome["promoted"]:
        click.echo(f"promoted {name} v{outcome['version']} to production")
    elif promote:
        raise click.ClickException(f"{name} v{outcome['version']} was registered but not promoted: {outcome['reason']}")


@cli.command("versions")
@click.option("--name", required=False, help="Model name (default: every declared model).")
@mlops_errors
def versions(name: str | None) -> None:
    """List registered versions with their aliases and key metrics."""
    state = get_state()
    for model in [name] if name else model_names(state):
        click.echo(f"{model}:")
        rows = [
            {
                "version": v.version,
                "aliases": v.aliases,
                "status": v.status,
                **{m: v.metrics.get(m) for m in task_for(model_spec(state, model).task, recorded=(v.tags or {}).get("task")).compare},
                "created": v.created_at,
            }
            for v in list_versions(state, model)
        ]
        echo_table(rows)
