"""The built-in scheduled jobs (adapters: each calls one service function).

Importing this package registers them with the scheduler's job registry; the extension
imports it in `init_app`. A job is `f(state) -> JSON-able result`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..services.scheduler import register_job

if TYPE_CHECKING:
    from ..extension import MLOpsState


@register_job("drift_check", schedule_key="MLOPS_DRIFT_CRON")
def drift_check(state: MLOpsState) -> Any:
    """Drift check of every declared model's recent window; alerts on warning/critical."""
    from ..jobs.monitoring import drift_check as run

    return run(state)


@register_job("retrain_check", schedule_key="MLOPS_RETRAIN_CRON")
def retrain_check(state: MLOpsState) -> Any:
    """Retrain when a trigger fires (drift, decay, new labels, schedule)."""
    from ..services.retraining import scheduled_check

    if state.config.retrain_by != "app":  # one place decides: the workflow retrains, this job stands down
        return {"skipped": "scheduled retraining runs in the workflow (MLOPS_RETRAIN_BY=workflow)"}
    return scheduled_check(state)


@register_job("rollout_evaluation", schedule_key="MLOPS_ROLLOUT_INTERVAL_S")
def rollout_evaluation(state: MLOpsState) -> Any:
    """Advance, hold or roll back running gradual rollouts."""
    from ..services.experiments import evaluate_rollouts

    decisions = evaluate_rollouts(state)
    return {"rollouts": decisions} if isinstance(decisions, list) else decisions


@register_job("log_retention", schedule_key="MLOPS_RETENTION_CRON")
def log_retention(state: MLOpsState) -> Any:
    """Delete daily prediction log files older than MLOPS_LOG_RETENTION_DAYS."""
    from ..store.predictions import purge_older_than

    days = state.config.log_retention_days
    removed = purge_older_than(state.log_dir, days)
    return {"retention_days": days, "removed": [p.name for p in removed]}
