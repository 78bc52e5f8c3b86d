"""`GET /api/jobs`: the scheduled jobs, the scheduler lease and the stored runs (thin: parse → call → JSON)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..services.scheduler import get_job, overview
from ..services.state import get_state
from ..store import leases
from .blueprint import route
from .schemas import APIModel, Id, QueryModel, Timestamp, id_cursor


class JobsQuery(QueryModel):
    job: str | None = Field(default=None, max_length=100, description="Only runs of this job.")
    limit: int = Field(default=50, ge=1, le=1000, description="Most runs in one page.")
    cursor: str | None = Field(default=None, max_length=500, description="`next_cursor` of the previous page.")


class JobRunOut(APIModel):
    id: Id
    job: str
    tick: Timestamp = Field(description="The scheduled fire time (manual runs: the start time).")
    trigger: str = Field(description="`schedule`, `manual`, `catch-up` (the newest tick missed in an outage) or `retry` (a dead holder's run, retried once).")
    holder: str
    status: str = Field(description="running, succeeded, failed, missed (no holder ran the tick), fenced (its holder lost the lease before committing), abandoned (its retry died too) or unavailable.")
    started_at: Timestamp
    finished_at: Timestamp | None
    duration_ms: float | None
    result: dict[str, Any] | None
    error: str | None


class ScheduleOut(APIModel):
    key: str = Field(description="The config key that sets it (MLOPS_..._CRON or MLOPS_..._INTERVAL_S).")
    value: str | int | float | None


class JobOut(APIModel):
    name: str
    description: str
    schedule: ScheduleOut
    next_run: Timestamp | None
    last_run: JobRunOut | None


class LeaseOut(APIModel):
    name: str
    holder: str | None
    expires_at: Timestamp
    fence: int
    active: bool


class JobsOut(APIModel):
    enabled: bool
    running_here: bool = Field(description="Whether this process runs the scheduler.")
    lease: LeaseOut | None
    jobs: list[JobOut]
    runs: list[JobRunOut]
    next_cursor: str | None


@route("/jobs", query_model=JobsQuery, response_model=JobsOut, tags=("jobs",))
def list_jobs(query: JobsQuery) -> Any:
    """Scheduled jobs (schedule, next and last run), the lease holder, and recent runs, newest first."""
    state = get_state()
    if query.job is not None:
        get_job(query.job)  # 404 listing the registered jobs
    runs = leases.list_runs(state.engine, job=query.job, limit=query.limit + 1, before_id=id_cursor(query.cursor))
    page, more = runs[: query.limit], len(runs) > query.limit
    # the answer is the model (one definition of it: JobsOut), rendered by @route
    return JobsOut.model_validate(
        {
            **overview(state),
            "runs": [r.to_dict() for r in page],
            "next_cursor": str(page[-1].id) if more and page else None,
        }
    )
