"""What the dashboard pages show, gathered from the modules that own it; each part degrades alone.

Every function returns plain dicts for the templates. A part whose backend is missing or
fails (no drift runs yet, experiments not set up, ...) comes back as
`{"available": False, "reason": "..."}` and the page says so instead of failing: one
broken panel never takes the whole dashboard down.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from ..errors import UnprocessableError
from ..monitoring import DriftCalculator, operational_metrics
from ..monitoring.health import Component, assess_health, operational_components
from ..services.catalog import model_names
from ..services.monitoring import WindowSpec
from ..services.registry import alias_version, list_versions, version_profile
from ..store.models import AuditEvent
from ..store.predictions import read_records

if TYPE_CHECKING:
    from ..services.state import MLOpsState

logger = logging.getLogger(__name__)

TRAFFIC_HOURS = 24
DRIFT_WINDOW = 1000  # most recent records the live drift check looks at
MAX_TRAFFIC_RECORDS = 500_000


def unavailable(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason}


def guarded(what: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one panel's loader; a missing backend or an error becomes an 'unavailable' panel."""
    try:
        return {"available": True, **fn()}
    except ModuleNotFoundError as exc:
        return unavailable(f"{what} is not available in this installation ({exc.name})")
    except Exception as exc:
        logger.exception("dashboard: could not load %s", what)
        return unavailable(f"could not load {what}: {type(exc).__name__}: {exc}")


def optional(target: str) -> Callable[..., Any] | None:
    """`module:function` if both exist (modules still being built are simply absent)."""
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise
    return getattr(module, func_name, None)


# -- traffic (from the prediction log) -----------------------------------------------------------
def traffic(state: MLOpsState, model: str, *, hours: int = TRAFFIC_HOURS, now: datetime | None = None) -> dict[str, Any]:
    """Requests, errors and latency per hour over the last `hours`, from the prediction log."""
    now = now or datetime.now(timezone.utc)
    start = (now - timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
    counts = np.zeros(hours, dtype=int)
    errors = np.zeros(hours, dtype=int)
    latencies: list[list[float]] = [[] for _ in range(hours)]
    start_ts = start.timestamp()
    n = 0
    for rec in read_records(state.log_dir, model=model, since=start, last=MAX_TRAFFIC_RECORDS):
        try:
            ts = datetime.fromisoformat(rec["ts"].replace("Z", "+00:00")).timestamp()
        except (AttributeError, ValueError):
            continue
        slot = int((ts - start_ts) // 3600)
        if not 0 <= slot < hours:
            continue
        n += 1
        counts[slot] += 1
        status = rec.get("status")
        if isinstance(status, int) and status >= 500:
            errors[slot] += 1
        latency = rec.get("latency_ms")
        if isinstance(latency, (int, float)):
            latencies[slot].append(float(latency))
    labels = [(start + timedelta(hours=i)).strftime("%H:00") for i in range(hours)]
    p95 = [float(np.percentile(v, 95)) if v else None for v in latencies]
    rate = [float(e / c) if c else None for e, c in zip(errors, counts, strict=True)]
    all_lat = [x for v in latencies for x in v]
    total_err = int(errors.sum())
    return {
        "hours": hours,
        "labels": labels,
        "counts": [int(c) for c in counts],
        "error_rate": rate,
        "latency_p95": p95,
        "n": n,
        "errors": total_err,
        "error_rate_total": (total_err / n) if n else None,
        "latency_p50_total": float(np.percentile(all_lat, 50)) if all_lat else None,
        "latency_p95_total": float(np.percentile(all_lat, 95)) if all_lat else None,
    }


# -- drift --------------------------------------------------------------------------------------
def live_drift(state: MLOpsState, model: str, version: int | None) -> dict[str, Any]:
    """Drift of the last DRIFT_WINDOW records of the production version against its reference."""
    if version is None:
        return {"status": "no_model", "message": "no production version: nothing to compare against"}
    profile = version_profile(state, model, version)
    if profile is None:
        return {"status": "no_profile", "message": f"v{version} was registered without reference data"}
    records = [
        r for r in read_records(state.log_dir, model=model, version=str(version), last=DRIFT_WINDOW)
        if isinstance(r.get("status"), int) and r["status"] < 400 and isinstance(r.get("features"), dict)
    ]
    names = list(profile["features"])
    columns = {n: np.asarray([_num(r["features"].get(n)) for r in records], dtype=float) if profile["features"][n]["type"] == "numeric"
               else np.asarray([r["features"].get(n) for r in records], dtype=object) for n in names}
    scores = [r.get("probability") if r.get("probability") is not None else r.get("prediction") for r in records]
    prediction = np.asarray([_num(s) for s in scores], dtype=float) if records else None
    window = {"last": DRIFT_WINDOW, "version": str(version)}
    calc = DriftCalculator.from_config(profile, state.config)
    report = calc.calculate(columns, prediction=prediction, window=window, n_rows=len(records))
    return report.to_dict()


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def drift_runs(state: MLOpsState, model: str) -> dict[str, Any]:
    """Stored drift runs (trend) and the latest HTML report, from the monitoring store when it exists."""
    loader = optional("flask_mlops.store.monitoring:list_drift_runs")
    message = "no drift runs yet: the scheduled drift check (or GET /api/monitoring/drift) stores them"
    if loader is None:
        return {"runs": [], "message": message}
    runs = [r if isinstance(r, dict) else r.to_dict() for r in loader(state, model=model, limit=30)]
    runs.reverse()  # oldest first, for the trend
    return {"runs": runs, "message": message if not runs else ""}


# -- health -------------------------------------------------------------------------------------
def health(state: MLOpsState, drift: dict[str, Any] | None, window: list[dict[str, Any]]) -> dict[str, Any]:
    """Health (monitoring's rule: the worst component) from live drift and recent error rate/latency."""
    cfg = state.config
    components = []
    if drift is not None and drift.get("status") == "ok":
        drifted = ", ".join(drift.get("drifted_features") or []) or "no feature drifted"
        components.append(Component("drift", drift.get("level"), f"drift {drift.get('level')}: {drifted}", drift.get("share_drifted")))
    elif drift is not None:
        components.append(Component("drift", None, str(drift.get("message") or drift.get("reason") or "drift not measurable")))
    if window:
        operational = operational_metrics(
            np.asarray([r.get("status") if isinstance(r.get("status"), int) else 200 for r in window], dtype=float),
            np.asarray([_num(r.get("latency_ms")) for r in window], dtype=float),
            error_thresholds=cfg.error_rate_thresholds,
            latency_thresholds=cfg.latency_p95_thresholds_ms,
        )
        components.extend(operational_components(operational))
    return dict(assess_health(components).to_dict())


# -- pages ------------------------------------------------------------------------------------------
def overview(state: MLOpsState) -> list[dict[str, Any]]:
    return [_model_overview(state, name) for name in model_names(state)]


def _model_overview(state: MLOpsState, name: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name}
    entry["production"] = guarded("the registry", lambda: {"version": alias_version(state, name)})
    entry["traffic"] = guarded("the prediction log", lambda: traffic(state, name))
    version = entry["production"].get("version")
    report_fn = optional("flask_mlops.services.monitoring:report")
    if report_fn is not None:  # monitoring's own verdict: drift, decay and operations
        report = guarded("monitoring", lambda: _service_report(state, report_fn, name))
        entry["health"] = {"available": True, **report["health"]} if report.get("available") else report
        entry["drift"] = {"available": True, **report["drift"]} if report.get("available") else report
    else:
        drift = guarded("drift", lambda: live_drift(state, name, version))
        recent = list(read_records(state.log_dir, model=name, last=DRIFT_WINDOW))
        entry["health"] = guarded("health", lambda: health(state, drift, recent))
        entry["drift"] = drift
    return entry


def _service_report(state: MLOpsState, report_fn: Callable[..., Any], model: str) -> dict[str, Any]:
    return dict(report_fn(state, WindowSpec(model=model, last=DRIFT_WINDOW), persist=False))


def _live(state: MLOpsState, model: str, version: int | None) -> dict[str, Any]:
    """Drift of the recent window: monitoring's service when present, else the core calculator here."""
    drift_fn = optional("flask_mlops.services.monitoring:drift")
    if drift_fn is None:
        return live_drift(state, model, version)

    try:
        return dict(drift_fn(state, WindowSpec(model=model, last=DRIFT_WINDOW), persist=False).to_dict())
    except UnprocessableError as exc:
        return {"status": "no_reference", "level": None, "message": exc.message}


def drift_page(state: MLOpsState) -> list[dict[str, Any]]:
    return [_model_drift(state, name) for name in model_names(state)]


def _model_drift(state: MLOpsState, name: str) -> dict[str, Any]:
    version = alias_version(state, name)
    return {
        "name": name,
        "version": version,
        "live": guarded("drift", lambda: _live(state, name, version)),
        "runs": guarded("drift runs", lambda: drift_runs(state, name)),
        "psi_thresholds": list(state.config.drift_psi_thresholds),
    }


def models_page(state: MLOpsState) -> list[dict[str, Any]]:
    return [_model_versions(state, name) for name in model_names(state)]


def _model_versions(state: MLOpsState, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "versions": guarded("the registry", lambda: {"items": [v.to_dict() for v in list_versions(state, name)]}),
        "audit": guarded("the audit trail", lambda: {"items": audit_trail(state, name)}),
    }


def audit_trail(state: MLOpsState, model: str, limit: int = 20) -> list[dict[str, Any]]:
    with state.session() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.model_name == model).order_by(AuditEvent.id.desc()).limit(limit)).all()
        return [
            {"ts": r.ts.strftime("%Y-%m-%d %H:%M:%S") if r.ts else None, "action": r.action, "version": r.version,
             "previous_version": r.previous_version, "actor": r.actor, "reason": r.reason}
            for r in rows
        ]


def experiments_page(state: MLOpsState) -> dict[str, Any]:
    def load() -> dict[str, Any]:
        lister = optional("flask_mlops.services.experiments:list_experiments")
        if lister is None:
            return {"items": [], "message": "experiments are not set up in this installation"}
        results = optional("flask_mlops.services.experiments:experiment_results")
        items = []
        for exp in lister(state, limit=20):
            entry: dict[str, Any] = {"experiment": exp, "results": None}
            if results is not None and exp.get("status") == "running":
                entry["results"] = _results(state, results, exp["id"])
            items.append(entry)
        return {"items": items}

    return guarded("experiments", load)


def _results(state: MLOpsState, results: Callable[..., Any], experiment_id: int) -> dict[str, Any]:
    return guarded("results", lambda: dict(results(state, experiment_id)))


def jobs_page(state: MLOpsState) -> dict[str, Any]:
    def load() -> dict[str, Any]:
        overview_fn = optional("flask_mlops.services.scheduler:overview")
        if overview_fn is None:
            return {"jobs": [], "message": "the scheduler is not available in this installation"}
        return dict(overview_fn(state))

    return guarded("jobs", load)
