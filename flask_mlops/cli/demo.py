"""`flask mlops demo`: a minute of realistic traffic, a drift episode and delayed labels for a running app."""

from __future__ import annotations

import click

from ..services.demo import DemoPlan, admin_token, run_demo
from ..services.state import get_state
from .group import cli, mlops_errors


def _shift(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, float] | None:
    out: dict[str, float] = {}
    for value in values:
        name, sep, amount = value.partition("=")
        try:
            out[name.strip()] = float(amount)
        except ValueError:
            raise click.BadParameter(f"expected FEATURE=AMOUNT, got {value!r}") from None
        if not sep or not name.strip():
            raise click.BadParameter(f"expected FEATURE=AMOUNT, got {value!r}")
    return out or None


@cli.command("demo")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="The running app (make run serves it here).")
@click.option("--model", help="The declared model to drive (default: the only one).")
@click.option("--path", "predict_path", default="/predict", show_default=True, help="The app's prediction route (POST, JSON).")
@click.option("--token", envvar="MLOPS_DEMO_TOKEN", help="Admin token for the feedback API (default: MLOPS_API_TOKEN, then instance/dev-token).")
@click.option("--normal", default=400, show_default=True, type=click.IntRange(0, 100_000), help="Predictions before the drift episode.")
@click.option("--drifted", default=400, show_default=True, type=click.IntRange(0, 100_000), help="Predictions during the drift episode.")
@click.option("--shift", multiple=True, callback=_shift, metavar="FEATURE=AMOUNT",
              help="Added to a feature during the episode (repeatable; default: the feature most correlated with the label, +1.5 sd).")
@click.option("--labels", "label_share", default=0.8, show_default=True, type=click.FloatRange(0, 1), help="Share of predictions that get a label.")
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--no-checks", is_flag=True, help="Do not run the drift check job here at the end (the scheduler would, at MLOPS_DRIFT_CRON).")
@mlops_errors
def demo(url: str, model: str | None, predict_path: str, token: str | None, normal: int, drifted: int,
         shift: dict[str, float] | None, label_share: float, threads: int, seed: int, no_checks: bool) -> None:
    """Drive a running app: normal traffic, a drift episode, delayed labels, then the checks.

    Run it from the app's own folder (the drift check job at the end writes to the app's
    database, as the scheduler would); the dashboard then shows drift, performance, health,
    an alert and a retrain proposal.
    """
    state = get_state()
    plan = DemoPlan(normal=normal, drifted=drifted, shift=shift, label_share=label_share, threads=threads, seed=seed)
    result = run_demo(
        state, url=url, token=admin_token(state, token), model=model, predict_path=predict_path,
        plan=plan, run_checks=not no_checks, echo=click.echo,
    )
    prefix = state.config.url_prefix
    click.echo(f"\ndone in {result.seconds:.0f} s: {result.sent} predictions ({result.failed} failed), {result.labelled} labels")
    click.echo(f"look at: {url.rstrip('/')}{prefix}/  (overview), {prefix}/drift, {prefix}/performance, {prefix}/models")
