"""`/api/experiments` and `/api/rollouts`: A/B tests and gradual rollouts (thin: parse → call → JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from flask import jsonify
from pydantic import ConfigDict, Field

from ..ab.guardrails import GuardrailCheck
from ..ab.rollout import Decision, Stage
from ..ab.stats import Verdict
from ..errors import ValidationError
from ..services import experiments as service
from ..services.auth import audit_actor, reason_with_note
from ..services.catalog import model_names
from ..services.state import get_state
from .blueprint import route
from .schemas import APIModel, ErrorBody, Id, QueryModel, RequestModel, model_of

TAGS = ("experiments",)


# -- inputs ------------------------------------------------------------------------------------
class _StrictBody(RequestModel):
    """JSON bodies here are strict: `"2"` is not a version and `"true"` is not a boolean."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ExperimentsQuery(QueryModel):
    model: str | None = Field(default=None, max_length=200, description="Only experiments of this model.")
    status: str | None = Field(default=None, max_length=20, description="Only experiments in this status (running, stopped, promoted, ...).")
    limit: int = Field(default=50, ge=1, le=1000, description="Most experiments, newest first.")


class RolloutsQuery(QueryModel):
    model: str | None = Field(default=None, max_length=200, description="Only rollouts of this model.")


class ExperimentIn(_StrictBody):
    model: str | None = Field(default=None, max_length=200, description="Required when more than one model is declared.")
    treatment_version: Id = Field(description="The version to test against the control.")
    control_version: Id | None = Field(default=None, description="Default: the production version.")
    share: float = Field(default=0.5, gt=0, lt=1, description="Share of units served the treatment.")
    name: str | None = Field(default=None, max_length=200)
    metric: str | None = Field(
        default=None, max_length=50,
        description="Primary metric: accuracy or positive_rate (binary), accuracy (multi-class), abs_error (regression); default: the task's first.",
    )
    plan: dict[str, Any] | None = Field(default=None, description=f"{', '.join(service.PLAN_OPTIONS)} (validated: a 400 names the field).")
    guardrails: dict[str, Any] | None = Field(default=None, description="Overrides of the guardrail limits (unknown names are refused).")
    actor: str | None = Field(default=None, max_length=200, description="A note kept with the reason; the audit log's who is the authenticated caller.")


class EndIn(_StrictBody):
    reason: str | None = Field(default=None, max_length=2000, description="Why (kept in the audit log).")
    actor: str | None = Field(default=None, max_length=200, description="A note kept with the reason; the audit log's who is the authenticated caller.")


class StageIn(_StrictBody):
    share: float = Field(gt=0, le=1, description="Treatment share during the stage.")
    min_duration_s: float = Field(default=3600.0, ge=0, le=10**9)
    min_samples: int = Field(default=500, ge=0, le=2**31 - 1, description="Treatment requests observed before moving on.")


class RolloutIn(_StrictBody):
    model: str | None = Field(default=None, max_length=200, description="Required when more than one model is declared.")
    treatment_version: Id
    stages: list[StageIn | float] | None = Field(default=None, max_length=100, description="Stages (or bare shares), increasing, ending at 1.0.")
    guardrails: dict[str, Any] | None = None
    on_breach: Literal["keep", "archive"] = Field(default="keep", description="What happens to the treatment version on a rollback.")
    require_accuracy: bool = False
    actor: str | None = Field(default=None, max_length=200, description="A note kept with the reason; the audit log's who is the authenticated caller.")


# -- outputs -----------------------------------------------------------------------------------
class ExperimentOut(APIModel):
    id: Id
    model: str
    name: str | None
    kind: Literal["experiment", "rollout"]
    status: str
    control_version: Id
    treatment_version: Id
    share: float
    unit_key: str
    metric: str
    plan: dict[str, Any]
    guardrails: dict[str, Any]
    outcome: str | None
    actor: str
    created_at: datetime | None
    ended_at: datetime | None
    rollout_id: Id | None = Field(default=None, description="Only on a rollout's experiment (`GET /experiments/<id>`).")


class ExperimentList(APIModel):
    experiments: list[ExperimentOut]


class VariantOut(APIModel):
    """What one variant saw (null where there is no data yet)."""

    n: int
    errors: int
    error_rate: float | None
    labelled: int
    successes: int
    rate: float | None
    latency_mean_ms: float | None
    latency_var_ms2: float | None
    latency_p95_ms: float | None
    units: int | None
    outcome: Literal["proportion", "mean"] = "proportion"
    outcome_mean: float | None = Field(default=None, description="Mean labelled outcome (absolute error) for mean outcomes.")
    outcome_var: float | None = None


#: derived from `ab.guardrails.GuardrailCheck` (NaN is null in JSON)
GuardrailCheckOut = model_of(
    GuardrailCheck,
    name="GuardrailCheckOut",
    descriptions={"ok": "null while there is too little data to judge."},
    control=(float | None, ...),
    treatment=(float | None, ...),
    limit=(float | None, ...),
)

#: derived from `ab.stats.Verdict`
VerdictOut = model_of(Verdict, name="VerdictOut", action=(Literal["continue", "promote_treatment", "keep_control", "stop_guardrail"], ...))


class ResultsOut(APIModel):
    """Every statistic of an experiment and its verdict (see docs/ab-testing.md)."""

    experiment: ExperimentOut
    control: VariantOut
    treatment: VariantOut
    plan: dict[str, Any]
    bayes: dict[str, Any] | None = Field(description="Beta-Binomial comparison (proportion outcomes; null for mean outcomes).")
    ztest: dict[str, Any] | None = Field(description="Two-proportion z-test (proportion outcomes; null for mean outcomes).")
    outcome_welch: dict[str, Any] | None = Field(default=None, description="Welch's t-test of the mean outcome (regression's absolute error).")
    latency_welch: dict[str, Any]
    srm: dict[str, Any]
    guardrails: list[GuardrailCheckOut]  # type: ignore[valid-type]
    verdict: VerdictOut  # type: ignore[valid-type]


#: derived from `ab.rollout.Stage` (every field is always present in answers)
StageOut = model_of(Stage, name="StageOut", min_duration_s=(float, ...), min_samples=(int, ...))


class RolloutOut(APIModel):
    id: Id
    experiment_id: Id
    model: str
    status: str
    stage: int = Field(ge=0, description="Index of the current stage in `stages`.")
    stages: list[StageOut]  # type: ignore[valid-type]
    share: float
    control_version: Id
    treatment_version: Id
    stage_started_at: datetime
    on_breach: Literal["keep", "archive"]
    require_accuracy: bool
    guardrails: dict[str, Any]
    last_decision: dict[str, Any] | None
    history: list[dict[str, Any]]


class RolloutList(APIModel):
    rollouts: list[RolloutOut]


#: derived from `ab.rollout.Decision`, with the rollout it was taken for
DecisionOut = model_of(
    Decision,
    name="DecisionOut",
    rollout_id=(Id, ...),
    action=(Literal["advance", "hold", "rollback", "complete"], ...),
    checks=(list[GuardrailCheckOut], ...),  # type: ignore[valid-type]
)


class DecisionList(APIModel):
    decisions: list[DecisionOut]  # type: ignore[valid-type]


CONFLICT = {409: ErrorBody}


# -- routes ------------------------------------------------------------------------------------
def _model(name: str | None) -> str:
    names = model_names(get_state())
    if name is None:
        if len(names) != 1:
            raise ValidationError("model is required", details={"fields": {"model": "missing"}, "known_models": names})
        return str(names[0])
    return name


@route("/experiments", query_model=ExperimentsQuery, response_model=ExperimentList, tags=TAGS)
def list_experiments(query: ExperimentsQuery) -> Any:
    """Experiments and rollouts' experiments, newest first."""
    items = service.list_experiments(get_state(), model=query.model, status=query.status, limit=query.limit)
    return jsonify({"experiments": items})


@route("/experiments", methods=("POST",), role="admin", request_model=ExperimentIn, response_model=ExperimentOut,
       status=201, responses=CONFLICT, tags=TAGS)
def create_experiment(body: ExperimentIn) -> Any:
    """Start an A/B test of `treatment_version` against production (409 while one is running)."""
    created = service.create_experiment(
        get_state(), _model(body.model), body.treatment_version, control_version=body.control_version,
        share=body.share, name=body.name, metric=body.metric, plan=body.plan, guardrails=body.guardrails,
        actor=audit_actor(), reason=reason_with_note(None, body.actor),
    )
    return jsonify(created), 201


@route("/experiments/<int:experiment_id>", response_model=ExperimentOut, tags=TAGS)
def get_experiment(experiment_id: int) -> Any:
    """One experiment (with `rollout_id` when a rollout drives it)."""
    return jsonify(service.get_experiment(get_state(), experiment_id))


@route("/experiments/<int:experiment_id>/results", response_model=ResultsOut, tags=TAGS)
def experiment_results(experiment_id: int) -> Any:
    """Per-variant outcomes, Bayesian and frequentist statistics, SRM, guardrails and the verdict."""
    return jsonify(service.experiment_results(get_state(), experiment_id))


@route("/experiments/<int:experiment_id>/stop", methods=("POST",), role="admin", request_model=EndIn, body_required=False,
       response_model=ExperimentOut, responses=CONFLICT, tags=TAGS)
def stop_experiment(experiment_id: int, body: EndIn) -> Any:
    """End a running experiment; everyone is served production again (409 if it is not running)."""
    return jsonify(service.stop_experiment(get_state(), experiment_id, actor=audit_actor(), reason=reason_with_note(body.reason, body.actor)))


@route("/experiments/<int:experiment_id>/promote", methods=("POST",), role="admin", request_model=EndIn, body_required=False,
       response_model=ExperimentOut, responses=CONFLICT, tags=TAGS)
def promote_experiment(experiment_id: int, body: EndIn) -> Any:
    """Make the treatment production and end the experiment (409 if it is not running)."""
    return jsonify(service.promote_experiment(get_state(), experiment_id, actor=audit_actor(), reason=reason_with_note(body.reason, body.actor)))


@route("/rollouts", query_model=RolloutsQuery, response_model=RolloutList, tags=TAGS)
def list_rollouts(query: RolloutsQuery) -> Any:
    """Gradual rollouts, newest first."""
    return jsonify({"rollouts": service.list_rollouts(get_state(), model=query.model)})


@route("/rollouts", methods=("POST",), role="admin", request_model=RolloutIn, response_model=RolloutOut,
       status=201, responses=CONFLICT, tags=TAGS)
def start_rollout(body: RolloutIn) -> Any:
    """Start a gradual rollout of `treatment_version` at its first stage's share (409 while an experiment runs)."""
    stages = None if body.stages is None else [s if isinstance(s, float) else s.model_dump() for s in body.stages]
    created = service.start_rollout(
        get_state(), _model(body.model), body.treatment_version, stages=stages, guardrails=body.guardrails,
        on_breach=body.on_breach, require_accuracy=body.require_accuracy, actor=audit_actor(), reason=reason_with_note(None, body.actor),
    )
    return jsonify(created), 201


@route("/rollouts/<int:rollout_id>", response_model=RolloutOut, tags=TAGS)
def get_rollout(rollout_id: int) -> Any:
    """One rollout: stage, share, guardrails, the last decision and the history."""
    return jsonify(service.get_rollout(get_state(), rollout_id))


@route("/rollouts/evaluate", methods=("POST",), role="admin", response_model=DecisionList, tags=TAGS)
def evaluate_rollouts() -> Any:
    """Run one rollout evaluation now (what the scheduler does on its interval)."""
    return jsonify({"decisions": service.evaluate_rollouts(get_state())})
