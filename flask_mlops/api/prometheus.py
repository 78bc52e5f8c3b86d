"""`GET /mlops/metrics`: the Prometheus text exposition (read role)."""

from __future__ import annotations

from typing import Any

from flask import Response
from prometheus_client import CONTENT_TYPE_LATEST

from ..services.prometheus import get_metrics
from ..services.state import get_state
from .blueprint import route


@route("/metrics", api=False, role="read", produces="text/plain", tags=("meta",), summary="Prometheus metrics")
def metrics_view() -> Any:
    """Prometheus text exposition: predictions, latency, drift, health, versions, retrain/rollout events."""
    return Response(get_metrics(get_state()).exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})
