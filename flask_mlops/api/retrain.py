"""`/api/retrain`: is retraining due (and why), start a run (202), and follow runs (thin)."""

from __future__ import annotations

from typing import Any, Literal

from flask import url_for
from pydantic import Field

from ..errors import ValidationError
from ..services import retraining
from ..services.auth import audit_actor
from ..services.catalog import model_names, model_spec
from ..services.retraining import RetrainCheck, TriggerResult
from ..services.state import get_state
from .blueprint import route
from .schemas import APIModel, ErrorBody, Id, QueryModel, RequestModel, Timestamp, model_of


class CheckQuery(QueryModel):
    model: str | None = Field(default=None, max_length=200, description="Required when more than one model is declared.")


class TriggerBody(RequestModel):
    model: str | None = Field(default=None, max_length=200, description="Required when more than one model is declared.")
    reason: str | None = Field(default=None, max_length=2000)
    only_if_due: bool = Field(default=False, description="Start only when a trigger fires (else answer 200 with the check).")


class RunsQuery(QueryModel):
    model: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=50, ge=1, le=1000)


#: derived from `retraining.TriggerResult` and `retraining.RetrainCheck`
TriggerOut = model_of(
    TriggerResult, name="TriggerOut",
    descriptions={"value": "What the trigger measured (a count, a level, a time, ...); null when unavailable."},
)
CheckOut = model_of(
    RetrainCheck, name="CheckOut",
    triggers=(dict[str, TriggerOut], ...),  # type: ignore[valid-type]
    last_trained_at=(Timestamp | None, ...),
)


class StartedOut(APIModel):
    run_id: Id
    status: str
    url: str = Field(description="Where to follow the run (also in `Location`).")
    started: Literal[True]
    runner: Literal["process", "queue"] = Field(
        description="process: a separate `flask mlops retrain --run-id` process runs it; queue: it waits for "
        "`flask mlops retrain --run-queued` or the scheduler's retrain_queue job."
    )


class NotStartedOut(APIModel):
    """`only_if_due` and nothing fired: no run, and the check that says why."""

    started: Literal[False]
    check: CheckOut  # type: ignore[valid-type]


class RunOut(APIModel):
    id: Id
    model: str
    status: Literal["queued", "running", "succeeded", "rejected", "failed"]
    trigger: str
    reasons: list[str]
    actor: str
    holder: str | None
    created_at: Timestamp | None
    started_at: Timestamp | None
    finished_at: Timestamp | None
    heartbeat_at: Timestamp | None
    progress: str | None
    log: list[str]
    result: dict[str, Any] = Field(description="Candidate, cross-validation, holdout, data and comparison once trained.")
    error: str | None


class RunsOut(APIModel):
    runs: list[RunOut]


def _model(state: Any, name: str | None) -> str:
    names = model_names(state)
    if name is None:
        if len(names) != 1:
            raise ValidationError("model is required when more than one model is declared", details={"known_models": names})
        return str(names[0])
    model_spec(state, name)
    return name


@route("/retrain/check", query_model=CheckQuery, response_model=CheckOut, tags=("retraining",))
def retrain_check(query: CheckQuery) -> APIModel:
    """Whether retraining is due, with every trigger's value and threshold."""
    state = get_state()
    return CheckOut.model_validate(retraining.check(state, _model(state, query.model)).to_dict())


@route("/retrain/trigger", methods=("POST",), role="admin", request_model=TriggerBody, response_model=StartedOut,
       status=202, tags=("retraining",), responses={200: NotStartedOut, 409: ErrorBody})
def retrain_trigger(body: TriggerBody) -> tuple[APIModel, int] | tuple[APIModel, int, dict[str, str]]:
    """Queue a retraining run for a runner outside the web process (202 with its id and URL;
    409 while one is active): a separate process when the app's import path is known
    (`MLOPS_RETRAIN_APP`), else `flask mlops retrain --run-queued` or the scheduler."""
    state = get_state()
    name = _model(state, body.model)
    actor = audit_actor()
    if body.only_if_due:
        result = retraining.retrain_if_due(state, name, actor=actor, hand_off=True)
        if result["run"] is None:
            return NotStartedOut.model_validate({"started": False, "check": result["check"]}), 200
        run = result["run"]
    else:
        reasons = [f"manual: {body.reason}" if body.reason else "manual"]
        run = retraining.submit(state, name, trigger="manual", reasons=reasons, actor=actor)
    url = url_for("mlops.retrain_run", run_id=run["id"])
    started = StartedOut(run_id=run["id"], status=run["status"], url=url, started=True, runner=run["runner"])
    return started, 202, {"Location": url}


@route("/retrain/runs", query_model=RunsQuery, response_model=RunsOut, tags=("retraining",))
def retrain_runs(query: RunsQuery) -> RunsOut:
    """Recent retraining runs, newest first."""
    state = get_state()
    if query.model is not None:
        model_spec(state, query.model)
    return RunsOut.model_validate({"runs": retraining.list_runs(state, model=query.model, limit=query.limit)})


@route("/retrain/runs/<int:run_id>", response_model=RunOut, tags=("retraining",))
def retrain_run(run_id: int) -> RunOut:
    """One run: status (queued, running, succeeded, rejected, failed), progress, log and result."""
    return RunOut.model_validate(retraining.get_run(get_state(), run_id))
