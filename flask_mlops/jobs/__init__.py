"""The built-in scheduled jobs (adapters: each calls one service function).

Importing this package registers them with the scheduler's job registry; the extension
imports it in `init_app`. A job is `f(state) -> JSON-able result`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..jobs.monitoring import drift_check as run
from ..services.aggregation import purge as purge_aggregates
from ..services.engines import aggregate, compact_parquet
from ..services.experiments import evaluate_rollouts
from ..services.logsync import pull as pull_log
from ..services.logsync import purge as purge_store
from ..services.monitoring import purge_reports
from ..services.retraining import retrain_queue, scheduled_check
from ..services.scheduler import check_fence, register_job
from ..store import day_cache, parquet
from ..store.predictions import purge_older_than, relative_name

if TYPE_CHECKING:
    from ..services.state import MLOpsState


@register_job("drift_check", schedule_key="MLOPS_DRIFT_CRON")
def drift_check(state: MLOpsState) -> Any:
    """Drift check of every declared model's recent window; alerts on warning/critical."""
    pull_log(state)  # with MLOPS_LOG_STORE: the other hosts' records shipped until now
    return run(state)


@register_job("retrain_check", schedule_key="MLOPS_RETRAIN_CRON")
def retrain_check(state: MLOpsState) -> Any:
    """Retrain when a trigger fires (drift, decay, new labels, schedule)."""
    if state.config.retrain_by != "app":  # one place decides: the workflow retrains, this job stands down
        return {"skipped": "scheduled retraining runs in the workflow (MLOPS_RETRAIN_BY=workflow)"}
    return scheduled_check(state)


@register_job("retrain_queue", schedule_key="MLOPS_RETRAIN_QUEUE_INTERVAL_S")
def retrain_queue_job(state: MLOpsState) -> Any:
    """Run a retraining the API queued (when it could not start a separate process)."""
    return retrain_queue(state)


@register_job("rollout_evaluation", schedule_key="MLOPS_ROLLOUT_INTERVAL_S")
def rollout_evaluation(state: MLOpsState) -> Any:
    """Advance, hold or roll back running gradual rollouts."""
    decisions = evaluate_rollouts(state)
    return {"rollouts": decisions} if isinstance(decisions, list) else decisions


@register_job("aggregate_log", schedule_key="MLOPS_AGGREGATE_CRON")
def aggregate_log(state: MLOpsState) -> Any:
    """Count the prediction-log lines not counted yet into the hourly aggregates (each exactly once); closed days
    nobody counted go through the SQL engine when MLOPS_AGGREGATE_ENGINE is duckdb or spark."""
    return aggregate(state)  # with MLOPS_LOG_STORE it pulls the other hosts' records first


@register_job("log_retention", schedule_key="MLOPS_RETENTION_CRON")
def log_retention(state: MLOpsState) -> Any:
    """Delete daily prediction log files (their columnar caches, Parquet partitions, hourly aggregates and offsets) older than MLOPS_LOG_RETENTION_DAYS,
    and drift runs with their reports older than MLOPS_REPORT_RETENTION_DAYS."""
    days = state.config.log_retention_days
    check_fence()  # deleting is for the lease holder only
    removed = purge_older_than(state.log_dir, days)
    caches = day_cache.purge_older_than(state.log_dir, days)  # a day's columnar cache goes with its file
    partitions = parquet.purge_older_than(state.log_dir, days)  # and its Parquet partitions
    reports = purge_reports(state, state.config.report_retention_days)
    aggregates = purge_aggregates(state, days)  # the hourly aggregates and file offsets go with the log
    store_days = purge_store(state, days)  # and the log store's days (MLOPS_LOG_STORE)
    return {
        "retention_days": days,
        "removed": [relative_name(state.log_dir, p) for p in removed],
        "caches_removed": [day_cache.relative_name(state.log_dir, p) for p in caches],
        "parquet_partitions_removed": [f"{p.parent.name}/{p.name}" for p in partitions],
        "report_retention_days": state.config.report_retention_days,
        "reports_removed": reports,
        "aggregates_removed": aggregates,
        "store_days_removed": store_days,
    }


@register_job("parquet_compaction", schedule_key="MLOPS_PARQUET_CRON")
def parquet_compaction(state: MLOpsState) -> Any:
    """Compact closed days of the log into the Hive-partitioned Parquet layout (<log_dir>/parquet)."""
    check_fence()  # one writer of the layout: the lease holder
    pull_log(state)
    return compact_parquet(state)
