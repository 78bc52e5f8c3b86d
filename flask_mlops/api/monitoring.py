"""Monitoring endpoints: feedback, predictions, drift, performance, report, summary, alerts (thin).

Every monitoring endpoint takes the same window (`model`, `version`, `since`, `until`,
`last`); lists take `limit` and `cursor`. `GET /reports/drift` renders the drift report
as one offline HTML page.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from flask import Response, url_for
from pydantic import ConfigDict, Field, RootModel

from ..errors import NotFoundError, ValidationError
from ..monitoring.drift import LEGACY_KEYS, DriftReport, FeatureDrift
from ..monitoring.health import Component, Health
from ..monitoring.html import STYLESHEET, render_drift_html
from ..monitoring.performance import Decay, OperationalMetrics
from ..services import monitoring as service
from ..services.auth import audit_actor
from ..services.feedback import record_feedback
from ..services.state import get_state
from ..store.monitoring import DriftRun
from ..store.monitoring import list_alerts as alerts
from ..store.monitoring import list_drift_runs as runs
from ..store.predictions import format_ts, parse_ts, read_records
from .blueprint import route
from .schemas import APIModel, ErrorBody, Id, Page, QueryModel, RequestModel, Timestamp, WindowQuery, id_cursor, model_of


class PageWindowQuery(WindowQuery):
    limit: int = Field(default=100, ge=1, le=1000, description="Most items in one page.")
    cursor: str | None = Field(default=None, max_length=500, description="`next_cursor` of the previous page.")


class PredictionsQuery(PageWindowQuery):
    status: str | None = Field(default=None, pattern="^(ok|error)$", description="`ok` (< 400) or `error` (>= 400) only.")


class AlertsQuery(PageWindowQuery):
    sent_only: bool = Field(default=False, description="Only alerts that were sent (not suppressed).")


class DriftReportQuery(WindowQuery):
    run: Id | None = Field(default=None, description="Show a stored drift run instead of computing one now.")


class SummaryQuery(QueryModel):
    hours: int = Field(default=24, ge=1, le=24 * 90, description="How far back the traffic counts go.")


# -- feedback bodies -----------------------------------------------------------------------------
Label = Annotated[bool | int | float | str, Field(description="The true label (class) or value (regression).")]


class FeedbackItem(RequestModel):
    prediction_id: str = Field(min_length=1, max_length=64, description="The `X-Prediction-ID` of the prediction.")
    label: Label


class FeedbackOne(FeedbackItem):
    overwrite: bool = Field(default=False, description="Replace feedback the prediction already has (else 409).")


class FeedbackBatch(RequestModel):
    items: list[FeedbackItem]
    overwrite: bool = False


class FeedbackIn(RootModel[FeedbackOne | list[FeedbackItem] | FeedbackBatch]):
    """One `{prediction_id, label}`, a list of them, or `{items, overwrite}`."""

    def items_and_overwrite(self) -> tuple[list[tuple[str, Any]], bool]:
        body = self.root
        if isinstance(body, FeedbackOne):
            return [(body.prediction_id, body.label)], body.overwrite
        if isinstance(body, FeedbackBatch):
            return [(i.prediction_id, i.label) for i in body.items], body.overwrite
        return [(i.prediction_id, i.label) for i in body], False


# -- answers -----------------------------------------------------------------------------------
class FeedbackOut(APIModel):
    created: int
    updated: int
    prediction_ids: list[str] = Field(description="The ids stored (at most 100).")


class PredictionRecord(APIModel):
    """One logged prediction (the JSON line of DEVELOPERS.md)."""

    id: str
    ts: Timestamp
    model: str
    model_version: str | None
    variant: str | None
    unit_id: str | None
    features: dict[str, Any] | None
    prediction: Any
    probability: float | None
    latency_ms: float
    status: int
    error: str | None = Field(default=None, description="Only on failures.")
    experiment: Id | None = Field(default=None, description="Only during an experiment.")
    assignment: Literal["hash", "random"] | None = Field(default=None, description="Only during an experiment.")


_LEGACY_FIELDS: dict[str, Any] = {key: (float | None, None) for key in LEGACY_KEYS}  # psi, ks_pvalue, ... (FeatureDrift.stat)

#: one feature's verdict: `FeatureDrift`'s fields, its legacy per-statistic values and `drifted`
FeatureDriftOut = model_of(
    FeatureDrift,
    name="FeatureDriftOut",
    missing_rate=(float | None, ...),
    reference_missing_rate=(float | None, ...),
    out_of_range_rate=(float | None, ...),
    tests=(dict[str, dict[str, Any]], Field(description="Every stat test run on the feature, by registered name.")),
    drifted=(bool, ...),
    **_LEGACY_FIELDS,
)

#: a drift report (`DriftReport.to_dict`): per feature and for the prediction, against the reference profile
DriftOut = model_of(
    DriftReport,
    name="DriftOut",
    doc="A drift report: per feature and for the prediction, against the reference profile.",
    exclude=("n_rows",),  # the JSON carries it as window.n
    descriptions={"status": "ok, insufficient_data, ..."},
    features=(dict[str, FeatureDriftOut], ...),  # type: ignore[valid-type]
    prediction=(FeatureDriftOut | None, ...),  # type: ignore[valid-type]
    n_features=(int, ...),
    n_drifted=(int, ...),
    drifted_features=(list[str], ...),
    share_drifted=(float | None, ...),
)


class NoReferenceOut(APIModel):
    """In a report, the drift part when no reference profile exists."""

    status: Literal["no_reference"]
    level: None
    message: str


class DriftRunOut(APIModel):
    id: Id
    created_at: Timestamp
    model: str
    version: str | None
    status: str
    level: str | None
    share_drifted: float | None
    n_rows: int
    window: dict[str, Any]
    features: dict[str, Any]
    report_path: str | None
    trigger: str


#: derived from `services.monitoring.WindowSpec`: the window an answer is about
WindowOut = model_of(service.WindowSpec, name="WindowOut")


DecayOut = model_of(
    Decay, name="DecayOut", doc="The relative drop against the baseline, judged against the sampling error of both.",
    descriptions={
        "n_baseline": "Rows the baseline was measured on (the holdout).",
        "n_current": "Labelled predictions in the window.",
        "min_detectable_drop": "Smallest relative drop sampling error cannot explain.",
        "interval": "Two-sided interval of the relative drop.",
    },
    interval=(list[float | None] | None, Field(default=None, description="Two-sided interval of the relative drop (null ends: not finite).")),
)


class PerformanceOut(APIModel):
    """Realised metrics (the fields depend on the task: accuracy, f1, ... or mae, rmse, ...),
    per version and variant, decay against the registered baseline and, for classifiers, CBPE."""

    model_config = ConfigDict(extra="allow")

    model: str
    window: WindowOut  # type: ignore[valid-type]
    reference_version: Id | None
    task: str
    by_version: dict[str, dict[str, Any]]
    by_variant: dict[str, dict[str, Any]]
    baseline: dict[str, float]
    decay: DecayOut  # type: ignore[valid-type]
    rolling_accuracy: dict[str, Any] | None = Field(default=None, description="Classifiers only.")
    estimated: dict[str, Any] | None = Field(default=None, description="Classifiers only: CBPE estimates.")
    decay_note: str | None = Field(default=None, description="Only when too few labels to judge decay.")


OperationsOut = model_of(
    OperationalMetrics, name="OperationsOut", doc="Volume, errors and latency of every logged request in the window.",
    skipped_lines=(int, Field(description="Log lines that could not be read.")),
)
HealthReason = model_of(Component, name="HealthReason")
HealthReport = model_of(Health, name="HealthReport", doc="Health: the worst component level, with every reason.", reasons=(list[HealthReason], Field(default_factory=list)))  # type: ignore[valid-type]


class ReportOut(APIModel):
    model: str
    window: WindowOut  # type: ignore[valid-type]
    health: HealthReport  # type: ignore[valid-type]
    drift: DriftOut | NoReferenceOut  # type: ignore[valid-type]
    performance: PerformanceOut
    operations: OperationsOut  # type: ignore[valid-type]


class LastDrift(APIModel):
    created_at: Timestamp
    level: str | None
    share_drifted: float | None
    status: str


class ModelSummary(APIModel):
    production_version: Id | None
    requests: int
    error_rate: float | None
    latency_p95_ms: float | None
    labelled: int
    log_failures: int = Field(description="Tracked requests whose record could not be written to the log since the server started (lost).")
    last_drift: LastDrift | None


class SummaryOut(APIModel):
    hours: int
    until: Timestamp
    models: dict[str, ModelSummary]


class AlertOut(APIModel):
    id: Id
    created_at: Timestamp
    key: str
    model: str
    source: str
    level: str
    message: str
    reason: str
    sent: bool = Field(description="False: suppressed by the cool-down.")
    delivered: bool | None = Field(description="The webhook's outcome; null without a webhook.")
    delivery_error: str | None


def _window(query: WindowQuery) -> service.WindowSpec:
    return service.WindowSpec(query.model, query.version, query.since, query.until, query.last)


# -- feedback ----------------------------------------------------------------------------------
@route("/feedback", methods=("POST",), role="admin", request_model=FeedbackIn, response_model=FeedbackOut, status=201,
       responses={409: ErrorBody}, tags=("monitoring",))
def post_feedback(body: FeedbackIn) -> FeedbackOut:
    """Record ground truth for logged predictions: one `{prediction_id, label}`, a list, or `{items, overwrite}`.

    Unknown ids answer 404, ids that already have feedback 409 (unless `overwrite`); nothing
    is stored when any item is refused. At most MLOPS_FEEDBACK_BATCH_MAX items per request (413).
    """
    items, overwrite = body.items_and_overwrite()
    return FeedbackOut.model_validate(record_feedback(get_state(), items, overwrite=overwrite, actor=audit_actor()))


# -- predictions -------------------------------------------------------------------------------
@route("/monitoring/predictions", query_model=PredictionsQuery, response_model=Page[PredictionRecord], tags=("monitoring",))
def list_predictions(query: PredictionsQuery) -> Page[PredictionRecord]:
    """Logged predictions of the window, newest first; `next_cursor` pages further back in time."""
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
    return Page[PredictionRecord].model_validate({"items": page, "next_cursor": next_cursor})


# -- drift, performance, report ----------------------------------------------------------------
@route("/monitoring/drift", query_model=WindowQuery, response_model=DriftOut, tags=("monitoring",))
def get_drift(query: WindowQuery) -> APIModel:
    """Data and prediction drift of the window against the reference profile (computed, not stored)."""
    report = service.drift(get_state(), _window(query), persist=False)
    return DriftOut.model_validate(report.to_dict())


@route("/monitoring/drift/runs", methods=("POST",), role="admin", query_model=WindowQuery, response_model=DriftRunOut, status=201,
       tags=("monitoring",))
def post_drift_run(query: WindowQuery) -> DriftRunOut:
    """Compute the drift of the window (the same parameters as `GET /monitoring/drift`) and store it as a run.

    Runs are also stored by the scheduled drift check and `flask mlops drift`; stored runs
    and their reports are kept MLOPS_REPORT_RETENTION_DAYS days.
    """
    state = get_state()
    report = service.drift(state, _window(query), persist=False)
    run = service.save_drift_run(state, service.resolve_model(state, query.model).name, report, trigger="api")
    return DriftRunOut.model_validate(run)


@route("/monitoring/drift/runs", query_model=PageWindowQuery, response_model=Page[DriftRunOut], tags=("monitoring",))
def list_drift_runs(query: PageWindowQuery) -> Page[DriftRunOut]:
    """Stored drift runs, newest first (the trend)."""
    state = get_state()
    model = service.resolve_model(state, query.model).name
    with state.session() as session:
        rows = runs(session, model=model, limit=query.limit + 1, before_id=id_cursor(query.cursor))
    page = rows[: query.limit]
    return Page[DriftRunOut].model_validate({"items": page, "next_cursor": str(page[-1]["id"]) if len(rows) > query.limit and page else None})


@route("/monitoring/performance", query_model=WindowQuery, response_model=PerformanceOut, tags=("monitoring",))
def get_performance(query: WindowQuery) -> PerformanceOut:
    """Realised metrics on labelled predictions, decay vs the baseline, and CBPE estimates."""
    return PerformanceOut.model_validate(service.performance(get_state(), _window(query)))


@route("/monitoring/report", query_model=WindowQuery, response_model=ReportOut, tags=("monitoring",))
def get_report(query: WindowQuery) -> ReportOut:
    """Drift, performance, operations and health in one document (computed, not stored)."""
    return ReportOut.model_validate(service.report(get_state(), _window(query), persist=False))


@route("/stats/summary", query_model=SummaryQuery, response_model=SummaryOut, tags=("monitoring",))
def stats_summary(query: SummaryQuery) -> SummaryOut:
    """Per model: the last `hours` (24) of traffic, labels received, production version, last drift run."""
    return SummaryOut.model_validate(service.summary(get_state(), hours=query.hours))


@route("/alerts", query_model=AlertsQuery, response_model=Page[AlertOut], tags=("monitoring",))
def list_alerts(query: AlertsQuery) -> Page[AlertOut]:
    """Alerts raised by the drift check and the report command, newest first."""
    state = get_state()
    model = service.resolve_model(state, query.model).name if query.model is not None else None
    with state.session() as session:
        rows = alerts(session, model=model, limit=query.limit + 1, before_id=id_cursor(query.cursor), sent_only=query.sent_only)
    page = rows[: query.limit]
    return Page[AlertOut].model_validate({"items": page, "next_cursor": str(page[-1]["id"]) if len(rows) > query.limit and page else None})


@route("/reports/drift", api=False, query_model=DriftReportQuery, produces="text/html", summary="HTML drift report", tags=("monitoring",))
def drift_report_page(query: DriftReportQuery) -> Any:
    """Per-feature reference-vs-current histograms and scores, readable offline (no scripts, no CDN)."""
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
    html = render_drift_html(report, title=title, stylesheet=url_for("mlops.static", filename=STYLESHEET))  # CSP: style-src 'self'
    return Response(html, mimetype="text/html", headers={"Cache-Control": "no-store"})

