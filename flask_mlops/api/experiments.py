"""`/api/experiments` and `/api/rollouts`: A/B tests and gradual rollouts (thin: parse → call → JSON)."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request

from .. import experiments as core
from ..errors import ValidationError
from ..extension import get_state
from .blueprint import route


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if body is None and not request.get_data():
        return {}
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object", code="malformed_json")
    return body


def _int(body: dict[str, Any], key: str, *, required: bool = False) -> int | None:
    value = body.get(key)
    if value is None:
        if required:
            raise ValidationError(f"{key} is required", details={"fields": {key: "missing"}})
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{key} must be an integer", details={"fields": {key: "invalid"}})
    return value


def _number(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{key} must be a number", details={"fields": {key: "invalid"}})
    return float(value)


def _obj(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is not None and not isinstance(value, dict):
        raise ValidationError(f"{key} must be an object", details={"fields": {key: "invalid"}})
    return value


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    names = get_state().config.model_names
    if model is None and len(names) == 1:
        return names[0]
    if not isinstance(model, str):
        raise ValidationError("model is required", details={"fields": {"model": "missing"}, "known_models": names})
    return model


def _actor(body: dict[str, Any]) -> str:
    actor = body.get("actor")
    return actor[:200] if isinstance(actor, str) and actor else "api"


@route("/experiments", methods=("GET",), tags=("experiments",))
def list_experiments() -> Any:
    limit = request.args.get("limit", "50")
    if not limit.isdigit():
        raise ValidationError("limit must be a positive integer", details={"fields": {"limit": "invalid"}})
    items = core.list_experiments(
        get_state(), model=request.args.get("model"), status=request.args.get("status"), limit=int(limit)
    )
    return jsonify({"experiments": items})


@route("/experiments", methods=("POST",), role="admin", tags=("experiments",))
def create_experiment() -> Any:
    body = _body()
    metric = body.get("metric", "accuracy")
    created = core.create_experiment(
        get_state(),
        _model(body),
        _int(body, "treatment_version", required=True),  # type: ignore[arg-type]
        control_version=_int(body, "control_version"),
        share=_number(body, "share", 0.5),
        name=body.get("name") if isinstance(body.get("name"), str) else None,
        metric=metric if isinstance(metric, str) else "accuracy",
        plan=_obj(body, "plan"),
        guardrails=_obj(body, "guardrails"),
        actor=_actor(body),
    )
    return jsonify(created), 201


@route("/experiments/<int:experiment_id>", methods=("GET",), tags=("experiments",))
def get_experiment(experiment_id: int) -> Any:
    return jsonify(core.get_experiment(get_state(), experiment_id))


@route("/experiments/<int:experiment_id>/results", methods=("GET",), tags=("experiments",))
def experiment_results(experiment_id: int) -> Any:
    return jsonify(core.experiment_results(get_state(), experiment_id))


@route("/experiments/<int:experiment_id>/stop", methods=("POST",), role="admin", tags=("experiments",))
def stop_experiment(experiment_id: int) -> Any:
    body = _body()
    reason = body.get("reason") if isinstance(body.get("reason"), str) else None
    return jsonify(core.stop_experiment(get_state(), experiment_id, actor=_actor(body), reason=reason))


@route("/experiments/<int:experiment_id>/promote", methods=("POST",), role="admin", tags=("experiments",))
def promote_experiment(experiment_id: int) -> Any:
    body = _body()
    reason = body.get("reason") if isinstance(body.get("reason"), str) else None
    return jsonify(core.promote_experiment(get_state(), experiment_id, actor=_actor(body), reason=reason))


@route("/rollouts", methods=("GET",), tags=("experiments",))
def list_rollouts() -> Any:
    return jsonify({"rollouts": core.list_rollouts(get_state(), model=request.args.get("model"))})


@route("/rollouts", methods=("POST",), role="admin", tags=("experiments",))
def start_rollout() -> Any:
    body = _body()
    stages = body.get("stages")
    if stages is not None and not isinstance(stages, list):
        raise ValidationError("stages must be a list", details={"fields": {"stages": "invalid"}})
    on_breach = body.get("on_breach", "keep")
    created = core.start_rollout(
        get_state(),
        _model(body),
        _int(body, "treatment_version", required=True),  # type: ignore[arg-type]
        stages=stages,
        guardrails=_obj(body, "guardrails"),
        on_breach=on_breach if isinstance(on_breach, str) else "",
        require_accuracy=bool(body.get("require_accuracy", False)),
        actor=_actor(body),
    )
    return jsonify(created), 201


@route("/rollouts/<int:rollout_id>", methods=("GET",), tags=("experiments",))
def get_rollout(rollout_id: int) -> Any:
    return jsonify(core.get_rollout(get_state(), rollout_id))


@route("/rollouts/evaluate", methods=("POST",), role="admin", tags=("experiments",))
def evaluate_rollouts() -> Any:
    """Run one rollout evaluation now (what the scheduler does on its interval)."""
    return jsonify({"decisions": core.evaluate_rollouts(get_state())})
