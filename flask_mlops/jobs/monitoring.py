"""The scheduled drift check (`MLOPS_DRIFT_CRON`): every model's last day, stored, alerts raised."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from ..services.catalog import model_names
from ..services.monitoring import WindowSpec, report

if TYPE_CHECKING:
    from ..services.state import MLOpsState

logger = logging.getLogger(__name__)

CHECK_WINDOW = timedelta(days=1)


def drift_check(state: MLOpsState, *, now: datetime | None = None) -> dict[str, Any]:
    """Report on the last 24 hours of each model (declared or registered); alert on warning/critical health."""
    now = now or datetime.now(timezone.utc)
    out: dict[str, Any] = {}
    for name in model_names(state):
        result = report(state, WindowSpec(name, since=now - CHECK_WINDOW, until=now), alert=True, trigger="schedule")
        out[name] = {
            "health": result["health"]["status"],
            "drift": result["drift"].get("level"),
            "drift_status": result["drift"].get("status"),
            "alerts_sent": sum(1 for a in result.get("alerts", []) if a["send"]),
        }
        logger.info("drift check %s: %s", name, out[name])
    return out


__all__ = ["drift_check"]
