"""A/B experiments and gradual rollouts of an app: create, read, stop, promote, evaluate.

The statistics and the rollout state machine are pure (`ab/`); this module connects them
to the app: the experiment tables, the prediction log (per-variant outcomes), feedback
labels, the registry (promotion) and the audit trail. The API and CLI call only these
functions. `evaluate_rollouts(state)` is what the scheduler runs every
`MLOPS_ROLLOUT_INTERVAL_S`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..ab.assign import CONTROL, TREATMENT, new_salt
from ..ab.guardrails import Guardrails
from ..ab.rollout import COMPLETE, DEFAULT_STAGES, HOLD, ROLLBACK, RolloutState, Stage, apply, evaluate, validate_stages
from ..ab.stats import Plan, PlanError, analyze
from ..ab.summary import summarize
from ..errors import ConflictError, NotFoundError, ValidationError
from ..store.columnar import read_window
from ..store.experiments import COMPLETED, PROMOTED, ROLLED_BACK, RUNNING, STOPPED, Experiment, Rollout
from ..store.feedback import Feedback
from ..store.models import AuditEvent, ModelVersion
from ..store.predictions import format_ts, read_records
from .alerts import post_webhook
from .catalog import model_spec
from .lifecycle import ARCHIVED, ensure_loadable, version_task
from .prometheus import record_rollout
from .registry import alias_version, get_version, set_alias
from .serving import PRODUCTION

if TYPE_CHECKING:
    from ..ab.summary import VariantSummary
    from .state import MLOpsState

logger = logging.getLogger(__name__)

#: A/B outcome metrics per task kind (the first is the default): a labelled request is
#: correct or not (accuracy), its label positive or not, or its prediction off by an amount
METRICS_BY_TASK = {"binary": ("accuracy", "positive_rate"), "multiclass": ("accuracy",), "regression": ("abs_error",)}
METRICS = ("accuracy", "positive_rate", "abs_error")
PLAN_OPTIONS = ("alpha", "power", "baseline", "mde", "sd", "planned_control", "planned_treatment", "srm_threshold")
#: what is stored with an experiment (and rebuilt into a `Plan` for its results)
STORED_PLAN = (*PLAN_OPTIONS, "outcome", "higher_is_better")


def _now() -> datetime:
    return datetime.now(timezone.utc)


# ------------------------------------------------------------------------ creating


def _number(metrics: dict[str, Any], *names: str) -> float | None:
    for name in names:
        value = metrics.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def plan_defaults(metric: str, control_metrics: dict[str, Any]) -> dict[str, Any]:
    """The plan a user did not spell out, from the control version's holdout metrics.

    Proportions: baseline = the control's accuracy (0.5 when unknown or not a rate), MDE 5
    points, shrunk to half the room left so baseline + MDE stays below 1 (a 0.97 control is
    planned with an MDE of 0.015). Absolute error: MDE = 10 % of the control's MAE, sd = its
    RMSE (an upper bound of the absolute error's spread).
    """
    if metric == "abs_error":
        mae, rmse = _number(control_metrics, "mae", "holdout_mae"), _number(control_metrics, "rmse", "holdout_rmse")
        if mae is None or mae <= 0:  # nothing to plan from: a fixed horizon (give sd and mde to plan one)
            return {"outcome": "mean", "higher_is_better": False, "planned_control": 1000, "planned_treatment": 1000}
        return {"outcome": "mean", "higher_is_better": False, "mde": -0.1 * mae, "sd": rmse or 1.25 * mae}
    baseline = _number(control_metrics, "accuracy", "holdout_accuracy") if metric == "accuracy" else None
    baseline = min(max(baseline, 0.01), 0.99) if baseline is not None else 0.5
    return {"outcome": "proportion", "higher_is_better": True, "baseline": baseline, "mde": min(0.05, (1.0 - baseline) / 2)}


def _plan(
    metric: str, kind: str, share: float, plan: dict[str, Any] | None, guardrails: dict[str, Any] | None, control_metrics: dict[str, Any]
) -> Plan:
    """Validate the plan at creation: a 400 names the field (`metric`, `plan.mde`, `guardrails`, ...)."""

    allowed = METRICS_BY_TASK[kind]
    if metric not in allowed:
        raise ValidationError(
            f"metric {metric!r} does not fit a {kind} model; use {', '.join(allowed)}",
            details={"field": "metric", "metric": metric, "allowed": list(allowed)},
        )
    options = dict(plan or {})
    unknown = sorted(set(options) - set(PLAN_OPTIONS))
    if unknown:
        raise ValidationError(f"unknown plan option(s) {unknown}; known: {list(PLAN_OPTIONS)}", details={"field": f"plan.{unknown[0]}"})
    for key, value in options.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValidationError(f"plan.{key} must be a number, got {value!r}", details={"field": f"plan.{key}"})
    defaults = plan_defaults(metric, control_metrics)
    merged = {**defaults, **{k: v for k, v in options.items() if v is not None}}
    try:
        limits = Guardrails.from_dict(guardrails)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"invalid guardrails: {exc}", details={"field": "guardrails", "guardrails": guardrails}) from exc
    if {"mde", "sd", "baseline"} & set(options) and "planned_control" not in options:  # the user plans: drop the fixed horizon
        merged.pop("planned_control", None), merged.pop("planned_treatment", None)
    try:
        checked = Plan(share=min(max(share, 0.01), 0.99), guardrails=limits, **merged)
        checked.required()  # the planned sample must be computable (extreme alpha/power overflow)
        return checked
    except PlanError as exc:
        raise ValidationError(f"invalid experiment plan: {exc}", details={"field": f"plan.{exc.field}", "plan": plan}) from exc
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValidationError(f"invalid experiment plan: {exc}", details={"field": "plan", "plan": plan}) from exc


def stored_plan(row: Experiment) -> tuple[Plan, str | None]:
    """The experiment's plan, rebuilt; an impossible stored plan (an older release's default
    MDE over a high baseline) is adapted rather than failing the results (with a note)."""
    share = min(max(row.share, 0.01), 0.99)
    stored = {k: v for k, v in (row.plan or {}).items() if k in STORED_PLAN}
    guards = Guardrails.from_dict(row.guardrails)
    try:
        plan = Plan(share=share, guardrails=guards, **stored)
        plan.required()
        return plan, None
    except (TypeError, ValueError, OverflowError) as exc:
        fixed: dict[str, Any] = {k: stored[k] for k in ("outcome", "higher_is_better") if k in stored}
        if fixed.get("outcome") == "mean":
            fixed.update(planned_control=1000, planned_treatment=1000)
            how = "a fixed horizon of 1000 labelled outcomes per variant"
        else:
            baseline = stored.get("baseline")
            baseline = float(baseline) if isinstance(baseline, (int, float)) and 0 < baseline < 1 else 0.5
            fixed.update(baseline=baseline, mde=min(0.05, (1.0 - baseline) / 2))
            how = f"mde {fixed['mde']:.4g}"
        return Plan(share=share, guardrails=guards, **fixed), f"the stored plan was not usable ({exc}); judged with {how}"


def _servable(state: MLOpsState, model: str, version: int, role: str) -> Any:
    """The version's info when it can serve (registered, not archived, loadable), else 404/409 naming why."""

    info = get_version(state, model, version)
    if info.status == ARCHIVED:
        raise ConflictError(f"{model} v{version} is archived and cannot be the {role}", details={"field": f"{role}_version", "version": version})
    ensure_loadable(state, model, version)
    return info


def _audit(session: Any, model: str, action: str, *, version: int | None = None, previous: int | None = None,
           actor: str = "system", reason: str | None = None, details: dict[str, Any] | None = None) -> None:
    session.add(AuditEvent(model_name=model, action=action, version=version, previous_version=previous,
                           actor=actor, reason=reason, details=details or {}))


def create_experiment(
    state: MLOpsState,
    model: str,
    treatment_version: int,
    *,
    control_version: int | None = None,
    share: float = 0.5,
    name: str | None = None,
    metric: str | None = None,
    plan: dict[str, Any] | None = None,
    guardrails: dict[str, Any] | None = None,
    unit_key: str = "user_id",
    actor: str = "system",
    reason: str | None = None,
    kind: str = "experiment",
) -> dict[str, Any]:
    """Start an experiment of `treatment_version` against production (or `control_version`).

    Both versions must be registered, loadable and not archived (404/409); the plan is
    validated here (400 naming the field), with the metric defaulting to the task's outcome.
    """
    model_spec(state, model)
    if not 0 <= share <= 1 or (kind == "experiment" and not 0 < share < 1):
        raise ValidationError("share must be strictly between 0 and 1 for an experiment", details={"share": share})
    control = control_version if control_version is not None else alias_version(state, model)
    if control is None:
        raise ConflictError(f"model {model!r} has no production version to use as control", details={"model": model})
    if control == treatment_version:
        raise ValidationError("control and treatment must be different versions", details={"version": control})
    control_info = _servable(state, model, control, "control")
    _servable(state, model, treatment_version, "treatment")
    task = version_task(state, model, info=control_info).kind  # not `kind` (experiment | rollout)
    metric = metric or METRICS_BY_TASK[task][0]
    checked = _plan(metric, task, share, plan, guardrails, dict(control_info.metrics or {}))
    row = Experiment(
        model_name=model, running_model=model, name=name, kind=kind, control_version=control,
        treatment_version=treatment_version, share=float(share), salt=new_salt(), unit_key=unit_key,
        metric=metric, plan={k: getattr(checked, k) for k in STORED_PLAN},
        guardrails=dict(vars(checked.guardrails)), actor=actor,
    )
    try:
        with state.session() as session, session.begin():
            session.add(row)
            session.flush()
            _audit(session, model, f"{kind}_start", version=treatment_version, previous=control, actor=actor,
                   reason=reason, details={"experiment": row.id, "share": share})
    except IntegrityError as exc:
        running = _running_id(state, model)
        raise ConflictError(
            f"model {model!r} already has a running experiment (#{running}); stop it first",
            details={"model": model, "experiment_id": running},
        ) from exc
    state.models.refresh()  # this worker routes now; the others within MLOPS_RELOAD_INTERVAL
    return _experiment_dict(row)


def _running_id(state: MLOpsState, model: str) -> int | None:
    with state.session() as session:
        return session.scalar(select(Experiment.id).where(Experiment.running_model == model))


# ------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ExperimentInfo:
    """An experiment (or a rollout's experiment) as the API, the CLI and the dashboard show it."""

    id: int
    model: str
    name: str | None
    kind: Literal["experiment", "rollout"]
    status: str
    control_version: int
    treatment_version: int
    share: float
    unit_key: str
    metric: str
    plan: dict[str, Any]
    guardrails: dict[str, Any]
    outcome: str | None
    actor: str
    created_at: datetime | None
    ended_at: datetime | None
    rollout_id: int | None = None  # only on a rollout's experiment, from `get_experiment`

    @classmethod
    def of(cls, row: Experiment, rollout: Rollout | None = None) -> ExperimentInfo:
        return cls(
            id=row.id, model=row.model_name, name=row.name, kind=row.kind, status=row.status,  # type: ignore[arg-type]
            control_version=row.control_version, treatment_version=row.treatment_version, share=row.share,
            unit_key=row.unit_key, metric=row.metric, plan=row.plan, guardrails=row.guardrails, outcome=row.outcome,
            actor=row.actor, created_at=row.created_at, ended_at=row.ended_at, rollout_id=None if rollout is None else rollout.id,
        )

    def to_dict(self) -> dict[str, Any]:
        """Every field (times as ISO-8601 text); `rollout_id` only when set."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        data["ended_at"] = self.ended_at.isoformat() if self.ended_at else None
        if self.rollout_id is None:
            del data["rollout_id"]
        return data


def _experiment_dict(row: Experiment, rollout: Rollout | None = None) -> dict[str, Any]:
    return ExperimentInfo.of(row, rollout).to_dict()


def _get(session: Any, experiment_id: int) -> Experiment:
    row = session.get(Experiment, experiment_id)
    if row is None:
        raise NotFoundError(f"no experiment {experiment_id}", details={"experiment_id": experiment_id})
    return row


def list_experiments(state: MLOpsState, *, model: str | None = None, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    query = select(Experiment).order_by(Experiment.id.desc()).limit(max(1, min(limit, 1000)))
    if model is not None:
        query = query.where(Experiment.model_name == model)
    if status is not None:
        query = query.where(Experiment.status == status)
    with state.session() as session:
        return [_experiment_dict(r) for r in session.scalars(query)]


def get_experiment(state: MLOpsState, experiment_id: int) -> dict[str, Any]:
    with state.session() as session:
        row = _get(session, experiment_id)
        rollout = session.scalar(select(Rollout).where(Rollout.experiment_id == experiment_id))
        return _experiment_dict(row, rollout)


def _labels(state: MLOpsState, ids: np.ndarray) -> dict[str, Any]:
    """Feedback labels by prediction id (the `Feedback` table of store/feedback.py)."""
    out: dict[str, Any] = {}
    id_list = [str(i) for i in ids]
    with state.session() as session:
        for start in range(0, len(id_list), 500):
            chunk = id_list[start : start + 500]
            out.update((pid, label) for pid, label in session.execute(
                select(Feedback.prediction_id, Feedback.label).where(Feedback.prediction_id.in_(chunk))
            ))
    return out


def observations(
    state: MLOpsState, model: str, metric: str, since: datetime, until: datetime | None = None, *, with_units: bool = False
) -> tuple[VariantSummary, VariantSummary]:
    """(control, treatment) summaries of the logged requests in [since, until).

    `with_units` also counts distinct units per variant (a second pass over the JSON log),
    which the sample-ratio check needs.
    """
    window = read_window(state.log_dir, model=model, since=since, until=until, with_ids=True, features=(), open_days=state.open_days)
    cats = window.variant.categories
    codes = window.variant.codes
    c_code = cats.index(CONTROL) if CONTROL in cats else -2
    t_code = cats.index(TREATMENT) if TREATMENT in cats else -2
    keep = (codes == c_code) | (codes == t_code)
    is_t = (codes == t_code)[keep]
    outcome = np.full(int(keep.sum()), np.nan)
    ids = window.ids[keep] if window.ids is not None else np.array([])
    labels = _labels(state, ids)
    if labels:
        predictions = np.asarray(window.prediction, dtype=object)[keep]
        for i, pid in enumerate(ids):
            label = labels.get(str(pid))
            if label is None:
                continue
            if metric == "positive_rate":
                outcome[i] = 1.0 if _truthy(label) else 0.0
            elif metric == "abs_error":
                outcome[i] = _abs_error(predictions[i], label)
            else:
                outcome[i] = 1.0 if _same(predictions[i], label) else 0.0
    kind = "mean" if metric == "abs_error" else "proportion"
    control, treatment = summarize(is_t.astype(np.int8), outcome, window.latency_ms[keep], window.errors[keep], kind=kind)
    if with_units:
        units = _units(state, model, since, until)
        control, treatment = replace(control, units=units[CONTROL]), replace(treatment, units=units[TREATMENT])
    return control, treatment


def _units(state: MLOpsState, model: str, since: datetime, until: datetime | None) -> dict[str, int]:
    """Distinct units per variant (each random-assigned request is its own unit), for the SRM check."""
    seen: dict[str, set[str]] = {CONTROL: set(), TREATMENT: set()}
    random_units = {CONTROL: 0, TREATMENT: 0}
    for record in read_records(state.log_dir, model=model, since=since, until=until):
        variant = record.get("variant")
        if variant not in seen:
            continue
        unit = record.get("unit_id")
        if unit is None or record.get("assignment") == "random":
            random_units[variant] += 1
        else:
            seen[variant].add(str(unit))
    return {v: len(seen[v]) + random_units[v] for v in seen}


def _truthy(value: Any) -> bool:
    return value in (1, True, "1", "true", "yes", "positive") or (isinstance(value, float) and value == 1.0)


def _abs_error(prediction: Any, label: Any) -> float:
    """|prediction - label| for a regression outcome; NaN (not counted) when either is not a number."""
    try:
        value = abs(float(prediction) - float(label))
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def _same(prediction: Any, label: Any) -> bool:
    if prediction is None or (isinstance(prediction, float) and math.isnan(prediction)):
        return False
    try:
        return float(prediction) == float(label)
    except (TypeError, ValueError):
        return str(prediction) == str(label)


def experiment_results(state: MLOpsState, experiment_id: int) -> dict[str, Any]:
    """All statistics and the verdict of an experiment, from its logged requests and feedback."""

    with state.session() as session:
        row = _get(session, experiment_id)
    plan, note = stored_plan(row)
    control, treatment = observations(state, row.model_name, row.metric, row.created_at, row.ended_at, with_units=True)
    results = analyze(control, treatment, plan).to_dict()
    if note:
        results["plan"]["note"] = note
    return {"experiment": _experiment_dict(row), **results}


# ------------------------------------------------------------------------- ending


def _end(state: MLOpsState, experiment_id: int, status: str, *, actor: str, reason: str | None, action: str) -> dict[str, Any]:
    with state.session() as session, session.begin():
        row = _get(session, experiment_id)
        if row.status != RUNNING:
            raise ConflictError(f"experiment {experiment_id} is {row.status}, not running", details={"status": row.status})
        row.status, row.running_model, row.ended_at, row.outcome = status, None, _now(), reason
        rollout = session.scalar(select(Rollout).where(Rollout.experiment_id == experiment_id))
        if rollout is not None and rollout.status == RUNNING:
            rollout.status = status
        _audit(session, row.model_name, action, version=row.treatment_version, previous=row.control_version,
               actor=actor, reason=reason, details={"experiment": experiment_id})
        data = _experiment_dict(row)
    state.models.refresh()
    return data


def stop_experiment(state: MLOpsState, experiment_id: int, *, actor: str = "system", reason: str | None = None) -> dict[str, Any]:
    """End the experiment; everyone is served production again."""
    return _end(state, experiment_id, STOPPED, actor=actor, reason=reason or "stopped", action="experiment_stop")


def promote_experiment(state: MLOpsState, experiment_id: int, *, actor: str = "system", reason: str | None = None) -> dict[str, Any]:
    """Make the treatment production (through the registry) and end the experiment."""
    with state.session() as session:
        row = _get(session, experiment_id)
    if row.status != RUNNING:
        raise ConflictError(f"experiment {experiment_id} is {row.status}, not running", details={"status": row.status})
    _servable(state, row.model_name, row.treatment_version, "treatment")
    data = _end(state, experiment_id, PROMOTED, actor=actor, reason=reason or "treatment promoted", action="experiment_promote")
    set_alias(state, row.model_name, PRODUCTION, row.treatment_version, actor=actor, action="promote",
              reason=reason or f"promoted from experiment {experiment_id}", details={"experiment": experiment_id})
    return data


# ------------------------------------------------------------------------ rollouts


@dataclass(frozen=True)
class RolloutInfo:
    """A gradual rollout: its stages, where it is, its experiment's share and versions, and its decisions."""

    id: int
    experiment_id: int
    model: str
    status: str
    stage: int  # index of the current stage in `stages`
    stages: list[dict[str, Any]]  # `ab.rollout.Stage` fields
    share: float
    control_version: int
    treatment_version: int
    stage_started_at: datetime
    on_breach: Literal["keep", "archive"]
    require_accuracy: bool
    guardrails: dict[str, Any]
    last_decision: dict[str, Any] | None
    history: list[dict[str, Any]]

    @classmethod
    def of(cls, rollout: Rollout, exp: Experiment) -> RolloutInfo:
        return cls(
            id=rollout.id, experiment_id=exp.id, model=rollout.model_name, status=rollout.status, stage=rollout.stage,
            stages=rollout.stages, share=exp.share, control_version=exp.control_version, treatment_version=exp.treatment_version,
            stage_started_at=rollout.stage_started_at, on_breach=rollout.on_breach,  # type: ignore[arg-type]
            require_accuracy=rollout.require_accuracy, guardrails=exp.guardrails, last_decision=rollout.last_decision,
            history=rollout.history,
        )

    def to_dict(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "stage_started_at": self.stage_started_at.isoformat()}


def _rollout_dict(rollout: Rollout, exp: Experiment) -> dict[str, Any]:
    return RolloutInfo.of(rollout, exp).to_dict()


def start_rollout(
    state: MLOpsState,
    model: str,
    treatment_version: int,
    *,
    stages: list[Any] | None = None,
    guardrails: dict[str, Any] | None = None,
    on_breach: str = "keep",
    require_accuracy: bool = False,
    actor: str = "system",
    reason: str | None = None,
) -> dict[str, Any]:
    """Start a gradual rollout of `treatment_version` (its first stage's share of traffic)."""
    if on_breach not in ("keep", "archive"):
        raise ValidationError("on_breach must be 'keep' or 'archive'", details={"on_breach": on_breach})
    try:
        parsed = validate_stages([Stage.from_dict(s) for s in stages] if stages else DEFAULT_STAGES)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationError(f"invalid stages: {exc}", details={"stages": stages}) from exc
    exp = create_experiment(state, model, treatment_version, share=parsed[0].share, guardrails=guardrails,
                            actor=actor, reason=reason, kind="rollout", name=f"rollout of v{treatment_version}")
    with state.session() as session, session.begin():
        rollout = Rollout(experiment_id=exp["id"], model_name=model, stages=[dict(vars(s)) for s in parsed],
                          stage=0, stage_started_at=_now(), on_breach=on_breach, require_accuracy=require_accuracy)
        session.add(rollout)
        session.flush()
        rollout_id = rollout.id
    return get_rollout(state, rollout_id)


def get_rollout(state: MLOpsState, rollout_id: int) -> dict[str, Any]:
    with state.session() as session:
        rollout = session.get(Rollout, rollout_id)
        if rollout is None:
            raise NotFoundError(f"no rollout {rollout_id}", details={"rollout_id": rollout_id})
        return _rollout_dict(rollout, _get(session, rollout.experiment_id))


def list_rollouts(state: MLOpsState, *, model: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    query = select(Rollout).order_by(Rollout.id.desc()).limit(max(1, min(limit, 1000)))
    if model is not None:
        query = query.where(Rollout.model_name == model)
    with state.session() as session:
        return [_rollout_dict(r, _get(session, r.experiment_id)) for r in session.scalars(query)]


def evaluate_rollouts(state: MLOpsState, now: datetime | None = None) -> list[dict[str, Any]]:
    """Evaluate every running rollout once and act: advance, hold, roll back or complete.

    The scheduler calls this every `MLOPS_ROLLOUT_INTERVAL_S` on exactly one runner.
    Returns one entry per rollout: its id and the decision taken.
    """
    now = now or _now()
    with state.session() as session:
        running = session.scalars(select(Rollout).where(Rollout.status == RUNNING)).all()
        pairs = [(r, _get(session, r.experiment_id)) for r in running]
    out: list[dict[str, Any]] = []
    for rollout, exp in pairs:
        current = RolloutState(
            stage_started_at=rollout.stage_started_at, stages=tuple(Stage.from_dict(s) for s in rollout.stages),
            stage=rollout.stage, guardrails=Guardrails.from_dict(exp.guardrails), require_accuracy=rollout.require_accuracy,
        )
        control, treatment = observations(state, exp.model_name, exp.metric, rollout.stage_started_at, now)
        decision = evaluate(current, {CONTROL: control, TREATMENT: treatment}, now)
        record = {**decision.to_dict(), "at": format_ts(now), "share_before": exp.share,
                  "observed": {CONTROL: control.to_dict(), TREATMENT: treatment.to_dict()}}
        if decision.action == HOLD:
            with state.session() as session, session.begin():
                row = session.get_one(Rollout, rollout.id)
                row.last_decision = record
        elif decision.action == ROLLBACK:
            _rollback(state, rollout, exp, record, actor="scheduler")
        elif decision.action == COMPLETE:
            _complete(state, rollout, exp, record)
        else:
            nxt = apply(current, decision, now)
            with state.session() as session, session.begin():
                row, erow = session.get_one(Rollout, rollout.id), session.get_one(Experiment, exp.id)
                row.stage, row.stage_started_at, row.last_decision = nxt.stage, nxt.stage_started_at, record
                row.history = [*row.history, record]
                erow.share = decision.new_share
                _audit(session, exp.model_name, "rollout_advance", version=exp.treatment_version, actor="scheduler",
                       reason="; ".join(decision.reasons), details={"rollout": rollout.id, "share": decision.new_share})
            state.models.refresh()
        logger.info("rollout %s of %s v%s: %s (share %s)", rollout.id, exp.model_name, exp.treatment_version,
                    decision.action, decision.new_share)
        _count_rollout_step(state, exp.model_name, exp.id, decision.action)
        out.append({"rollout_id": rollout.id, **decision.to_dict()})
    return out


def _count_rollout_step(state: MLOpsState, model: str, experiment_id: int, action: str) -> None:
    """The Prometheus rollout-events counter; metrics never break an evaluation."""
    try:
        record_rollout(state, model, experiment_id, action)
    except Exception:  # noqa: BLE001 - best effort, like the retrain counter
        logger.debug("could not record the rollout metric", exc_info=True)


def _rollback(state: MLOpsState, rollout: Rollout, exp: Experiment, record: dict[str, Any], *, actor: str) -> None:
    reason = "; ".join(record["reasons"])
    with state.session() as session, session.begin():
        row, erow = session.get_one(Rollout, rollout.id), session.get_one(Experiment, exp.id)
        row.status, row.last_decision, row.history = ROLLED_BACK, record, [*row.history, record]
        erow.status, erow.share, erow.running_model, erow.ended_at, erow.outcome = ROLLED_BACK, 0.0, None, _now(), reason
        if row.on_breach == "archive":
            version = session.scalar(select(ModelVersion).where(
                ModelVersion.model_name == exp.model_name, ModelVersion.version == exp.treatment_version))
            if version is not None:
                version.status = "archived"
        _audit(session, exp.model_name, "rollout_rollback", version=exp.treatment_version, previous=exp.control_version,
               actor=actor, reason=reason, details={"rollout": rollout.id, "share_before": exp.share, "on_breach": row.on_breach})
    state.models.refresh()
    send_alert(state, f"rollout {rollout.id} of {exp.model_name} v{exp.treatment_version} rolled back: {reason}",
               {"rollout": rollout.id, "model": exp.model_name, "version": exp.treatment_version, "checks": record["checks"]})


def _complete(state: MLOpsState, rollout: Rollout, exp: Experiment, record: dict[str, Any]) -> None:
    with state.session() as session, session.begin():
        row, erow = session.get_one(Rollout, rollout.id), session.get_one(Experiment, exp.id)
        row.status, row.last_decision, row.history = COMPLETED, record, [*row.history, record]
        erow.status, erow.share, erow.running_model, erow.ended_at = COMPLETED, 1.0, None, _now()
        erow.outcome = "; ".join(record["reasons"])
    set_alias(state, exp.model_name, PRODUCTION, exp.treatment_version, actor="scheduler", action="promote",
              reason=f"rollout {rollout.id} completed", details={"rollout": rollout.id, "experiment": exp.id})


def send_alert(state: MLOpsState, text: str, details: dict[str, Any]) -> None:
    """Log a warning and POST `{"text", "details"}` to MLOPS_ALERT_WEBHOOK (in the background,
    because a rollback may be evaluated inside a request: `POST /rollouts/evaluate`)."""
    logger.warning("ALERT: %s", text)
    url = state.config.alert_webhook
    if url:
        payload = json.loads(json.dumps({"text": text, "details": details}, default=str))
        threading.Thread(target=post_webhook, args=(url, payload), name="mlops-alert", daemon=True).start()
