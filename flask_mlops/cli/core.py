"""Core commands: train, register-free bootstrap, versions, init-db."""

from __future__ import annotations

from pathlib import Path

import click

from ..extension import get_state
from ..registry import alias_version, list_versions, train_and_register
from .group import cli, echo_table, mlops_errors


@cli.command("init-db")
@mlops_errors
def init_db() -> None:
    """Create the mlops tables (init_app does it too; this is for deploy scripts)."""
    state = get_state()
    state.create_tables()
    click.echo(f"mlops tables ready on {state.engine.url.render_as_string(hide_password=True)}")


@cli.command("train")
@click.option("--name", required=True, help="Declared model name (MLOPS_MODELS).")
@click.option("--data", "data_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Training CSV (default: the model's `data`).")
@click.option("--target", help="Target column (default: the model's `target`).")
@click.option("--promote/--no-promote", default=None, help="Promote the new version (default: only if none is in production).")
@click.option("--if-missing", is_flag=True, help="Do nothing when the model already has a production version.")
@mlops_errors
def train(name: str, data_path: Path | None, target: str | None, promote: bool | None, if_missing: bool) -> None:
    """Train, register and (when allowed) promote a model."""
    state = get_state()
    state.config.model(name)
    if if_missing and alias_version(state, name) is not None:
        click.echo(f"{name}: production is v{alias_version(state, name)}; nothing to do (--if-missing)")
        return
    result, info = train_and_register(state, name, csv=data_path, target=target, promote=promote, actor="cli", progress=click.echo)
    if result.comparison:
        click.echo("")
        echo_table(result.comparison)
    click.echo("")
    click.echo(f"selected {result.candidate}; registered {name} v{info.version} (aliases: {', '.join(info.aliases) or 'none'})")
    for key in ("accuracy", "f1", "roc_auc"):
        if key in result.holdout:
            click.echo(f"  holdout {key}: {result.holdout[key]:.4f}")


@cli.command("versions")
@click.option("--name", required=False, help="Model name (default: every declared model).")
@mlops_errors
def versions(name: str | None) -> None:
    """List registered versions with their aliases and key metrics."""
    state = get_state()
    for model in [name] if name else state.config.model_names:
        click.echo(f"{model}:")
        rows = [
            {
                "version": v.version,
                "aliases": v.aliases,
                "status": v.status,
                "f1": v.metrics.get("f1"),
                "roc_auc": v.metrics.get("roc_auc"),
                "created": v.created_at,
            }
            for v in list_versions(state, model)
        ]
        echo_table(rows)
