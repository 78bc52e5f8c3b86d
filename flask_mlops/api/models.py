"""`/api/models`: versions and aliases, promote / rollback / archive, and the audit history (thin)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from ..errors import ValidationError
from ..services import lifecycle
from ..services.auth import audit_actor
from ..services.catalog import model_names, model_spec
from ..services.lifecycle import GateCheck, GateResult
from ..services.registry import VersionInfo, alias_version, list_versions
from ..services.serving import PRODUCTION
from ..services.state import get_state
from .blueprint import route
from .schemas import APIModel, ErrorBody, Id, QueryModel, RequestModel, Timestamp, _utc, model_of


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
    since: str | None = Field(default=None, max_length=64, description="ISO-8601 UTC; events at or after.")
    until: str | None = Field(default=None, max_length=64, description="ISO-8601 UTC; events at or before.")
    at: str | None = Field(default=None, max_length=64, description="ISO-8601 UTC: also answer which version was in production then.")
    limit: int = Field(default=100, ge=1, le=10_000)


VersionOut = model_of(
    VersionInfo, name="VersionOut", doc="A registered version (registry.VersionInfo).",
    descriptions={
        "run_id": "The MLflow run that logged it.",
        "sha256": "Digest of the serving artifact.",
        "status": "production, candidate, superseded, rolled_back, archived, ...",
    },
    version=(Id, ...),
    aliases=(list[str], Field(default_factory=list)),
    created_at=(Timestamp | None, None),
)


class ModelOut(APIModel):
    name: str
    production: Id | None = Field(description="The version in production (null before the first promotion).")
    versions: list[VersionOut] = Field(description="Newest first.")  # type: ignore[valid-type]


class ModelsOut(APIModel):
    models: list[ModelOut]


#: derived from `lifecycle.GateCheck` and `lifecycle.GateResult`
GateCheckOut = model_of(GateCheck, name="GateCheckOut")
GatesOut = model_of(GateResult, name="GatesOut", checks=(list[GateCheckOut], ...))  # type: ignore[valid-type]


class PromoteOut(APIModel):
    model: str
    version: Id
    previous: Id | None
    changed: bool = Field(description="False when the version already was in production.")
    gates: GatesOut | None  # type: ignore[valid-type]


class RollbackOut(APIModel):
    model: str
    version: Id
    previous: Id | None
    changed: bool


class ArchiveOut(APIModel):
    model: str
    version: Id
    changed: bool = Field(description="False when the version already was archived.")
    removed_aliases: list[str] | None = Field(default=None, description="Only when `changed`.")


class EventOut(APIModel):
    id: Id
    ts: Timestamp
    action: str
    version: Id | None
    previous_version: Id | None
    actor: str
    reason: str | None
    details: dict[str, Any]


class HistoryOut(APIModel):
    model: str
    production: Id | None
    events: list[EventOut] = Field(description="Newest first.")
    at: Timestamp | None = Field(default=None, description="Only with `at`: the moment asked about.")
    production_at: Id | None = Field(default=None, description="Only with `at`: the version in production then.")


CHANGES = {404: ErrorBody, 409: ErrorBody}


def _model_out(state: Any, name: str) -> ModelOut:
    return ModelOut.model_validate({
        "name": name,
        "production": alias_version(state, name, PRODUCTION),
        "versions": [v.to_dict() for v in list_versions(state, name)],
    })


@route("/models", response_model=ModelsOut, tags=("models",))
def list_models() -> ModelsOut:
    """Every declared model with its versions (newest first), aliases, status, semver and metrics."""
    state = get_state()
    return ModelsOut(models=[_model_out(state, name) for name in model_names(state)])


@route("/models/<name>", response_model=ModelOut, tags=("models",))
def get_model(name: str) -> ModelOut:
    """One model's versions and its production version."""
    state = get_state()
    model_spec(state, name)
    return _model_out(state, name)


@route("/models/<name>/promote", methods=("POST",), role="admin", request_model=PromoteBody, response_model=PromoteOut,
       tags=("models",), responses={**CHANGES, 422: ErrorBody})
def promote_model(name: str, body: PromoteBody) -> PromoteOut:
    """Point production at a version if it passes the promotion gates (422 with every check otherwise)."""
    state = get_state()
    model_spec(state, name)
    return PromoteOut.model_validate(lifecycle.promote(state, name, body.version, actor=audit_actor(), reason=body.reason, force=body.force))


@route("/models/<name>/rollback", methods=("POST",), role="admin", request_model=RollbackBody, response_model=RollbackOut,
       tags=("models",), responses=CHANGES)
def rollback_model(name: str, body: RollbackBody) -> RollbackOut:
    """Production back to the previous production version, or to `version`."""
    state = get_state()
    model_spec(state, name)
    return RollbackOut.model_validate(lifecycle.rollback(state, name, body.version, actor=audit_actor(), reason=body.reason))


@route("/models/<name>/archive", methods=("POST",), role="admin", request_model=ArchiveBody, response_model=ArchiveOut,
       tags=("models",), responses=CHANGES)
def archive_model(name: str, body: ArchiveBody) -> ArchiveOut:
    """Archive a version that is not in production (its other aliases are removed)."""
    state = get_state()
    model_spec(state, name)
    return ArchiveOut.model_validate(lifecycle.archive(state, name, body.version, actor=audit_actor(), reason=body.reason))


@route("/models/<name>/history", query_model=HistoryQuery, response_model=HistoryOut, tags=("models",))
def model_history(name: str, query: HistoryQuery) -> HistoryOut:
    """Audit events (who, what, when, why), newest first; with `at`, the version in production then."""
    state = get_state()
    model_spec(state, name)

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
        out["at"] = at
        out["production_at"] = lifecycle.production_at(state, name, at)
    return HistoryOut.model_validate(out)
