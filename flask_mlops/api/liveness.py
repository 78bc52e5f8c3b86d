"""`GET /api/health`: public liveness for load balancers; reveals no logged data.

`ok` when every declared model is served and nothing is being lost; `degraded` with the
reasons otherwise: a model without a loaded production version, the `mlops` database
unreachable (serving goes on from memory and the verified local cache), or prediction
records that could not be written to the log in the last `LOG_LOSS_WINDOW_S` seconds.
"""

from __future__ import annotations

import time

from ..services.catalog import model_names
from ..services.fleet import health_summary
from ..services.prometheus import log_failures, setup_warnings
from ..services.state import get_state
from ..store.availability import status as db_status
from .blueprint import route
from .schemas import HealthOut

#: lost log records keep health `degraded` this long after the last one
LOG_LOSS_WINDOW_S = 300.0


@route("/health", role=None, response_model=HealthOut, tags=("meta",))
def health() -> HealthOut:
    """Public liveness for load balancers: can each model serve, is anything being lost? (no logged data)"""
    state = get_state()
    versions = state.models.production_versions()
    db = db_status(state)
    reachable = db.probe()
    try:
        names = model_names(state) if reachable else list(state.config.model_names)
    except Exception:  # the database went away between the probe and the read
        reachable, names = False, list(state.config.model_names)
    names += [n for n in versions if n not in names]
    models = {name: {"production_version": versions.get(name)} for name in names}
    reasons = [f"model {name} has no production version loaded" for name, info in models.items() if info["production_version"] is None]
    if not reachable:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(db.down_since or time.time()))
        served = sorted(state.models.from_cache)
        reasons.append(
            f"database unreachable since {since}; serving from memory"
            + (f" and the local model cache ({', '.join(served)})" if served else "")
        )
    now = time.time()
    for name, (lost, last) in sorted(log_failures(state).items()):
        if lost and now - last < LOG_LOSS_WINDOW_S:
            reasons.append(f"prediction log: {lost} record(s) of {name} could not be written since start, the last {now - last:.0f}s ago")
    fleet = health_summary(state) if reachable else None  # hosts serving something other than production
    if fleet is not None and fleet["status"] != "ok":
        reasons.append("fleet: " + "; ".join(f"{p['host']} serves {p['model']} v{p['version']} (production v{p['production']})"
                                              for p in fleet["problems"]) if fleet["problems"] else "fleet: not ok")
    return HealthOut.model_validate(
        {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "models": models,
            "uptime_s": round(time.time() - state.started_at, 3),
            "warnings": setup_warnings(state),
            "fleet": fleet,
        }
    )
