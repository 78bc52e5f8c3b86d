"""What the dashboard pages show, gathered from the modules that own it; each part degrades alone.

Every function returns plain dicts for the templates. A part whose backend is missing or
fails (no drift runs yet, experiments not set up, ...) comes back as
`{"available": False, "reason": "..."}` and the page says so instead of failing: one
broken panel never takes the whole dashboard down.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from ..errors import UnprocessableError
from ..services import experiments, lifecycle, monitoring, scheduler, timeline
from ..services.catalog import model_names, model_spec
from ..services.fleet import fleet_status
from ..services.lifecycle import version_task
from ..services.monitoring import WindowSpec
from ..services.registry import alias_version, list_versions
from ..store.columnar import read_window
from ..store.models import AuditEvent
from ..store.monitoring import list_drift_runs

if TYPE_CHECKING:
    from ..services.state import MLOpsState

logger = logging.getLogger(__name__)

TRAFFIC_HOURS = 24
DRIFT_WINDOW = 1000  # most recent records the live drift check looks at


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


# -- traffic (from the prediction log) -----------------------------------------------------------
def traffic(state: MLOpsState, model: str, *, hours: int = TRAFFIC_HOURS, now: datetime | None = None) -> dict[str, Any]:
    """Requests, errors (5xx, as in `operations`) and latency per hour over the last `hours` (the
    chart), from the columnar window read, and the window's totals from monitoring's `operations`
    (the same numbers the API and the health verdict use)."""
    now = now or datetime.now(timezone.utc)
    start = (now - timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
    window = WindowSpec(model=model, since=start, until=now)
    win = read_window(state.log_dir, model=model, since=start, until=now, features=(), open_days=state.open_days)
    slot = (win.ts - np.datetime64(start.replace(tzinfo=None), "us")) // np.timedelta64(1, "h")
    inside = (slot >= 0) & (slot < hours)
    slot = slot[inside].astype(np.int64)
    counts = np.bincount(slot, minlength=hours)
    errors = np.bincount(slot, weights=(win.status[inside] >= 500), minlength=hours)
    latency = win.latency_ms[inside]
    known = ~np.isnan(latency)
    by_slot, values = slot[known], latency[known]
    order = np.argsort(by_slot, kind="stable")
    groups = np.split(values[order], np.searchsorted(by_slot[order], np.arange(1, hours)))
    p95 = [float(np.percentile(g, 95)) if g.size else None for g in groups]
    labels = [(start + timedelta(hours=i)).strftime("%H:00") for i in range(hours)]
    rate = [float(e / c) if c else None for e, c in zip(errors, counts, strict=True)]
    ops = monitoring.operations(state, window)
    return {
        "hours": hours,
        "labels": labels,
        "counts": [int(c) for c in counts],
        "error_rate": rate,
        "latency_p95": p95,
        "n": ops["n_requests"],
        "errors": ops["n_errors"],
        "error_rate_total": ops["error_rate"],
        "latency_p50_total": ops["latency_p50_ms"],
        "latency_p95_total": ops["latency_p95_ms"],
    }


# -- drift --------------------------------------------------------------------------------------
def drift_runs(state: MLOpsState, model: str) -> dict[str, Any]:
    """Stored drift runs (the trend, oldest first)."""
    with state.session() as session:
        runs = list_drift_runs(session, model=model, limit=30)
    runs.reverse()
    message = "no drift runs yet: the scheduled drift check (or flask mlops drift) stores them"
    return {"runs": runs, "message": message if not runs else ""}


# -- pages ------------------------------------------------------------------------------------------
def overview(state: MLOpsState) -> list[dict[str, Any]]:
    return [_model_overview(state, name) for name in model_names(state)]


def _model_overview(state: MLOpsState, name: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name}
    entry["production"] = guarded("the registry", lambda: {"version": alias_version(state, name)})
    entry["traffic"] = guarded("the prediction log", lambda: traffic(state, name))
    # monitoring's own verdict (drift, decay and operations), not persisted: reading a page changes nothing
    report = guarded("monitoring", lambda: dict(monitoring.report(state, WindowSpec(model=name, last=DRIFT_WINDOW), persist=False)))
    entry["health"] = {"available": True, **report["health"]} if report.get("available") else report
    entry["drift"] = {"available": True, **report["drift"]} if report.get("available") else report
    return entry


def _live(state: MLOpsState, model: str) -> dict[str, Any]:
    """Drift of the recent window (monitoring's `drift`, not persisted)."""
    try:
        return dict(monitoring.drift(state, WindowSpec(model=model, last=DRIFT_WINDOW), persist=False).to_dict())
    except UnprocessableError as exc:
        return {"status": "no_reference", "level": None, "message": exc.message}


def drift_page(state: MLOpsState) -> list[dict[str, Any]]:
    return [_model_drift(state, name) for name in model_names(state)]


def _model_drift(state: MLOpsState, name: str) -> dict[str, Any]:
    version = alias_version(state, name)
    return {
        "name": name,
        "version": version,
        "live": guarded("drift", lambda: _live(state, name)),
        "runs": guarded("drift runs", lambda: drift_runs(state, name)),
        "psi_thresholds": list(state.config.drift_psi_thresholds),
    }


def fleet_panel(state: MLOpsState) -> dict[str, Any]:
    """Which version each worker on each host serves (the live ones first)."""
    def load() -> dict[str, Any]:
        found = fleet_status(state).to_dict()
        return {**found, "members": sorted(found["members"], key=lambda m: not m["live"])}

    return guarded("the fleet", load)


def models_page(state: MLOpsState) -> list[dict[str, Any]]:
    return [_model_versions(state, name) for name in model_names(state)]


def _model_versions(state: MLOpsState, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "columns": _version_columns(state, name),
        "versions": guarded("the registry", lambda: {"items": [v.to_dict() for v in list_versions(state, name)]}),
        "rollback": guarded("rollback", lambda: {"to": lifecycle.rollback_target(state, name)}),
        "audit": guarded("the audit trail", lambda: {"items": audit_trail(state, name)}),
    }


#: holdout metrics shown per version, by task kind
VERSION_COLUMNS = {
    "binary": (("accuracy", "Accuracy"), ("f1", "F1"), ("roc_auc", "ROC-AUC")),
    "multiclass": (("accuracy", "Accuracy"), ("f1_macro", "F1 macro"), ("log_loss", "Log loss")),
    "regression": (("mae", "MAE"), ("rmse", "RMSE"), ("r2", "R²")),
}


def _version_columns(state: MLOpsState, name: str) -> list[tuple[str, str]]:
    """The production version's task decides the columns (the declaration when none is in production)."""
    try:
        production = alias_version(state, name)
        kind = version_task(state, name, production).kind
    except Exception:  # noqa: BLE001 - a page never breaks on a missing backend
        kind = "regression" if model_spec(state, name).task == "regression" else "binary"
    return list(VERSION_COLUMNS[kind])


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
        items = []
        for exp in experiments.list_experiments(state, limit=20):
            entry: dict[str, Any] = {"experiment": exp, "results": None}
            if exp.get("status") == "running":
                entry["results"] = _results(state, int(exp["id"]))
            items.append(entry)
        return {"items": items}

    return guarded("experiments", load)


def _results(state: MLOpsState, experiment_id: int) -> dict[str, Any]:
    def load() -> dict[str, Any]:
        results = dict(experiments.experiment_results(state, experiment_id))
        bayes = results.get("bayes")
        if isinstance(bayes, dict):
            results["posterior_curves"] = posterior_curves(bayes)
        return results

    return guarded("results", load)


def posterior_curves(bayes: dict[str, Any], points: int = 80) -> dict[str, Any]:
    """Beta densities of both arms' success rate on a shared grid around their mass (for the chart)."""
    arms = {"control": bayes["control_posterior"], "treatment": bayes["treatment_posterior"]}
    lo, hi = 1.0, 0.0
    for a, b in arms.values():
        mean = a / (a + b)
        sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
        lo, hi = min(lo, mean - 4 * sd), max(hi, mean + 4 * sd)
    lo, hi = max(lo, 0.0), min(hi, 1.0)
    grid = [lo + (hi - lo) * i / (points - 1) for i in range(points)]
    curves = {name: [_beta_pdf(x, a, b) for x in grid] for name, (a, b) in arms.items()}
    return {"grid": grid, "labels": [f"{x:.3f}" for x in grid], **curves}


def _beta_pdf(x: float, a: float, b: float) -> float | None:
    if not 0.0 < x < 1.0:
        return None
    log = (a - 1) * math.log(x) + (b - 1) * math.log1p(-x) + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    return math.exp(log)


def performance_page(state: MLOpsState) -> list[dict[str, Any]]:
    return [_model_performance(state, name) for name in model_names(state)]


def _model_performance(state: MLOpsState, name: str) -> dict[str, Any]:
    return {"name": name, "timeline": guarded("performance", lambda: timeline.timeline(state, name))}


def jobs_page(state: MLOpsState) -> dict[str, Any]:
    return guarded("jobs", lambda: dict(scheduler.overview(state)))
