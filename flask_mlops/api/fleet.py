"""`GET /api/fleet`: what every serving worker on every host reports it serves (thin: call → model)."""

from __future__ import annotations

from pydantic import Field

from ..services.fleet import fleet_status
from ..services.state import get_state
from .blueprint import route
from .schemas import APIModel, Timestamp


class MemberOut(APIModel):
    worker: str = Field(description="host:pid:nonce of one worker process.")
    host: str
    pid: int
    model: str
    version: int | None = Field(description="The version this worker serves (null: none loaded).")
    wanted: int | None = Field(description="The production version when the worker last looked.")
    production: int | None = Field(description="The production version now.")
    since: Timestamp | None = Field(description="When this worker started serving `version`.")
    last_error: str | None = Field(description="Why it could not load the production version, if it could not.")
    started_at: Timestamp
    heartbeat_at: Timestamp
    age_s: float = Field(description="Seconds since its last report (database clock).")
    live: bool
    state: str = Field(description="ok, updating (has not looked since a promotion), cannot_load, or stale (no recent report).")


class ProblemOut(APIModel):
    host: str
    pid: int
    worker: str
    model: str
    version: int | None
    production: int | None
    last_error: str | None


class FleetOut(APIModel):
    status: str = Field(description="`ok`, or `degraded` when a live worker cannot serve the production version.")
    hosts: list[str] = Field(description="Hosts with a worker that cannot serve production.")
    production: dict[str, int]
    problems: list[ProblemOut]
    members: list[MemberOut]
    live_window_s: float = Field(description="A worker is live while its last report is younger than this.")
    checked_at: Timestamp | None


@route("/fleet", response_model=FleetOut, tags=("models",))
def fleet() -> FleetOut:
    """Every worker's served version, whether it is live, and where the fleet disagrees with production."""
    return FleetOut.model_validate(fleet_status(get_state()).to_dict())
