"""Monitoring of one app: read a window of the log and the feedback, apply monitoring/ statistics, persist.

The API, the CLI and the scheduled job all call these functions (they take the app's
`MLOpsState`, never Flask's request), so the three always give the same answers.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, select

from ..errors import NotFoundError, UnprocessableError, ValidationError
from ..monitoring.aggregates import PREDICTION, Binned, Binning, Counts, Sample, hour_ceil, hour_floor
from ..monitoring.drift import DriftCalculator, DriftReport
from ..monitoring.health import (
    Component,
    Health,
    assess_health,
    decay_component,
    drift_component,
    logging_component,
    operational_components,
)
from ..monitoring.html import render_drift_html
from ..monitoring.performance import (
    Decay,
    OperationalMetrics,
    _positive,
    baseline_rows,
    decay,
    estimate_performance,
    metrics_by_group,
    operational_from_counts,
    operational_metrics,
    realised_metrics,
    rolling_mean,
)
from ..monitoring.profile import to_float_array
from ..store.aggregates import totals as aggregate_totals
from ..store.base import utcnow
from ..store.columnar import read_window
from ..store.feedback import Feedback, labelled
from ..store.monitoring import REPORTS_SUBDIR, DriftRun, delete_drift_runs, list_drift_runs, write_report_file
from ..store.predictions import format_ts
from ..tasks import task_for
from .aggregation import WindowAggregates, window_aggregates
from .alerts import evaluate_alerts
from .catalog import model_names, model_spec
from .lifecycle import version_task
from .profiles import load_profile
from .prometheus import log_failures, record_drift, record_health
from .registry import alias_version, get_version

if TYPE_CHECKING:
    from ..specs import ModelSpec
    from ..store.columnar import Window
    from .state import MLOpsState

logger = logging.getLogger(__name__)

#: fewest labelled predictions for a decay level (fewer: the level is not judged)
MIN_LABELS_FOR_DECAY = 30
ROLLING_WINDOW = 100


@dataclass(frozen=True)
class WindowSpec:
    """Which records: a model (and optionally the version that served them), a time range or the last N."""

    model: str | None = None
    version: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    last: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "since": format_ts(self.since) if self.since else None,
            "until": format_ts(self.until) if self.until else None,
            "last": self.last,
        }


def resolve_model(state: MLOpsState, model: str | None) -> ModelSpec:
    names = model_names(state)
    if model is None:
        if len(names) == 1:
            return model_spec(state, names[0])
        raise ValidationError("model is required when there is more than one model", details={"known_models": names})
    return model_spec(state, model)  # UnknownModelError (404) lists the known models


def _reference_version(state: MLOpsState, spec: ModelSpec, window: WindowSpec) -> int | None:
    if window.version is not None:
        try:
            return int(window.version)
        except ValueError:
            return None
    return alias_version(state, spec.name)


def read(state: MLOpsState, spec: ModelSpec, window: WindowSpec, *, features: bool = True, with_ids: bool = False) -> Window:
    """The window's records, never more than MLOPS_RAW_READ_MAX (the newest): a raw read is bounded
    whatever window is asked for (large windows are answered from the hourly aggregates)."""
    cap = state.config.raw_read_max
    return read_window(
        state.log_dir,
        model=spec.name,
        version=window.version,
        since=window.since,
        until=window.until,
        last=min(window.last, cap) if window.last is not None else cap,
        spec=spec if features else None,
        features=None if features else (),
        with_ids=with_ids,
        open_days=state.open_days,
    )


def _served(win: Window) -> Window:
    """Only the requests that were answered (status < 400): failed ones have no prediction."""
    ok = np.flatnonzero(win.status < 400)
    return win if ok.size == win.n else win.take(ok)


# -- drift -------------------------------------------------------------------------------------
def drift(
    state: MLOpsState, window: WindowSpec, *, persist: bool = True, trigger: str = "api", win: Window | None = None,
    agg: WindowAggregates | None = None,
) -> DriftReport:
    """Drift of the window against the reference version's profile; stored when `persist`.

    `win` is the window already read (with features), `agg` its hourly aggregates, to read
    once per report. A window large enough (`aggregated`) is judged from the aggregates: exact
    counts for the binned tests, their bottom-K sample for KS and Wasserstein.
    """
    spec = resolve_model(state, window.model)
    window = replace(window, model=spec.name)
    reference = _reference_version(state, spec, window)
    profile, source = load_profile(state, spec, reference)
    pred_prof = profile.get("prediction") or {}
    info = {**window.to_dict(), "reference_version": reference, "reference": source}
    if win is None:
        agg = agg if agg is not None else aggregated(state, spec, window)
        binned = _binned(agg, profile) if agg is not None else None
        if binned is not None:
            columns, binned_prediction, n_rows, extra = binned
            report = DriftCalculator.from_config(profile, state.config).calculate(
                columns, prediction=binned_prediction if pred_prof else None, window={**info, **extra}, n_rows=n_rows
            )
            if persist:
                save_drift_run(state, spec.name, report, trigger=trigger)
            return report
    raw = win if win is not None else read(state, spec, window)
    win = _served(raw)
    prediction: Any = win.probability if pred_prof.get("of") == "probability" else win.prediction
    info = {**info, "skipped_lines": win.stats.skipped, "source": "log"}
    if raw.n >= state.config.raw_read_max and (window.last is None or window.last > raw.n):
        info["record_cap"] = state.config.raw_read_max  # the newest records only: MLOPS_RAW_READ_MAX
    report = DriftCalculator.from_config(profile, state.config).calculate(
        win.features, prediction=prediction if pred_prof else None, window=info, n_rows=win.n
    )
    if persist:
        save_drift_run(state, spec.name, report, trigger=trigger)
    return report


def aggregated(state: MLOpsState, spec: ModelSpec, window: WindowSpec, *, with_sample: bool = True) -> WindowAggregates | None:
    """The window's hourly aggregates when it is answered from them: no `last`, and its hours
    hold at least MLOPS_AGGREGATE_MIN_RECORDS counted records; else None (read the records)."""
    if window.last is not None:
        return None
    minimum = state.config.aggregate_min_records
    if minimum > 0:
        lo = hour_floor(window.since) if window.since is not None else None
        hi = hour_ceil(window.until) if window.until is not None else None
        counted = sum(n for n, _ in aggregate_totals(state.engine, spec.name, since=lo, until=hi, version=window.version).values())
        if counted < minimum:
            return None
    try:  # the reference's bins: records of versions counted on other bins are re-binned on them
        target: Binning | None = Binning.of_profile(load_profile(state, spec, _reference_version(state, spec, window))[0])
    except UnprocessableError:
        target = None
    return window_aggregates(
        state, spec.name, since=window.since, until=window.until, version=window.version, with_sample=with_sample, target=target
    )


def _binned(agg: WindowAggregates, profile: dict[str, Any]) -> tuple[dict[str, Binned], Binned | None, int, dict[str, Any]] | None:
    """The window's features as `Binned` columns on the profile's bins: the counts of every
    record on those bins (its version's own, or re-binned after a promotion), the sample of
    all. None when some records are not counted on them yet (the job re-bins): read the records."""
    fingerprint = Binning.of_profile(profile).fingerprint
    primary = [g for g in agg.groups if g.primary and g.n_served]
    counted = [g for g in agg.groups if g.bins == fingerprint and g.n_served]
    need: dict[tuple[str, str], int] = {}
    have: dict[tuple[str, str], int] = {}
    for groups, into in ((primary, need), (counted, have)):
        for g in groups:
            into[(g.version, g.variant)] = into.get((g.version, g.variant), 0) + g.n_served
    if need != have:
        missing = sorted({v or "none" for (v, _), n in need.items() if have.get((v, _), 0) != n})
        logger.info("drift from the records: versions %s are not counted on the reference's bins yet", ", ".join(missing))
        return None
    sample = functools.reduce(lambda a, b: a.merge(b), [g.sample for g in primary]) if primary else None
    extra = {
        "source": "aggregates", "skipped_lines": agg.skipped_lines, "not_yet_aggregated": agg.tail_records,
        "hours": {"since": format_ts(agg.since) if agg.since else None, "until": format_ts(agg.until)},
        "sample": int(sample.ids.size) if sample else 0,
    }
    if sample is None:
        return {}, None, 0, extra
    counts: dict[str, Counts] = {}
    for g in counted:
        for name, c in g.counts.items():
            counts[name] = counts[name] + c if name in counts else c

    def column(name: str) -> Binned:
        return Binned(counts[name], sample.values.get(name, np.empty(0)))

    columns = {name: column(name) for name in profile["features"]}
    prediction = column(PREDICTION) if PREDICTION in counts else None
    return columns, prediction, sum(g.n_served for g in counted), extra


def save_drift_run(state: MLOpsState, model: str, report: DriftReport, *, trigger: str) -> dict[str, Any]:
    """Store a run: the full JSON report, the latest HTML report and a `mlops_drift_runs` row (returned)."""
    created = utcnow()
    body = report.to_dict()
    path = write_report_file(state.log_dir, created, body, model)
    _write_latest_html(state, model, body)
    summary = {
        name: {k: f.get(k) for k in ("level", "decided_by", "psi", "ks_stat", "ks_pvalue", "js", "wasserstein", "chi2_stat")}
        for name, f in body["features"].items()
    }
    with state.session() as session, session.begin():
        row = DriftRun(
            created_at=created,
            model_name=model,
            model_version=None if body["window"].get("reference_version") is None else str(body["window"]["reference_version"]),
            status=report.status,
            level=report.level,
            share_drifted=report.share_drifted,
            n_rows=report.n_rows,
            window=body["window"],
            features=summary,
            report_path=str(path),
            trigger=trigger,
        )
        session.add(row)
        session.flush()
        stored = row.to_dict()
    try:
        record_drift(state, model, report.level, {k: {**v, "js_distance": v.get("js")} for k, v in summary.items()})
    except Exception:  # pragma: no cover - metrics must never break monitoring
        logger.exception("could not record drift metrics")
    return stored


def purge_reports(state: MLOpsState, days: int, *, now: datetime | None = None) -> dict[str, int]:
    """Retention (MLOPS_REPORT_RETENTION_DAYS): drift runs older than `days`, their JSON reports,
    and report files older than that without a row (the latest-run HTML pages included)."""
    if days <= 0:
        return {"runs": 0, "files": 0}
    cutoff = (now or utcnow()) - timedelta(days=days)
    with state.session() as session, session.begin():
        paths = delete_drift_runs(session, cutoff)
    files = 0
    for name in paths:
        if Path(name).is_file():
            Path(name).unlink(missing_ok=True)
            files += 1
    for pattern in (f"{REPORTS_SUBDIR}/*.json", "reports/*.html"):
        for path in state.log_dir.glob(pattern):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff.timestamp():
                    path.unlink()
                    files += 1
    return {"runs": len(paths), "files": files}


def _write_latest_html(state: MLOpsState, model: str, body: dict[str, Any]) -> None:
    """The latest run as `<log_dir>/reports/drift-<model>.html` (the dashboard links to it)."""
    folder = state.log_dir / "reports"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".drift-{model}.{os.getpid()}.tmp"
        tmp.write_text(render_drift_html(body, title=f"Drift report: {model}"), encoding="utf-8")
        os.replace(tmp, folder / f"drift-{model}.html")
    except OSError as exc:
        logger.warning("could not write the HTML drift report: %s", exc)


# -- performance -------------------------------------------------------------------------------
def _baseline(state: MLOpsState, spec: ModelSpec, version: int | None) -> tuple[dict[str, Any], float | None]:
    if version is None:
        return {}, None
    try:
        info = get_version(state, spec.name, version)
    except NotFoundError:
        return {}, None
    return dict(info.metrics or {}), info.threshold


def performance(
    state: MLOpsState, window: WindowSpec, *, win: Window | None = None, min_labels: int = MIN_LABELS_FOR_DECAY, estimate: bool = True,
    agg: WindowAggregates | None = None,
) -> dict[str, Any]:
    """Realised metrics on labelled predictions, decay vs the baseline, and CBPE estimates.

    The one performance computation for a window: the API, the CLI, the dashboard (through
    `services/timeline.py`) and the retraining decay trigger all read it. Decay is judged from
    `min_labels` labelled predictions (the trigger passes its own minimum); `estimate=False`
    skips CBPE, which reads the log. A labelled request that failed has no prediction to score.
    """
    spec = resolve_model(state, window.model)
    version = _reference_version(state, spec, window)
    with state.session() as session:
        rows = labelled(session, spec.name, version=window.version, since=window.since, until=window.until, last=window.last)
        data = [(r.label, r.prediction, r.probability, r.model_version, r.variant) for r in rows if r.prediction is not None]
    labels = np.asarray([d[0] for d in data], dtype=object)
    preds = np.asarray([d[1] for d in data], dtype=object)
    proba = np.asarray([np.nan if d[2] is None else d[2] for d in data], dtype=float)
    versions = [d[3] for d in data]
    variants = [d[4] for d in data]
    baseline_metrics, threshold = _baseline(state, spec, version)
    task = version_task(state, spec.name, version) if version is not None else task_for(spec.task, spec.classes)
    kind, positive = task.kind, spec.positive_label
    if kind == "regression":
        labels, preds = _floats(labels), _floats(preds)
    probability = proba if kind not in ("multiclass", "regression") and bool(np.isfinite(proba).any()) else None
    out: dict[str, Any] = {"model": spec.name, "window": window.to_dict(), "reference_version": version, "task": kind}
    realised = realised_metrics(kind, labels, preds, probability, positive=positive)
    out.update(realised.to_dict())
    out["by_version"] = {k: v.to_dict() for k, v in metrics_by_group(versions, labels, preds, probability, task=kind, positive=positive).items()}
    out["by_variant"] = {k: v.to_dict() for k, v in metrics_by_group(variants, labels, preds, probability, task=kind, positive=positive).items()}
    if kind != "regression":
        if kind == "multiclass":
            correct = np.asarray([_same_class(a, b) for a, b in zip(labels.tolist(), preds.tolist(), strict=True)], dtype=float)
        else:
            correct = classification_correct(labels, preds, positive)
        rolling = rolling_mean(correct, ROLLING_WINDOW)
        out["rolling_accuracy"] = {"window": ROLLING_WINDOW, "latest": float(rolling[-1]) if rolling.size else None, "series": _thin(rolling)}
        # CBPE needs calibrated probabilities: binary models trained here only
        out["estimated"] = estimated(state, spec, window, threshold, win=win, agg=agg) if task.cbpe and estimate and kind != "multiclass" else None
    current = getattr(realised, task.decay_metric, None)
    result = decay(
        task.decay_metric, current, _metric(baseline_metrics, task.decay_metric), state.config.decay_thresholds,
        n_current=realised.n_labelled, n_baseline=baseline_rows(baseline_metrics), alpha=state.config.decay_alpha,
    )
    if len(data) < min_labels:
        result = Decay(result.metric, result.baseline, result.current, None, "ok")
        out["decay_note"] = f"{len(data)} labelled predictions; decay is judged from {min_labels}"
    out["baseline"] = {k: v for k, v in baseline_metrics.items() if isinstance(v, (int, float))}
    out["decay"] = result.to_dict()
    return out


def estimated(
    state: MLOpsState, spec: ModelSpec, window: WindowSpec, threshold: float | None, *, win: Window | None = None,
    agg: WindowAggregates | None = None,
) -> dict[str, Any]:
    """CBPE over every served prediction of the window, labelled or not (from the aggregates'
    sample of probabilities when the window is answered from aggregates)."""
    cut = 0.5 if threshold is None else threshold
    note = "expected metrics from the model's probabilities; valid when they are calibrated"
    if win is None:
        agg = agg if agg is not None else aggregated(state, spec, window)
        if agg is not None:
            values = [g.sample for g in agg.groups if g.primary and g.n_served and PREDICTION in g.sample.values]
            sample = functools.reduce(lambda a, b: a.merge(b), values) if values else None
            probability = sample.values[PREDICTION] if sample is not None else np.empty(0)
            est = estimate_performance(probability, threshold=cut)
            return {**est.to_dict(), "note": f"{note}; from the hourly aggregates' sample of {probability.size} predictions"}
    win = _served(win if win is not None else read(state, spec, window, features=False))
    est = estimate_performance(win.probability, threshold=cut)
    return {**est.to_dict(), "note": note}


def _same_class(label: Any, prediction: Any) -> bool:
    """A multi-class label equals a prediction, compared as text (1, 1.0 and "1" agree)."""
    def text(v: Any) -> str:
        return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)

    return prediction is not None and text(label) == text(prediction)


def classification_correct(labels: np.ndarray, preds: np.ndarray, positive: Any) -> np.ndarray:
    if labels.size == 0:
        return np.empty(0)
    return (_positive(labels, positive) == _positive(preds, positive)).astype(float)


def _floats(values: np.ndarray) -> np.ndarray:
    return to_float_array(values)


def _metric(metrics: dict[str, Any], name: str) -> float | None:
    for key in (name, f"holdout_{name}", f"test_{name}", f"cv_{name}_mean"):
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def _thin(series: np.ndarray, points: int = 50) -> list[float]:
    if series.size <= points:
        return [round(float(v), 4) for v in series]
    idx = np.linspace(0, series.size - 1, points).astype(int)
    return [round(float(v), 4) for v in series[idx]]


# -- operations, health, report ----------------------------------------------------------------
def _operational(
    state: MLOpsState, spec: ModelSpec, window: WindowSpec, win: Window | None = None, agg: WindowAggregates | None = None
) -> tuple[OperationalMetrics, int]:
    thresholds = {"error_thresholds": state.config.error_rate_thresholds, "latency_thresholds": state.config.latency_p95_thresholds_ms}
    if win is None:
        agg = agg if agg is not None else aggregated(state, spec, window, with_sample=False)
        if agg is not None:
            # request fields only (groups on different bins have counts of different shapes)
            primary = [replace(g, counts={}, sample=Sample.empty(())) for g in agg.groups if g.primary]
            merged = functools.reduce(lambda a, b: a.merge(b), primary) if primary else None
            if merged is None:
                return operational_metrics(np.empty(0), np.empty(0), **thresholds), agg.skipped_lines
            counts = {int(code): c for code, c in merged.status.items()}
            span = (merged.ts_max - merged.ts_min) / 1e6 if merged.ts_min is not None and merged.ts_max is not None else None
            return operational_from_counts(counts, merged.latency, merged.latency_sum, span, **thresholds), agg.skipped_lines
    win = win if win is not None else read(state, spec, window, features=False)
    ops = operational_metrics(win.status, win.latency_ms, win.ts, **thresholds)
    return ops, win.stats.skipped


def operations(state: MLOpsState, window: WindowSpec) -> dict[str, Any]:
    """Volume, error rate and latency percentiles of every logged request in the window
    (from the hourly aggregates' counts and latency histogram for a large window)."""
    spec = resolve_model(state, window.model)
    ops, skipped = _operational(state, spec, window)
    return {"model": spec.name, **ops.to_dict(), "skipped_lines": skipped}


def features_logged(win: Window) -> Component:
    """How many records of the window lost feature values to serialisation, and why."""
    coded = win.features_error
    codes = coded.codes if coded is not None else np.empty(0, dtype=np.int32)
    bad = codes[codes >= 0]
    cause = None
    if bad.size and coded is not None:
        cause = coded.categories[int(np.bincount(bad).argmax())]
    return logging_component(win.n, int(bad.size), cause)


def health_from(
    drift_report: DriftReport | None, perf: dict[str, Any] | None, ops: OperationalMetrics | None, *, extra: list[Component] | None = None
) -> Health:
    components: list[Component] = list(extra or [])
    if drift_report is not None:
        components.append(drift_component(drift_report))
    if perf is not None:
        d = perf["decay"]
        components.append(decay_component(Decay(
            d["metric"], d["baseline"], d["current"], d["relative_drop"], d["level"],
            d.get("n_baseline"), d.get("n_current"), d.get("min_detectable_drop"),
        )))
    if ops is not None:
        components.extend(operational_components(ops))
    return assess_health(components)


def report(state: MLOpsState, window: WindowSpec, *, persist: bool = True, alert: bool = False, trigger: str = "api") -> dict[str, Any]:
    """Everything in one document: drift, performance, operations, health (and alerts when asked)."""
    spec = resolve_model(state, window.model)
    window = replace(window, model=spec.name)
    agg = aggregated(state, spec, window)  # once, for drift, CBPE and operations: aggregates, or the records
    win = read(state, spec, window) if agg is None else None
    try:
        drift_report: DriftReport | None = drift(state, window, persist=persist, trigger=trigger, win=win, agg=agg)
        drift_out: dict[str, Any] = drift_report.to_dict()  # type: ignore[union-attr]
    except UnprocessableError as exc:
        drift_report, drift_out = None, {"status": "no_reference", "level": None, "message": exc.message}
    perf = performance(state, window, win=win, agg=agg)
    ops, skipped = _operational(state, spec, window, win, agg)
    health = health_from(drift_report, perf, ops, extra=[features_logged(win)] if win is not None else [])
    out: dict[str, Any] = {
        "model": spec.name,
        "window": window.to_dict(),
        "health": health.to_dict(),
        "drift": drift_out,
        "performance": perf,
        "operations": {**ops.to_dict(), "skipped_lines": skipped},
    }
    try:
        record_health(state, spec.name, health.status)
    except Exception:  # pragma: no cover
        logger.exception("could not record health metrics")
    if alert:

        out["alerts"] = evaluate_alerts(state, spec.name, health)
    return out


def summary(state: MLOpsState, *, hours: int = 24, now: datetime | None = None) -> dict[str, Any]:
    """Per model: traffic of the last `hours`, labels, production version, last drift run, and the
    records that could not be written to the log since the server started (not in `requests`)."""
    now = now or datetime.now(timezone.utc)
    lost = log_failures(state)
    models: dict[str, Any] = {}
    for spec in [model_spec(state, n) for n in model_names(state)]:
        ops = operations(state, WindowSpec(spec.name, since=now - timedelta(hours=hours), until=now))
        with state.session() as session:
            n_labels = int(session.scalar(select(func.count()).select_from(Feedback).where(Feedback.model_name == spec.name)) or 0)
            runs = list_drift_runs(session, model=spec.name, limit=1)
        models[spec.name] = {
            "production_version": alias_version(state, spec.name),
            "requests": ops["n_requests"],
            "error_rate": ops["error_rate"],
            "latency_p95_ms": ops["latency_p95_ms"],
            "labelled": n_labels,
            "log_failures": lost.get(spec.name, (0, 0.0))[0],
            "last_drift": {k: runs[0][k] for k in ("created_at", "level", "share_drifted", "status")} if runs else None,
        }
    return {"hours": hours, "until": now.isoformat(), "models": models}


__all__ = ["WindowSpec", "drift", "purge_reports", "save_drift_run", "estimated", "health_from", "load_profile", "operations", "performance", "report", "resolve_model", "summary"]
