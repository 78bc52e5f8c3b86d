"""`GET /api/health`: public liveness for load balancers; reveals no logged data."""

from __future__ import annotations

import time
from typing import Any

from flask import jsonify

from ..services.catalog import model_names
from ..services.fleet import health_summary
from ..services.prometheus import setup_warnings
from ..services.state import get_state
from .blueprint import route
from .schemas import HealthOut


@route("/health", role=None, response_model=HealthOut, tags=("meta",))
def health() -> Any:
    """Public liveness for load balancers: can each model serve? (no logged data)"""
    state = get_state()
    versions = state.models.production_versions()
    models = {name: {"production_version": versions.get(name)} for name in model_names(state)}
    ready = all(v["production_version"] is not None for v in models.values())
    fleet = health_summary(state)  # hosts serving something other than production, or unable to load it
    return jsonify(
        {
            "status": "ok" if ready and (fleet is None or fleet["status"] == "ok") else "degraded",
            "models": models,
            "uptime_s": round(time.time() - state.started_at, 3),
            "warnings": setup_warnings(state),
            "fleet": fleet,
        }
    )
