"""`/api/retrain`: is retraining due (and why), start a run (202), and follow runs (thin)."""

from __future__ import annotations

from typing import Any

from flask import jsonify, url_for
from pydantic import Field

from .. import retraining
from ..auth import current_caller
from ..errors import ValidationError
from ..extension import get_state
from .blueprint import route
from .schemas import QueryModel, RequestModel


class CheckQuery(QueryModel):
    model: str | None = Field(default=None, max_length=200, description="Required when more than one model is declared.")


class TriggerBody(RequestModel):
    model: str | None = Field(default=None, max_length=200, description="Required when more than one model is declared.")
    reason: str | None = Field(default=None, max_length=2000)
    only_if_due: bool = Field(default=False, description="Start only when a trigger fires (else answer 200 with the check).")


class RunsQuery(QueryModel):
    model: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=50, ge=1, le=1000)


def _model(state: Any, name: str | None) -> str:
    names = state.config.model_names
    if name is None:
        if len(names) != 1:
            raise ValidationError("model is required when more than one model is declared", details={"known_models": names})
        return str(names[0])
    state.config.model(name)
    return name


@route("/retrain/check", query_model=CheckQuery, tags=("retraining",))
def retrain_check(query: CheckQuery) -> Any:
    """Whether retraining is due, with every trigger's value and threshold."""
    state = get_state()
    return jsonify(retraining.check(state, _model(state, query.model)).to_dict())


@route("/retrain/trigger", methods=("POST",), role="admin", request_model=TriggerBody, status=202, tags=("retraining",),
       responses={200: None, 409: None})
def retrain_trigger(body: TriggerBody) -> Any:
    """Start a retraining run in the background: 202 with its id and URL; 409 while one is running."""
    state = get_state()
    name = _model(state, body.model)
    caller = current_caller()
    actor = f"api:{caller.via}:{caller.role}" if caller is not None else "api"
    if body.only_if_due:
        result = retraining.retrain_if_due(state, name, actor=actor, background=True)
        if result["run"] is None:
            return jsonify({"started": False, "check": result["check"]}), 200
        run = result["run"]
    else:
        reasons = [f"manual: {body.reason}" if body.reason else "manual"]
        run = retraining.start(state, name, trigger="manual", reasons=reasons, actor=actor, background=True)
    url = url_for("mlops.retrain_run", run_id=run["id"])
    response = jsonify({"run_id": run["id"], "status": run["status"], "url": url, "started": True})
    response.status_code = 202
    response.headers["Location"] = url
    return response


@route("/retrain/runs", query_model=RunsQuery, tags=("retraining",))
def retrain_runs(query: RunsQuery) -> Any:
    """Recent retraining runs, newest first."""
    state = get_state()
    if query.model is not None:
        state.config.model(query.model)
    return jsonify({"runs": retraining.list_runs(state, model=query.model, limit=query.limit)})


@route("/retrain/runs/<int:run_id>", tags=("retraining",), responses={404: None})
def retrain_run(run_id: int) -> Any:
    """One run: status (queued, running, succeeded, rejected, failed), progress, log and result."""
    return jsonify(retraining.get_run(get_state(), run_id))
