"""Alert delivery: decide (health.decide_alert), store in `mlops_alerts`, log, POST to the webhook.

The webhook gets a JSON body whose `text` field makes it a valid Slack incoming-webhook
message; other receivers read the structured fields beside it. Delivery is synchronous
with a short timeout: alerts are raised by the scheduled job and the CLI, not in requests.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..monitoring.health import Health, SentAlert, alert_key, alert_payload, plan_alerts
from ..store.monitoring import Alert, last_sent_alerts

if TYPE_CHECKING:
    from .state import MLOpsState

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 5.0


def post_webhook(url: str, payload: dict[str, Any], *, timeout: float = WEBHOOK_TIMEOUT_S) -> str | None:
    """POST JSON; None when the receiver answered 2xx, else what went wrong."""
    body = json.dumps(payload, default=str).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (the configured URL)
            status = response.status
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if 200 <= status < 300 else f"HTTP {status}"


def evaluate_alerts(state: MLOpsState, model: str, health: Health, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Raise the alerts `health` calls for (de-duplicated with the cool-down); return every decision."""
    now = now or datetime.now(timezone.utc)
    keys = [alert_key(model, r.source) for r in health.reasons]
    with state.session() as session:
        previous = {k: SentAlert(k, row.level, row.created_at) for k, row in last_sent_alerts(session, keys).items()}
    decisions = []
    for component, decision in plan_alerts(model, health, previous, now, state.config.alert_cooldown_s):
        entry = {"key": decision.key, "source": component.source, "level": component.level, "send": decision.send, "reason": decision.reason}
        decisions.append(entry)
        if not decision.send:
            continue
        payload = alert_payload(model, component, decision, health)
        logger.warning("ALERT %s: %s", decision.key, payload["text"])
        error: str | None = None
        delivered: bool | None = None
        if state.config.alert_webhook:
            error = post_webhook(state.config.alert_webhook, payload)
            delivered = error is None
            if error:
                logger.warning("alert webhook failed for %s: %s", decision.key, error)
        with state.session() as session, session.begin():
            session.add(
                Alert(
                    created_at=now,
                    key=decision.key,
                    model_name=model,
                    source=component.source,
                    level=component.level or "",
                    message=component.message,
                    reason=decision.reason,
                    sent=True,
                    delivered=delivered,
                    delivery_error=error,
                    payload=payload,
                )
            )
        entry.update(delivered=delivered, delivery_error=error)
    return decisions


__all__ = ["evaluate_alerts", "post_webhook"]
