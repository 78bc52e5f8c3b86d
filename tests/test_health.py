"""Health levels from drift, decay, error rate and latency; alert de-duplication."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from flask_mlops.monitoring.drift import DriftCalculator
from flask_mlops.monitoring.health import (
    Component,
    SentAlert,
    alert_payload,
    assess_health,
    decide_alert,
    health_of,
    plan_alerts,
)
from flask_mlops.monitoring.performance import decay, operational_metrics
from flask_mlops.monitoring.profile import build_profile

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("levels", "status"),
    [
        ({"drift": "ok", "decay": "ok"}, "healthy"),
        ({"drift": "monitor", "decay": "ok"}, "healthy"),
        ({"drift": "ok", "decay": "warning", "latency": "monitor"}, "warning"),
        ({"drift": "critical", "decay": "warning"}, "critical"),
        ({"error_rate": "critical"}, "critical"),
        ({"drift": None, "decay": None}, "healthy"),
    ],
)
def test_health_is_the_worst_level(levels: dict[str, str | None], status: str) -> None:
    health = assess_health(Component(source, level, f"{source} is {level}") for source, level in levels.items())
    assert health.status == status
    assert health.components == levels
    assert [r.source for r in health.reasons] == [
        s for s, lv in sorted(levels.items(), key=lambda kv: -["ok", "monitor", "warning", "critical"].index(kv[1] or "ok")) if lv not in (None, "ok")
    ]


def test_health_from_monitoring_results() -> None:
    rng = np.random.default_rng(0)
    calc = DriftCalculator(build_profile({"x": rng.normal(size=5000)}))
    drift = calc.calculate({"x": rng.normal(1.0, 1.0, 5000)})
    ops = operational_metrics(np.full(100, 200), np.full(100, 20.0))
    health = health_of(drift=drift, decay=decay("accuracy", 0.77, 0.80), operational=ops)
    assert health.status == "critical"
    assert [r.source for r in health.reasons] == ["drift", "decay"]
    assert "x" in health.reasons[0].message and "drop" in health.reasons[1].message
    out = health.to_dict()
    assert out["status"] == "critical" and out["components"]["latency"] == "ok"
    healthy = health_of(decay=decay("accuracy", 0.80, 0.80), operational=ops)
    assert healthy.status == "healthy" and healthy.reasons == []


def test_unknown_level_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown level"):
        assess_health([Component("drift", "bad", "")])


def test_alert_on_entering_warning_then_cooldown_then_repeat() -> None:
    key = "m:drift"
    first = decide_alert(key, "warning", None, NOW, 3600)
    assert (first.send, first.reason) == (True, "new")
    sent = SentAlert(key, "warning", NOW)
    again = decide_alert(key, "warning", sent, NOW + timedelta(minutes=30), 3600)
    assert (again.send, again.reason) == (False, "cooldown")
    later = decide_alert(key, "warning", sent, NOW + timedelta(hours=1), 3600)
    assert (later.send, later.reason) == (True, "cooldown_elapsed")


def test_escalation_is_sent_within_the_cooldown_but_not_a_lower_level() -> None:
    sent = SentAlert("m:drift", "warning", NOW)
    assert decide_alert("m:drift", "critical", sent, NOW + timedelta(minutes=1), 3600).reason == "escalated"
    down = decide_alert("m:drift", "warning", SentAlert("m:drift", "critical", NOW), NOW + timedelta(minutes=1), 3600)
    assert not down.send


def test_no_alert_below_warning() -> None:
    for level in ("ok", "monitor", None):
        decision = decide_alert("m:decay", level, None, NOW, 0)
        assert not decision.send and decision.reason == "below_alert_level"


def test_plan_alerts_and_slack_payload() -> None:
    health = assess_health([Component("drift", "critical", "x drifted"), Component("latency", "warning", "p95 600 ms"), Component("decay", "monitor", "small")])
    plan = plan_alerts("diabetes", health, {"diabetes:latency": SentAlert("diabetes:latency", "warning", NOW)}, NOW + timedelta(seconds=10), 3600)
    decisions = {c.source: d for c, d in plan}
    assert decisions["drift"].send and not decisions["latency"].send and not decisions["decay"].send
    payload = alert_payload("diabetes", plan[0][0], plan[0][1], health)
    assert isinstance(payload["text"], str) and "diabetes" in payload["text"] and "critical" in payload["text"]
    assert payload["key"] == "diabetes:drift"
