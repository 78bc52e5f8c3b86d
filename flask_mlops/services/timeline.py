"""Performance over time: realised metrics from labels per version and variant, beside the CBPE estimate.

The dashboard's performance page. A window (the last N logged predictions) is cut into
equal stretches of time; in each, the realised metric comes from the labelled predictions
(feedback, grouped by the version and the A/B variant that served them) and the
label-free estimate (CBPE) from the probabilities of every served prediction, labelled or
not — so the estimate covers the stretches whose labels have not arrived yet.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from ..monitoring.performance import estimate_performance
from ..store.feedback import labelled
from .monitoring import WindowSpec, classification_correct, performance, read, resolve_model

if TYPE_CHECKING:
    from .state import MLOpsState

#: stretches of time the window is cut into
BUCKETS = 12
#: the window: this many most recent predictions (and their labels)
WINDOW = 5000


def _label(moment: datetime, span: timedelta) -> str:
    if span <= timedelta(minutes=1):
        return moment.strftime("%H:%M:%S.%f")[:-4]
    if span <= timedelta(hours=1):
        return moment.strftime("%H:%M:%S")
    if span <= timedelta(days=1):
        return moment.strftime("%H:%M")
    return moment.strftime("%m-%d %H:00")


def _edges(first: datetime, last: datetime, buckets: int) -> list[datetime]:
    span = max(last - first, timedelta(milliseconds=buckets))
    step = span / buckets
    return [first + step * i for i in range(buckets + 1)]


def _slot(moments: np.ndarray, edges: list[datetime]) -> np.ndarray:
    """Bucket index of each datetime64[us] (the last edge belongs to the last bucket)."""
    cuts = np.asarray([np.datetime64(e.replace(tzinfo=None), "us") for e in edges[1:-1]])
    return np.searchsorted(cuts, moments, side="right")


def timeline(state: MLOpsState, model: str | None = None, *, last: int = WINDOW, buckets: int = BUCKETS) -> dict[str, Any]:
    """Per stretch of time: realised accuracy (MAE for regression) per version and variant, and CBPE."""
    spec = resolve_model(state, model)
    window = WindowSpec(spec.name, last=last)
    summary = performance(state, window)
    with state.session() as session:
        rows = [(r.prediction_ts, r.label, r.prediction, r.model_version, r.variant) for r in labelled(session, spec.name, last=last)]
    win = read(state, spec, window, features=False)
    served = np.flatnonzero(win.status < 400)
    out: dict[str, Any] = {"model": spec.name, "task": spec.task, "summary": summary, "labels": [], "series": [], "n_labelled": len(rows)}
    if win.n == 0 and not rows:
        return out
    stamps = [t if t.tzinfo else t.replace(tzinfo=timezone.utc) for t, *_ in rows]
    ts_served = win.ts[served]
    candidates = [*stamps[:1], *stamps[-1:]]
    if ts_served.size:
        candidates += [_dt(ts_served.min()), _dt(ts_served.max())]
    first, final = min(candidates), max(candidates)
    edges = _edges(first, final, buckets)
    out["labels"] = [_label(e, final - first) for e in edges[:-1]]
    regression = spec.task == "regression"
    metric = "mae" if regression else "accuracy"
    out["metric"] = metric
    if rows:
        moments = np.asarray([np.datetime64(t.astimezone(timezone.utc).replace(tzinfo=None), "us") for t in stamps])
        slots = _slot(moments, edges)
        labels = np.asarray([r[1] for r in rows], dtype=object)
        preds = np.asarray([r[2] for r in rows], dtype=object)
        if regression:
            score = np.abs(_floats(labels) - _floats(preds))
        else:
            score = classification_correct(labels, preds, spec.positive_label)
        for kind, index in (("version", 3), ("variant", 4)):
            groups = sorted({r[index] for r in rows if r[index] is not None}, key=str)
            if kind == "variant" and not groups:
                continue
            for group in groups:
                member = np.asarray([r[index] == group for r in rows])
                values, counts = _per_bucket(score, slots, member, buckets)
                name = f"v{group}" if kind == "version" else str(group)
                out["series"].append({"name": f"{name} realised", "kind": kind, "group": str(group), "values": values, "counts": counts})
    if not regression and served.size:
        proba = win.probability[served]
        slots = _slot(ts_served, edges)
        threshold = summary.get("estimated", {}).get("threshold")
        values, counts = [], []
        for b in range(buckets):
            p = proba[slots == b]
            p = p[np.isfinite(p)]
            est = estimate_performance(p, threshold=0.5 if threshold is None else threshold) if p.size else None
            values.append(None if est is None or est.accuracy is None else round(float(est.accuracy), 4))
            counts.append(int(p.size))
        if any(v is not None for v in values):
            out["series"].append({"name": "estimated (CBPE, no labels)", "kind": "estimate", "group": "", "values": values, "counts": counts})
    return out


def _dt(value: np.datetime64) -> datetime:
    return datetime.fromtimestamp(value.astype("datetime64[us]").astype(np.int64) / 1e6, tz=timezone.utc)


def _floats(values: np.ndarray) -> np.ndarray:
    out = np.full(values.shape[0], np.nan)
    for i, v in enumerate(values):
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def _per_bucket(score: np.ndarray, slots: np.ndarray, member: np.ndarray, buckets: int) -> tuple[list[float | None], list[int]]:
    values: list[float | None] = []
    counts: list[int] = []
    for b in range(buckets):
        chosen = score[(slots == b) & member]
        chosen = chosen[np.isfinite(chosen)]
        values.append(round(float(chosen.mean()), 4) if chosen.size else None)
        counts.append(int(chosen.size))
    return values, counts


__all__ = ["timeline"]
