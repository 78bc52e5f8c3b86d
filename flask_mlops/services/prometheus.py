"""Prometheus metrics: `GET /metrics`, one cheap call per tracked request, hooks for jobs.

Per app, a `Metrics` object (in `state.extras["metrics"]`) owns its metric objects; they
are never put in prometheus_client's global registry. Under gunicorn set
`PROMETHEUS_MULTIPROC_DIR` (an empty folder, cleared at start) in the master's
environment: each worker then writes its counters to memory-mapped files and a scrape of
any worker adds them all up (prometheus_client's multiprocess mode); call
`mark_worker_dead(worker.pid)` from gunicorn's `child_exit` hook so dead workers' live
gauges go away. What is shared state anyway — the production version of each model and
the registry's audit events — is read from the database at scrape time, so every worker
and host reports the same numbers.

Other modules report through the small functions below (`record_drift`, `record_health`,
`record_retrain`, `record_rollout`, `record_log_store`); they never touch prometheus_client themselves.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from ..store.models import Alias, AuditEvent
from .serving import PRODUCTION

if TYPE_CHECKING:
    from .serving import Prediction
    from .state import MLOpsState

logger = logging.getLogger(__name__)

_KEY = "metrics"
_LOCK = threading.Lock()
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LEVELS = {"ok": 0, "healthy": 0, "monitor": 1, "warning": 2, "critical": 3}
HEALTH = {"healthy": 0, "warning": 1, "critical": 2}


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


_WARNING_KEY = "metrics_setup_warning"
_warned_pid = 0


def gunicorn_workers() -> int | None:
    """Workers of the gunicorn server that is loading this app now; None outside gunicorn.

    gunicorn's master sets SERVER_SOFTWARE; the number of workers is in the config of the
    worker (or, with preload_app, the arbiter) whose method is loading the app: found by
    walking up the stack from init_app.
    """
    if not os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/"):
        return None
    frame = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        workers = getattr(getattr(owner, "cfg", None), "workers", None)
        if isinstance(workers, int) and type(owner).__module__.startswith("gunicorn."):
            return workers
        frame = frame.f_back  # type: ignore[assignment]
    return None


def check_server_setup(state: MLOpsState) -> str | None:
    """At init_app: several gunicorn workers without multiprocess mode -> a loud warning.

    Each worker would then count only its own requests, and a scrape shows whichever worker
    answered. The reason is kept for `/metrics` (a comment) and `/api/health` (`warnings`),
    and logged once per process.
    """
    global _warned_pid
    workers = gunicorn_workers()
    if workers is None or workers <= 1 or multiprocess_dir() is not None:
        return None
    reason = (
        f"gunicorn runs {workers} workers without PROMETHEUS_MULTIPROC_DIR: each /mlops/metrics scrape shows "
        "one worker's counters only; start gunicorn with `-c python:flask_mlops.gunicorn` (or import its hooks "
        "in your config, see docs/deployment.md)"
    )
    state.extras[_WARNING_KEY] = reason
    if _warned_pid != os.getpid():
        _warned_pid = os.getpid()
        logger.warning("flask-mlops: %s", reason)
    return reason


def setup_warnings(state: MLOpsState) -> list[str]:
    """What check_server_setup found wrong with this process's serving setup (empty when fine)."""
    reason = state.extras.get(_WARNING_KEY)
    return [reason] if reason else []


class Metrics:
    """The metric objects of one app (registered in a private registry outside multiprocess mode)."""

    def __init__(self, state: MLOpsState) -> None:
        self._state = state
        self.multiprocess = multiprocess_dir() is not None
        if self.multiprocess and prometheus_values.ValueClass is prometheus_values.MutexValue:
            # prometheus_client chose its value class when first imported; `-c python:flask_mlops.gunicorn`
            # sets PROMETHEUS_MULTIPROC_DIR after that (importing it imports this package first)
            prometheus_values.ValueClass = prometheus_values.get_value_class()
        self.predictions = Counter(
            "mlops_predictions", "Tracked prediction requests.", ["model", "version", "variant", "status"], registry=None
        )
        self.latency = Histogram(
            "mlops_prediction_latency_seconds",
            "Latency of tracked prediction requests.",
            ["model", "version", "variant"],
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        self.drift = Gauge(
            "mlops_drift_score",
            "Latest drift statistic per feature (PSI, KS statistic, ...).",
            ["model", "feature", "statistic"],
            registry=None,
            multiprocess_mode="mostrecent",
        )
        self.drift_level = Gauge(
            "mlops_drift_level", "Latest drift level: 0 ok, 1 monitor, 2 warning, 3 critical.", ["model"],
            registry=None, multiprocess_mode="mostrecent",
        )
        self.health = Gauge(
            "mlops_health_level", "Latest health: 0 healthy, 1 warning, 2 critical.", ["model"],
            registry=None, multiprocess_mode="mostrecent",
        )
        self.retrains = Counter(
            "mlops_retrain_events", "Retraining runs by trigger and outcome.", ["model", "trigger", "outcome"], registry=None
        )
        self.rollouts = Counter(
            "mlops_rollout_events", "Experiment and rollout steps by action.", ["model", "experiment", "action"], registry=None
        )
        self.unlogged = Counter(
            "mlops_log_unserialisable_features",
            "Feature values a prediction record could not carry (logged as null), by model and value type.",
            ["model", "cause"],
            registry=None,
        )
        self.log_failures = Counter(
            "mlops_prediction_log_failures", "Tracked requests whose record could not be written to the log (lost).", ["model"],
            registry=None,
        )
        self.log_failure_time = Gauge(
            "mlops_prediction_log_last_failure_timestamp_seconds", "When a record last could not be written (Unix time).", ["model"],
            registry=None, multiprocess_mode="max",
        )
        self.log_store_bytes = Counter(
            "mlops_log_store_bytes", "Prediction-log bytes moved through MLOPS_LOG_STORE by this host (ship: uploaded, pull: appended).",
            ["step"], registry=None,
        )
        self.log_store_failures = Counter(
            "mlops_log_store_failures", "Ships or pulls of the prediction log that failed (store unreachable, refused, a file not pulled).",
            ["step"], registry=None,
        )
        self.log_store_success = Gauge(
            "mlops_log_store_last_success_timestamp_seconds", "When a ship or pull last succeeded (Unix time).", ["step"],
            registry=None, multiprocess_mode="max",
        )
        self.unreported_losses: list[float] = [0, 0.0]  # lost records since the last error line, its time
        self._own = [
            self.predictions, self.latency, self.drift, self.drift_level, self.health, self.retrains, self.rollouts, self.unlogged,
            self.log_failures, self.log_failure_time, self.log_store_bytes, self.log_store_failures, self.log_store_success,
        ]
        # labelled children of the per-request metrics, cached: `labels()` costs more than `inc()`
        self._request_children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        if not self.multiprocess:
            for metric in self._own:
                self.registry.register(metric)
        self.registry.register(StateCollector(state))

    def observe(self, model: str, version: str, variant: str, status: int, seconds: float) -> None:
        key = (model, version, variant, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.predictions.labels(model, version, variant, str(status)),
                self.latency.labels(model, version, variant),
            )
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self) -> bytes:
        if not self.multiprocess:
            warnings = "".join(f"# WARNING: {w}\n" for w in setup_warnings(self._state))
            return warnings.encode() + bytes(generate_latest(self.registry))
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(StateCollector(self._state))
        return bytes(generate_latest(registry))


class StateCollector(Collector):
    """Numbers read from the database at scrape time: the same answer from every worker."""

    def __init__(self, state: MLOpsState) -> None:
        self._state = state

    def collect(self) -> Iterator[Any]:
        version = GaugeMetricFamily("mlops_production_version", "Version the production alias points at.", labels=["model"])
        events = CounterMetricFamily("mlops_registry_events", "Registry events from the audit trail (register, promote, rollback, ...).", labels=["model", "action"])
        try:
            with self._state.session() as session:
                aliases = dict(session.execute(select(Alias.model_name, Alias.version).where(Alias.alias == PRODUCTION)).all())
                counts = session.execute(
                    select(AuditEvent.model_name, AuditEvent.action, func.count()).group_by(AuditEvent.model_name, AuditEvent.action)
                ).all()
        except Exception as exc:  # database away: the process metrics still answer
            logger.warning("metrics: could not read the registry state: %s", exc)
            return
        for name in sorted(aliases):  # declared or registered undeclared
            version.add_metric([name], float(aliases[name]))
        for name, action, count in counts:
            events.add_metric([name, action], float(count))
        yield version
        yield events

    def describe(self) -> Iterator[Any]:
        return iter(())


def get_metrics(state: MLOpsState) -> Metrics:
    metrics = state.extras.get(_KEY)
    if metrics is None:
        with _LOCK:
            metrics = state.extras.get(_KEY)
            if metrics is None:
                metrics = state.extras[_KEY] = Metrics(state)
    return metrics  # type: ignore[no-any-return]


# -- hooks (cheap; never raise into the caller) ---------------------------------------------------
def observe_prediction(state: MLOpsState, model: str, result: Prediction | None, status: int, seconds: float) -> None:
    """Count one tracked request and its latency (called once per request by tracking.py).

    `result` is what `mlops.predict()` answered (None when the view did not call it or failed
    before: the production version is counted then).
    """
    try:
        metrics = state.extras.get(_KEY) or get_metrics(state)
        if result is not None:
            version: Any = result.version
            variant = result.variant or ""
        else:
            version, variant = state.models.production_versions().get(model), ""
        metrics.observe(model, "" if version is None else str(version), variant, status, seconds)
    except Exception:  # metrics must never break a prediction
        logger.exception("metrics: could not record a prediction")


#: at most one error line per process this often about lost records (a full disk is loud enough)
LOG_FAILURE_MESSAGE_EVERY_S = 60.0


def record_log_failure(state: MLOpsState, model: str, prediction_id: str, exc: BaseException) -> None:
    """A record could not be written: count it (metric, health, stats) and say so, rate-limited."""
    metrics = state.extras.get(_KEY) or get_metrics(state)
    metrics.log_failures.labels(model).inc()
    metrics.log_failure_time.labels(model).set(time.time())
    unreported = metrics.unreported_losses
    with _LOCK:
        unreported[0] += 1
        now = time.monotonic()
        if unreported[1] and now - unreported[1] < LOG_FAILURE_MESSAGE_EVERY_S:
            return
        lost, unreported[0], unreported[1] = unreported[0], 0, now
    logger.error(
        "prediction log: could not write record %s of %s (%s: %s); %d record(s) lost since the last message",
        prediction_id, model, type(exc).__name__, exc, lost,
    )


def log_failures(state: MLOpsState) -> dict[str, tuple[int, float]]:
    """Per model: records lost since the server started (every worker) and when the last was lost."""
    metrics = get_metrics(state)
    if metrics.multiprocess:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        families = list(registry.collect())
    else:
        families = [*metrics.log_failures.collect(), *metrics.log_failure_time.collect()]
    out: dict[str, list[float]] = {}
    for family in families:
        for sample in family.samples:
            model = sample.labels.get("model")
            if model is None:
                continue
            if sample.name == "mlops_prediction_log_failures_total":
                out.setdefault(model, [0, 0.0])[0] += sample.value
            elif sample.name == "mlops_prediction_log_last_failure_timestamp_seconds":
                entry = out.setdefault(model, [0, 0.0])
                entry[1] = max(entry[1], sample.value)
    return {model: (int(total), when) for model, (total, when) in out.items()}


def record_drift(state: MLOpsState, model: str, level: str | None, features: Mapping[str, Mapping[str, Any]]) -> None:
    """After a drift run: its level and each feature's statistics (`psi`, `ks_stat`, ...)."""
    metrics = get_metrics(state)
    if level in LEVELS:
        metrics.drift_level.labels(model).set(LEVELS[level])
    for feature, stats in features.items():
        for statistic in ("psi", "ks_stat", "chi2_stat", "js_distance"):
            value = stats.get(statistic)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics.drift.labels(model, feature, statistic).set(float(value))


def record_health(state: MLOpsState, model: str, status: str) -> None:
    """After a health evaluation: healthy / warning / critical."""
    if status in HEALTH:
        get_metrics(state).health.labels(model).set(HEALTH[status])


def record_retrain(state: MLOpsState, model: str, trigger: str, outcome: str) -> None:
    """One retraining run finished (`outcome`: promoted, rejected, failed, rollout, ...)."""
    get_metrics(state).retrains.labels(model, trigger, outcome).inc()


def record_rollout(state: MLOpsState, model: str, experiment: Any, action: str) -> None:
    """One experiment/rollout step (started, advanced, promoted, rolled_back, stopped, ...)."""
    get_metrics(state).rollouts.labels(model, str(experiment), action).inc()


def record_log_store(state: MLOpsState, step: str, moved: int, *, ok: bool) -> None:
    """One ship or pull through MLOPS_LOG_STORE: the bytes it moved, and whether it went through whole."""
    metrics = get_metrics(state)
    if moved:
        metrics.log_store_bytes.labels(step).inc(moved)
    if ok:
        metrics.log_store_success.labels(step).set(time.time())
    else:
        metrics.log_store_failures.labels(step).inc()


def record_unserialisable(state: MLOpsState, model: str, causes: Mapping[str, int]) -> None:
    """Feature values a prediction record was written without (`causes`: type name -> count)."""
    try:
        metrics = get_metrics(state)
        for cause, count in causes.items():
            metrics.unlogged.labels(model, cause).inc(count)
    except Exception:  # metrics must never break a prediction
        logger.exception("metrics: could not count unserialisable features")


def mark_worker_dead(pid: int) -> None:
    """For gunicorn's `child_exit(server, worker)` hook in multiprocess mode."""
    if multiprocess_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
