"""Health of a model (the worst of drift, decay, error rate and latency) and alert decisions.

Levels ok / monitor map to ``healthy``, warning to ``warning``, critical to ``critical``;
every component at monitor or worse is listed as a reason. Alerts are raised on entering
warning or critical, one per condition (model + source), and repeated only when the
level escalates or after the cool-down — `decide_alert` is the whole rule, a pure
function of the last alert sent for that condition. Delivery (the DB row, the log line
and the webhook POST) lives in the store and API layers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .drift import LEVELS, worst

if TYPE_CHECKING:
    from .drift import DriftReport
    from .performance import Decay, OperationalMetrics

HEALTH = {"ok": "healthy", "monitor": "healthy", "warning": "warning", "critical": "critical"}
ALERT_LEVELS = frozenset({"warning", "critical"})


@dataclass(frozen=True)
class Component:
    """One input to health: where it comes from, its level, and a sentence saying why."""

    source: str  # drift | decay | error_rate | latency | ...
    level: str | None  # None: not measurable now (no data, no labels)
    message: str
    value: float | None = None


@dataclass
class Health:
    status: str  # healthy | warning | critical
    level: str
    reasons: list[Component] = field(default_factory=list)
    components: dict[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "level": self.level,
            "reasons": [asdict(r) for r in self.reasons],
            "components": dict(self.components),
        }


def assess_health(components: Iterable[Component]) -> Health:
    """Health = the worst component level; every component at monitor or worse is a reason."""
    items = list(components)
    for c in items:
        if c.level is not None and c.level not in LEVELS:
            raise ValueError(f"unknown level {c.level!r} for {c.source}; expected one of {LEVELS}")
    level = worst([c.level for c in items])
    reasons = sorted(
        (c for c in items if c.level is not None and c.level != "ok"),
        key=lambda c: -LEVELS.index(c.level or "ok"),
    )
    return Health(HEALTH[level], level, reasons, {c.source: c.level for c in items})


def drift_component(report: DriftReport) -> Component:
    if report.status != "ok":
        return Component("drift", None, report.message)
    # each drifted feature with the test that decided it (a missing-value jump reads "Glucose: missing_rate")
    drifted = [f"{name}: {f.decided_by}" for name, f in report.features.items() if f.drifted]
    if report.prediction is not None and report.prediction.drifted:
        drifted = [*drifted, f"prediction ({report.prediction.name}): {report.prediction.decided_by}"]
    message = f"drift {report.level}: " + (", ".join(drifted) if drifted else "no feature drifted")
    return Component("drift", report.level, message, report.share_drifted)


def decay_component(result: Decay) -> Component:
    if result.relative_drop is None:
        return Component("decay", None, f"{result.metric}: no baseline or no labelled predictions")
    message = f"{result.metric} {result.current:.4g} vs baseline {result.baseline:.4g} ({result.relative_drop:+.1%} drop"
    if result.min_detectable_drop is not None:
        message += f"; detectable from {result.min_detectable_drop:.1%} with {result.n_current} labels vs {result.n_baseline} holdout rows"
    return Component("decay", result.level, message + ")", result.relative_drop)


def operational_components(ops: OperationalMetrics) -> list[Component]:
    if ops.n_requests == 0:
        return [Component("error_rate", None, "no requests"), Component("latency", None, "no requests")]
    out = [Component("error_rate", ops.error_level, f"error rate {ops.error_rate:.2%} of {ops.n_requests} requests", ops.error_rate)]
    if ops.latency_p95_ms is None:
        out.append(Component("latency", None, "no latency recorded"))
    else:
        out.append(Component("latency", ops.latency_level, f"p95 latency {ops.latency_p95_ms:.1f} ms", ops.latency_p95_ms))
    return out


def logging_component(n_records: int, n_incomplete: int, cause: str | None) -> Component:
    """Records written with (some) features as null because they were not JSON-serialisable:
    drift then sees missing values, so health names the cause instead of blaming the data."""
    if n_records == 0 or n_incomplete == 0:
        return Component("features_logged", "ok" if n_records else None, "every record carried its features")
    share = n_incomplete / n_records
    return Component(
        "features_logged",
        "critical" if share >= 0.5 else "warning",
        f"{n_incomplete} of {n_records} records logged without some features ({cause}); "
        "return plain numbers and strings from the view's features (see @mlops.track)",
        share,
    )


def health_of(
    *, drift: DriftReport | None = None, decay: Decay | None = None, operational: OperationalMetrics | None = None
) -> Health:
    """Health from whichever monitoring results are available."""
    components: list[Component] = []
    if drift is not None:
        components.append(drift_component(drift))
    if decay is not None:
        components.append(decay_component(decay))
    if operational is not None:
        components.extend(operational_components(operational))
    return assess_health(components)


# -- alerts --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SentAlert:
    """The last alert sent for a condition (what the de-duplication needs to know)."""

    key: str
    level: str
    sent_at: datetime


@dataclass(frozen=True)
class AlertDecision:
    send: bool
    key: str
    level: str | None
    reason: str  # new | escalated | cooldown_elapsed | cooldown | below_alert_level


def alert_key(model: str, source: str) -> str:
    return f"{model}:{source}"


def decide_alert(key: str, level: str | None, previous: SentAlert | None, now: datetime, cooldown_s: float) -> AlertDecision:
    """Send on entering warning/critical; again only on escalation or once the cool-down passed."""
    if level not in ALERT_LEVELS:
        return AlertDecision(False, key, level, "below_alert_level")
    if previous is None:
        return AlertDecision(True, key, level, "new")
    if LEVELS.index(level) > LEVELS.index(previous.level):
        return AlertDecision(True, key, level, "escalated")
    if (now - previous.sent_at).total_seconds() >= cooldown_s:
        return AlertDecision(True, key, level, "cooldown_elapsed")
    return AlertDecision(False, key, level, "cooldown")


def plan_alerts(
    model: str, health: Health, previous: Mapping[str, SentAlert], now: datetime, cooldown_s: float
) -> list[tuple[Component, AlertDecision]]:
    """The decision for every reason of `health` (send or not, and why)."""
    out = []
    for reason in health.reasons:
        key = alert_key(model, reason.source)
        out.append((reason, decide_alert(key, reason.level, previous.get(key), now, cooldown_s)))
    return out


def alert_payload(model: str, component: Component, decision: AlertDecision, health: Health) -> dict[str, Any]:
    """The JSON body of a webhook alert; `text` makes it a valid Slack incoming-webhook message."""
    icon = ":red_circle:" if component.level == "critical" else ":warning:"
    return {
        "text": f"{icon} flask-mlops: model {model} is {health.status} — {component.source} {component.level}: {component.message}",
        "model": model,
        "source": component.source,
        "level": component.level,
        "health": health.status,
        "key": decision.key,
        "reason": decision.reason,
        "message": component.message,
        "value": component.value,
    }


__all__ = [
    "ALERT_LEVELS",
    "AlertDecision",
    "Component",
    "Health",
    "SentAlert",
    "alert_key",
    "alert_payload",
    "assess_health",
    "decay_component",
    "decide_alert",
    "drift_component",
    "health_of",
    "logging_component",
    "operational_components",
    "plan_alerts",
]
