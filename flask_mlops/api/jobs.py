"""`GET /api/jobs`: the scheduled jobs, the scheduler lease and the stored runs (thin: parse → call → JSON)."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from pydantic import Field

from ..extension import get_state
from ..scheduler import get_job, overview
from ..store import leases
from .blueprint import route
from .schemas import QueryModel


class JobsQuery(QueryModel):
    job: str | None = Field(default=None, max_length=100, description="Only runs of this job.")
    limit: int = Field(default=50, ge=1, le=1000, description="Most runs in one page.")
    cursor: str | None = Field(default=None, max_length=500, description="`next_cursor` of the previous page.")


@route("/jobs", query_model=JobsQuery, tags=("jobs",))
def list_jobs(query: JobsQuery) -> Any:
    """Scheduled jobs (schedule, next and last run), the lease holder, and recent runs, newest first."""
    from ..errors import ValidationError

    state = get_state()
    if query.job is not None:
        get_job(query.job)  # 404 listing the registered jobs
    before = None
    if query.cursor is not None:
        if not query.cursor.isdigit():
            raise ValidationError("cursor must be the next_cursor of a previous page", details={"fields": {"cursor": "invalid"}})
        before = int(query.cursor)
    runs = leases.list_runs(state.engine, job=query.job, limit=query.limit + 1, before_id=before)
    page, more = runs[: query.limit], len(runs) > query.limit
    return jsonify(
        {
            **overview(state),
            "runs": [r.to_dict() for r in page],
            "next_cursor": str(page[-1].id) if more and page else None,
        }
    )
