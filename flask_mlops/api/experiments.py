"""`/api/experiments` and `/api/rollouts`: A/B tests and gradual rollouts (thin: parse → call → model)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from ..ab.guardrails import GuardrailCheck
from ..ab.rollout import Decision, Stage
from ..ab.stats import BayesResult, Results, SRMResult, Verdict, WelchResult, ZTestResult
from ..ab.summary import DERIVED, VariantSummary
from ..errors import ValidationError
from ..services import experiments as service
from ..services.auth import audit_actor, reason_with_note
from ..services.catalog import model_names
from ..services.experiments import ExperimentInfo, RolloutInfo
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


# -- outputs (each derived from the dataclass the service or `ab/` builds the answer from) ----------
#: derived from `services.experiments.ExperimentInfo`
ExperimentOut = model_of(
    ExperimentInfo, name="ExperimentOut",
    id=(Id, ...), control_version=(Id, ...), treatment_version=(Id, ...),
    rollout_id=(Id | None, Field(default=None, description="Only on a rollout's experiment (`GET /experiments/<id>`).")),
)


class ExperimentList(APIModel):
    experiments: list[ExperimentOut]  # type: ignore[valid-type]


#: derived from `ab.summary.VariantSummary` (its fields by their JSON keys, and its two rates; NaN is null)
VariantOut = model_of(
    VariantSummary, name="VariantOut", doc="What one variant saw (null where there is no data yet).",
    properties=DERIVED, nullable_floats=True,
    descriptions={"outcome_mean": "Mean labelled outcome (absolute error) for mean outcomes."},
    outcome=(Literal["proportion", "mean"], "proportion"),
)

#: derived from `ab.guardrails.GuardrailCheck` (NaN is null in JSON)
GuardrailCheckOut = model_of(
    GuardrailCheck, name="GuardrailCheckOut", nullable_floats=True,
    descriptions={"ok": "null while there is too little data to judge."},
)

#: derived from `ab.stats.Verdict`
VerdictOut = model_of(Verdict, name="VerdictOut", action=(Literal["continue", "promote_treatment", "keep_control", "stop_guardrail"], ...))

#: the statistics, derived from their `ab.stats` dataclasses (NaN is null in JSON)
BayesOut = model_of(BayesResult, name="BayesOut", nullable_floats=True)
ZTestOut = model_of(ZTestResult, name="ZTestOut", nullable_floats=True)
WelchOut = model_of(WelchResult, name="WelchOut", nullable_floats=True)
SRMOut = model_of(SRMResult, name="SRMOut", nullable_floats=True)

#: derived from `ab.stats.Results`, with the experiment it is about
ResultsOut = model_of(
    Results, name="ResultsOut", doc="Every statistic of an experiment and its verdict (see docs/ab-testing.md).",
    experiment=(ExperimentOut, ...),
    control=(VariantOut, ...),
    treatment=(VariantOut, ...),
    bayes=(BayesOut | None, Field(description="Beta-Binomial comparison (proportion outcomes; null for mean outcomes).")),
    ztest=(ZTestOut | None, Field(description="Two-proportion z-test (proportion outcomes; null for mean outcomes).")),
    outcome_welch=(WelchOut | None, Field(default=None, description="Welch's t-test of the mean outcome (regression's absolute error).")),
    latency_welch=(WelchOut, ...),
    srm=(SRMOut, ...),
    guardrails=(list[GuardrailCheckOut], ...),  # type: ignore[valid-type]
    verdict=(VerdictOut, ...),
)

#: derived from `ab.rollout.Stage` (every field is always present in answers)
StageOut = model_of(Stage, name="StageOut", min_duration_s=(float, ...), min_samples=(int, ...))

#: derived from `services.experiments.RolloutInfo`
RolloutOut = model_of(
    RolloutInfo, name="RolloutOut",
    id=(Id, ...), experiment_id=(Id, ...), control_version=(Id, ...), treatment_version=(Id, ...),
    stage=(int, Field(ge=0, description="Index of the current stage in `stages`.")),
    stages=(list[StageOut], ...),  # type: ignore[valid-type]
)


class RolloutList(APIModel):
    rollouts: list[RolloutOut]  # type: ignore[valid-type]


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
def list_experiments(query: ExperimentsQuery) -> APIModel:
    """Experiments and rollouts' experiments, newest first."""
    items = service.list_experiments(get_state(), model=query.model, status=query.status, limit=query.limit)
    return ExperimentList.model_validate({"experiments": items})


@route("/experiments", methods=("POST",), role="admin", request_model=ExperimentIn, response_model=ExperimentOut,
       status=201, responses=CONFLICT, tags=TAGS)
def create_experiment(body: ExperimentIn) -> APIModel:
    """Start an A/B test of `treatment_version` against production (409 while one is running)."""
    created = service.create_experiment(
        get_state(), _model(body.model), body.treatment_version, control_version=body.control_version,
        share=body.share, name=body.name, metric=body.metric, plan=body.plan, guardrails=body.guardrails,
        actor=audit_actor(), reason=reason_with_note(None, body.actor),
    )
    return ExperimentOut.model_validate(created)


@route("/experiments/<int:experiment_id>", response_model=ExperimentOut, tags=TAGS)
def get_experiment(experiment_id: int) -> APIModel:
    """One experiment (with `rollout_id` when a rollout drives it)."""
    return ExperimentOut.model_validate(service.get_experiment(get_state(), experiment_id))


@route("/experiments/<int:experiment_id>/results", response_model=ResultsOut, tags=TAGS)
def experiment_results(experiment_id: int) -> APIModel:
    """Per-variant outcomes, Bayesian and frequentist statistics, SRM, guardrails and the verdict."""
    return ResultsOut.model_validate(service.experiment_results(get_state(), experiment_id))


@route("/experiments/<int:experiment_id>/stop", methods=("POST",), role="admin", request_model=EndIn, body_required=False,
       response_model=ExperimentOut, responses=CONFLICT, tags=TAGS)
def stop_experiment(experiment_id: int, body: EndIn) -> APIModel:
    """End a running experiment; everyone is served production again (409 if it is not running)."""
    return ExperimentOut.model_validate(
        service.stop_experiment(get_state(), experiment_id, actor=audit_actor(), reason=reason_with_note(body.reason, body.actor))
    )


@route("/experiments/<int:experiment_id>/promote", methods=("POST",), role="admin", request_model=EndIn, body_required=False,
       response_model=ExperimentOut, responses=CONFLICT, tags=TAGS)
def promote_experiment(experiment_id: int, body: EndIn) -> APIModel:
    """Make the treatment production and end the experiment (409 if it is not running)."""
    return ExperimentOut.model_validate(
        service.promote_experiment(get_state(), experiment_id, actor=audit_actor(), reason=reason_with_note(body.reason, body.actor))
    )


@route("/rollouts", query_model=RolloutsQuery, response_model=RolloutList, tags=TAGS)
def list_rollouts(query: RolloutsQuery) -> APIModel:
    """Gradual rollouts, newest first."""
    return RolloutList.model_validate({"rollouts": service.list_rollouts(get_state(), model=query.model)})


@route("/rollouts", methods=("POST",), role="admin", request_model=RolloutIn, response_model=RolloutOut,
       status=201, responses=CONFLICT, tags=TAGS)
def start_rollout(body: RolloutIn) -> APIModel:
    """Start a gradual rollout of `treatment_version` at its first stage's share (409 while an experiment runs)."""
    stages = None if body.stages is None else [s if isinstance(s, float) else s.model_dump() for s in body.stages]
    created = service.start_rollout(
        get_state(), _model(body.model), body.treatment_version, stages=stages, guardrails=body.guardrails,
        on_breach=body.on_breach, require_accuracy=body.require_accuracy, actor=audit_actor(), reason=reason_with_note(None, body.actor),
    )
    return RolloutOut.model_validate(created)


@route("/rollouts/<int:rollout_id>", response_model=RolloutOut, tags=TAGS)
def get_rollout(rollout_id: int) -> APIModel:
    """One rollout: stage, share, guardrails, the last decision and the history."""
    return RolloutOut.model_validate(service.get_rollout(get_state(), rollout_id))


@route("/rollouts/evaluate", methods=("POST",), role="admin", response_model=DecisionList, tags=TAGS)
def evaluate_rollouts() -> APIModel:
    """Run one rollout evaluation now (what the scheduler does on its interval)."""
    return DecisionList.model_validate({"decisions": service.evaluate_rollouts(get_state())})
