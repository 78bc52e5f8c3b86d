"""Monitoring endpoints: feedback, predictions, drift, performance, report, summary, alerts (thin).

Every monitoring endpoint takes the same window (`model`, `version`, `since`, `until`,
`last`); lists take `limit` and `cursor`. `GET /reports/drift` renders the drift report
as one offline HTML page.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request
from pydantic import Field

from ..errors import NotFoundError, ValidationError
from ..extension import get_state
from ..monitoring import service
from ..monitoring.feedback import record_feedback
from ..monitoring.html import render_drift_html
from .blueprint import route
from .schemas import Id, WindowQuery


class PageWindowQuery(WindowQuery):
    limit: int = Field(default=100, ge=1, le=1000, description="Most items in one page.")
    cursor: str | None = Field(default=None, max_length=500, description="`next_cursor` of the previous page.")


class PredictionsQuery(PageWindowQuery):
    status: str | None = Field(default=None, pattern="^(ok|error)$", description="`ok` (< 400) or `error` (>= 400) only.")


class AlertsQuery(PageWindowQuery):
    sent_only: bool = Field(default=False, description="Only alerts that were sent (not suppressed).")


class DriftReportQuery(WindowQuery):
    run: Id | None = Field(default=None, description="Show a stored drift run instead of computing one now.")


def _window(query: WindowQuery) -> service.WindowSpec:
    return service.WindowSpec(query.model, query.version, query.since, query.until, query.last)


def _int_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not cursor.isdigit():
        raise ValidationError("cursor must be the next_cursor of a previous page", details={"fields": {"cursor": "invalid"}})
    return int(cursor)


# -- feedback ----------------------------------------------------------------------------------
def _feedback_items(body: Any) -> tuple[list[tuple[str, Any]], bool]:
    overwrite = False
    if isinstance(body, dict) and "items" in body:
        overwrite, raw = body.get("overwrite", False), body["items"]
        unknown = set(body) - {"items", "overwrite"}
    elif isinstance(body, dict):
        overwrite, raw = body.get("overwrite", False), [{k: v for k, v in body.items() if k != "overwrite"}]
        unknown = set()
    elif isinstance(body, list):
        raw, unknown = body, set()
    else:
        raise ValidationError("body must be {prediction_id, label}, a list of them, or {items: [...]}", code="malformed_json")
    if unknown:
        raise ValidationError(f"unexpected field(s): {', '.join(sorted(unknown))}", details={"fields": dict.fromkeys(sorted(unknown), "unexpected field")})
    if not isinstance(overwrite, bool):
        raise ValidationError("overwrite must be true or false", details={"fields": {"overwrite": "invalid"}})
    if not isinstance(raw, list):
        raise ValidationError("items must be a list", details={"fields": {"items": "invalid"}})
    items: list[tuple[str, Any]] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) - {"prediction_id", "label"}:
            raise ValidationError(f"item {i} must be an object with prediction_id and label only", details={"index": i})
        pid, label = item.get("prediction_id"), item.get("label")
        if not isinstance(pid, str) or not pid or len(pid) > 64:
            raise ValidationError(f"item {i}: prediction_id must be a non-empty string (the X-Prediction-ID header)", details={"index": i})
        if label is None:
            raise ValidationError(f"item {i}: label is required", details={"index": i, "fields": {"label": "missing"}})
        items.append((pid, label))
    return items, overwrite


@route("/feedback", methods=("POST",), role="admin", status=201, tags=("monitoring",))
def post_feedback() -> Any:
    """Record ground truth for logged predictions: one `{prediction_id, label}`, a list, or `{items, overwrite}`.

    Unknown ids answer 404, ids that already have feedback 409 (unless `overwrite`); nothing
    is stored when any item is refused. At most MLOPS_FEEDBACK_BATCH_MAX items per request.
    """
    body = request.get_json(silent=True)
    if body is None:
        raise ValidationError("the request body must be JSON (Content-Type: application/json)", code="malformed_json")
    items, overwrite = _feedback_items(body)
    result = record_feedback(get_state(), items, overwrite=overwrite)
    response = jsonify(result)
    response.status_code = 201
    return response


# -- predictions -------------------------------------------------------------------------------
@route("/monitoring/predictions", query_model=PredictionsQuery, tags=("monitoring",))
def list_predictions(query: PredictionsQuery) -> Any:
    """Logged predictions of the window, newest first; `next_cursor` pages further back in time."""
    from ..store.predictions import format_ts, parse_ts, read_records

    state = get_state()
    spec = service.resolve_model(state, query.model)
    until = query.until
    if query.cursor is not None:
        try:
            cursor = parse_ts(query.cursor)
        except ValueError as exc:
            raise ValidationError("cursor must be the next_cursor of a previous page", details={"fields": {"cursor": "invalid"}}) from exc
        until = cursor if until is None else min(until, cursor)
    want = query.limit + 1
    if query.last is not None:
        want = min(want, query.last)
    items: list[dict[str, Any]] = []
    # read a little more than a page at a time from the newest end, filtering by status
    batch = want
    while True:
        records = list(read_records(state.log_dir, model=spec.name, version=query.version, since=query.since, until=until, last=batch))
        chosen = [r for r in records if query.status is None or (query.status == "error") == (int(r.get("status") or 0) >= 400)]
        if len(chosen) >= want or len(records) < batch:
            items = chosen[::-1][:want]
            break
        batch *= 4
    more = len(items) > query.limit and (query.last is None or query.limit < query.last)
    page = items[: query.limit]
    next_cursor = format_ts(parse_ts(page[-1]["ts"])) if more and page else None
    return jsonify({"items": page, "next_cursor": next_cursor})


# -- drift, performance, report ----------------------------------------------------------------
@route("/monitoring/drift", query_model=WindowQuery, tags=("monitoring",))
def get_drift(query: WindowQuery) -> Any:
    """Data and prediction drift of the window against the reference profile (stored as a run)."""
    report = service.drift(get_state(), _window(query), persist=True, trigger="api")
    return jsonify(report.to_dict())


@route("/monitoring/drift/runs", query_model=PageWindowQuery, tags=("monitoring",))
def list_drift_runs(query: PageWindowQuery) -> Any:
    """Stored drift runs, newest first (the trend)."""
    from ..store.monitoring import list_drift_runs as runs

    state = get_state()
    model = service.resolve_model(state, query.model).name
    rows = runs(state, model=model, limit=query.limit + 1, before_id=_int_cursor(query.cursor))
    page = rows[: query.limit]
    return jsonify({"items": page, "next_cursor": str(page[-1]["id"]) if len(rows) > query.limit and page else None})


@route("/monitoring/performance", query_model=WindowQuery, tags=("monitoring",))
def get_performance(query: WindowQuery) -> Any:
    """Realised metrics on labelled predictions, decay vs the baseline, and CBPE estimates."""
    return jsonify(service.performance(get_state(), _window(query)))


@route("/monitoring/report", query_model=WindowQuery, tags=("monitoring",))
def get_report(query: WindowQuery) -> Any:
    """Drift, performance, operations and health in one document."""
    return jsonify(service.report(get_state(), _window(query), persist=True))


@route("/stats/summary", tags=("monitoring",))
def stats_summary() -> Any:
    """Per model: the last 24 hours of traffic, labels received, production version, last drift run."""
    hours = request.args.get("hours", "24")
    if not hours.isdigit() or not 1 <= int(hours) <= 24 * 90:
        raise ValidationError("hours must be an integer between 1 and 2160", details={"fields": {"hours": "invalid"}})
    return jsonify(service.summary(get_state(), hours=int(hours)))


@route("/alerts", query_model=AlertsQuery, tags=("monitoring",))
def list_alerts(query: AlertsQuery) -> Any:
    """Alerts raised by the drift check and the report command, newest first."""
    from ..store.monitoring import list_alerts as alerts

    state = get_state()
    model = service.resolve_model(state, query.model).name if query.model is not None else None
    rows = alerts(state, model=model, limit=query.limit + 1, before_id=_int_cursor(query.cursor), sent_only=query.sent_only)
    page = rows[: query.limit]
    return jsonify({"items": page, "next_cursor": str(page[-1]["id"]) if len(rows) > query.limit and page else None})


@route("/reports/drift", api=False, query_model=DriftReportQuery, produces="text/html", summary="HTML drift report", tags=("monitoring",))
def drift_report_page(query: DriftReportQuery) -> Any:
    """Per-feature reference-vs-current histograms and scores, readable offline (no scripts, no CDN)."""
    import json

    from ..store.monitoring import DriftRun

    state = get_state()
    spec = service.resolve_model(state, query.model)
    if query.run is not None:
        with state.session() as session:
            row = session.get(DriftRun, query.run)
            path = row.report_path if row is not None and row.model_name == spec.name else None
        if path is None:
            raise NotFoundError(f"no drift run {query.run} for model {spec.name}")
        with open(path, encoding="utf-8") as handle:
            report = json.load(handle)
        title = f"Drift report: {spec.name}, run {query.run}"
    else:
        window = _window(query)
        if window.since is None and window.until is None and window.last is None:
            window = service.WindowSpec(window.model, window.version, last=10_000)
        report = service.drift(state, window, persist=False).to_dict()
        title = f"Drift report: {spec.name}"
    html = render_drift_html(report, title=title)
    return Response(html, mimetype="text/html", headers={"Cache-Control": "no-store"})

