"""`/api/models`: versions and aliases, promote / rollback / archive, and the audit history (thin)."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from pydantic import Field

from .. import lifecycle
from ..auth import current_caller
from ..extension import get_state
from ..registry import alias_version, list_versions
from ..serving import PRODUCTION
from .blueprint import route
from .schemas import Id, QueryModel, RequestModel, _utc


def _actor() -> str:
    caller = current_caller()
    return f"api:{caller.via}:{caller.role}" if caller is not None else "api"


class PromoteBody(RequestModel):
    version: Id = Field(description="Version to put in production.")
    reason: str | None = Field(default=None, max_length=2000, description="Why (kept in the audit log).")
    force: bool = Field(default=False, description="Promote even if a gate fails (audited as forced).")


class RollbackBody(RequestModel):
    version: Id | None = Field(default=None, description="Target version (default: the previous production).")
    reason: str | None = Field(default=None, max_length=2000)


class ArchiveBody(RequestModel):
    version: Id
    reason: str | None = Field(default=None, max_length=2000)


class HistoryQuery(QueryModel):
    since: Any = Field(default=None, description="ISO-8601 UTC; events at or after.")
    until: Any = Field(default=None, description="ISO-8601 UTC; events at or before.")
    at: Any = Field(default=None, description="ISO-8601 UTC: also answer which version was in production then.")
    limit: int = Field(default=100, ge=1, le=10_000)


def _model_dict(state: Any, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "production": alias_version(state, name, PRODUCTION),
        "versions": [v.to_dict() for v in list_versions(state, name)],
    }


@route("/models", tags=("models",))
def list_models() -> Any:
    """Every declared model with its versions (newest first), aliases, status, semver and metrics."""
    state = get_state()
    return jsonify({"models": [_model_dict(state, name) for name in state.config.model_names]})


@route("/models/<name>", tags=("models",))
def get_model(name: str) -> Any:
    """One model's versions and its production version."""
    state = get_state()
    state.config.model(name)
    return jsonify(_model_dict(state, name))


@route("/models/<name>/promote", methods=("POST",), role="admin", request_model=PromoteBody, tags=("models",),
       responses={422: None, 404: None, 409: None})
def promote_model(name: str, body: PromoteBody) -> Any:
    """Point production at a version if it passes the promotion gates (422 with every check otherwise)."""
    state = get_state()
    state.config.model(name)
    return jsonify(lifecycle.promote(state, name, body.version, actor=_actor(), reason=body.reason, force=body.force))


@route("/models/<name>/rollback", methods=("POST",), role="admin", request_model=RollbackBody, tags=("models",),
       responses={404: None, 409: None})
def rollback_model(name: str, body: RollbackBody) -> Any:
    """Production back to the previous production version, or to `version`."""
    state = get_state()
    state.config.model(name)
    return jsonify(lifecycle.rollback(state, name, body.version, actor=_actor(), reason=body.reason))


@route("/models/<name>/archive", methods=("POST",), role="admin", request_model=ArchiveBody, tags=("models",),
       responses={404: None, 409: None})
def archive_model(name: str, body: ArchiveBody) -> Any:
    """Archive a version that is not in production (its other aliases are removed)."""
    state = get_state()
    state.config.model(name)
    return jsonify(lifecycle.archive(state, name, body.version, actor=_actor(), reason=body.reason))


@route("/models/<name>/history", query_model=HistoryQuery, tags=("models",))
def model_history(name: str, query: HistoryQuery) -> Any:
    """Audit events (who, what, when, why), newest first; with `at`, the version in production then."""
    from datetime import datetime

    from ..errors import ValidationError

    state = get_state()
    state.config.model(name)

    def moment(key: str, value: Any) -> datetime | None:
        if value in (None, ""):
            return None
        try:
            return _utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
        except ValueError as exc:
            raise ValidationError(f"{key} must be an ISO-8601 time", details={"fields": {key: "invalid"}}) from exc

    since, until, at = moment("since", query.since), moment("until", query.until), moment("at", query.at)
    out: dict[str, Any] = {
        "model": name,
        "production": alias_version(state, name, PRODUCTION),
        "events": lifecycle.history(state, name, since=since, until=until, limit=query.limit),
    }
    if at is not None:
        out["at"] = at.isoformat()
        out["production_at"] = lifecycle.production_at(state, name, at)
    return jsonify(out)
