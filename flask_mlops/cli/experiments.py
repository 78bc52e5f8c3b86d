"""`flask mlops experiment ...` and `flask mlops rollout ...` (thin: parse → call → print)."""

from __future__ import annotations

import json
from typing import Any

import click

from ..services import experiments as service
from ..services.state import get_state
from .group import cli, echo_table, mlops_errors


def _json_option(value: str | None, name: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=name) from exc


def _echo(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@cli.group("experiment")
def experiment() -> None:
    """A/B experiments between two versions of a model."""


@experiment.command("start")
@click.option("--model", "model", required=True, help="Declared model name.")
@click.option("--treatment", "treatment", type=int, required=True, help="Treatment version.")
@click.option("--control", "control", type=int, help="Control version (default: production).")
@click.option("--share", type=float, default=0.5, show_default=True, help="Treatment's traffic share.")
@click.option("--metric", type=click.Choice(service.METRICS), default=None, help="Default: the task's outcome (accuracy; abs_error for regression).")
@click.option("--mde", type=float, help="Absolute change of the metric worth detecting (default: 0.05, less near a perfect baseline; 10 % of the MAE for abs_error).")
@click.option("--plan", "plan_json", help='Plan as JSON, e.g. {"alpha": 0.05, "power": 0.8}.')
@click.option("--guardrails", "guardrails_json", help='Guardrails as JSON, e.g. {"max_error_ratio": 2}.')
@click.option("--name", help="A label for the experiment.")
@mlops_errors
def experiment_start(model: str, treatment: int, control: int | None, share: float, metric: str | None, mde: float | None,
                     plan_json: str | None, guardrails_json: str | None, name: str | None) -> None:
    """Start an experiment (one running experiment per model)."""
    plan = _json_option(plan_json, "--plan") or {}
    if mde is not None:
        plan["mde"] = mde
    created = service.create_experiment(
        get_state(), model, treatment, control_version=control, share=share, metric=metric, plan=plan,
        guardrails=_json_option(guardrails_json, "--guardrails"), name=name, actor="cli",
    )
    click.echo(f"experiment {created['id']}: {model} v{created['control_version']} (control) vs "
               f"v{created['treatment_version']} (treatment) at {created['share']:.0%}")


@experiment.command("list")
@click.option("--model", help="Only this model.")
@click.option("--status", help="running, stopped, promoted, rolled_back or completed.")
@mlops_errors
def experiment_list(model: str | None, status: str | None) -> None:
    """List experiments, newest first."""
    rows = service.list_experiments(get_state(), model=model, status=status)
    echo_table(rows, ["id", "model", "kind", "status", "control_version", "treatment_version", "share", "created_at"])


@experiment.command("show")
@click.argument("experiment_id", type=int)
@mlops_errors
def experiment_show(experiment_id: int) -> None:
    """Show one experiment."""
    _echo(service.get_experiment(get_state(), experiment_id))


@experiment.command("results")
@click.argument("experiment_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print every statistic as JSON.")
@mlops_errors
def experiment_results(experiment_id: int, as_json: bool) -> None:
    """Statistics and verdict of an experiment."""
    results = service.experiment_results(get_state(), experiment_id)
    if as_json:
        _echo(results)
        return
    echo_table([{"variant": v, **results[v]} for v in ("control", "treatment")],
               ["variant", "n", "error_rate", "labelled", "rate", "latency_p95_ms"])
    z, bayes = results["ztest"], results["bayes"]
    click.echo(f"diff {z['diff']}  p={z['p_value']}  P(treatment better)={bayes['prob_treatment_better']}")
    click.echo(f"SRM p={results['srm']['p_value']}  mismatch={results['srm']['mismatch']}")
    verdict = results["verdict"]
    click.echo(f"verdict: {verdict['action']}")
    for reason in verdict["reasons"]:
        click.echo(f"  - {reason}")


@experiment.command("stop")
@click.argument("experiment_id", type=int)
@click.option("--reason", help="Why (kept in the audit trail).")
@mlops_errors
def experiment_stop(experiment_id: int, reason: str | None) -> None:
    """Stop an experiment; everyone gets production again."""
    service.stop_experiment(get_state(), experiment_id, actor="cli", reason=reason)
    click.echo(f"experiment {experiment_id} stopped")


@experiment.command("promote")
@click.argument("experiment_id", type=int)
@click.option("--reason", help="Why (kept in the audit trail).")
@mlops_errors
def experiment_promote(experiment_id: int, reason: str | None) -> None:
    """Promote the treatment to production and end the experiment."""
    data = service.promote_experiment(get_state(), experiment_id, actor="cli", reason=reason)
    click.echo(f"experiment {experiment_id}: {data['model']} v{data['treatment_version']} is now production")


@cli.group("rollout")
def rollout() -> None:
    """Gradual rollouts with guardrails."""


@rollout.command("start")
@click.option("--model", "model", required=True, help="Declared model name.")
@click.option("--treatment", "treatment", type=int, required=True, help="Version to roll out.")
@click.option("--stages", "stages_json", help='Stages as JSON, e.g. [{"share": 0.05, "min_duration_s": 3600, "min_samples": 500}, ...].')
@click.option("--guardrails", "guardrails_json", help="Guardrails as JSON.")
@click.option("--on-breach", type=click.Choice(["keep", "archive"]), default="keep", show_default=True)
@click.option("--require-accuracy", is_flag=True, help="Hold each stage until accuracy can be judged.")
@mlops_errors
def rollout_start(model: str, treatment: int, stages_json: str | None, guardrails_json: str | None,
                  on_breach: str, require_accuracy: bool) -> None:
    """Start a gradual rollout (default 5 % → 20 % → 50 % → 100 %)."""
    data = service.start_rollout(
        get_state(), model, treatment, stages=_json_option(stages_json, "--stages"),
        guardrails=_json_option(guardrails_json, "--guardrails"), on_breach=on_breach,
        require_accuracy=require_accuracy, actor="cli",
    )
    click.echo(f"rollout {data['id']}: {model} v{treatment} at {data['share']:.0%} (experiment {data['experiment_id']})")


@rollout.command("show")
@click.argument("rollout_id", type=int)
@mlops_errors
def rollout_show(rollout_id: int) -> None:
    """Show a rollout with its last decision."""
    _echo(service.get_rollout(get_state(), rollout_id))


@rollout.command("list")
@click.option("--model", help="Only this model.")
@mlops_errors
def rollout_list(model: str | None) -> None:
    """List rollouts, newest first."""
    echo_table(service.list_rollouts(get_state(), model=model),
               ["id", "model", "status", "stage", "share", "treatment_version", "stage_started_at"])


@rollout.command("evaluate")
@mlops_errors
def rollout_evaluate() -> None:
    """Evaluate every running rollout now (what the scheduler does on its interval)."""
    for decision in service.evaluate_rollouts(get_state()):
        click.echo(f"rollout {decision['rollout_id']}: {decision['action']} → share {decision['new_share']}")
        for reason in decision["reasons"]:
            click.echo(f"  - {reason}")
