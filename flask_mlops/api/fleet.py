"""`GET /api/fleet`: what every serving worker on every host reports it serves (thin: call → model)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..services.fleet import FleetStatus, fleet_status
from ..services.state import get_state
from ..store.fleet import MemberRow
from .blueprint import route
from .schemas import APIModel, model_of

#: derived from `store.fleet.MemberRow`, with what `fleet_status` judges of it
MemberOut = model_of(
    MemberRow, name="MemberOut", doc="One worker's report for one model, judged against production.",
    descriptions={
        "worker": "host:pid:nonce of one worker process.",
        "version": "The version this worker serves (null: none loaded).",
        "wanted": "The production version when the worker last looked.",
        "since": "When this worker started serving `version`.",
        "last_error": "Why it could not load the production version, if it could not.",
        "age_s": "Seconds since its last report (database clock).",
    },
    production=(int | None, Field(description="The production version now.")),
    live=(bool, ...),
    state=(str, Field(description="ok, updating (has not looked since a promotion), cannot_load, or stale (no recent report).")),
)


class ProblemOut(APIModel):
    """A live worker that cannot serve the production version (a subset of its `MemberOut`)."""

    host: str
    pid: int
    worker: str
    model: str
    version: int | None
    production: int | None
    last_error: str | None


#: derived from `services.fleet.FleetStatus`
FleetOut = model_of(
    FleetStatus, name="FleetOut",
    properties=("hosts",),
    descriptions={
        "hosts": "Hosts with a worker that cannot serve production.",
        "live_window_s": "A worker is live while its last report is younger than this.",
    },
    status=(Literal["ok", "degraded"], Field(description="`ok`, or `degraded` when a live worker cannot serve the production version.")),
    members=(list[MemberOut], ...),  # type: ignore[valid-type]
    problems=(list[ProblemOut], ...),
)


@route("/fleet", response_model=FleetOut, tags=("models",))
def fleet() -> APIModel:
    """Every worker's served version, whether it is live, and where the fleet disagrees with production."""
    return FleetOut.model_validate(fleet_status(get_state()).to_dict())
