"""The gradual-rollout state machine: a pure `evaluate(state, observations, now) -> Decision`.

A rollout moves a treatment version through stages of increasing traffic share (default
5 % → 20 % → 50 % → 100 %). At each scheduled evaluation, with the per-variant
observations gathered since the current stage started:

1. any breached guardrail → `rollback` (share 0);
2. the stage's minimum duration or minimum treatment sample not reached, or a guardrail
   not yet judged → `hold`;
3. otherwise → `advance` to the next stage, or `complete` (share 1.0, promote the
   treatment) when the next stage is 100 % or there is none.

The caller (the scheduler job) acts on the decision: stores `apply(state, decision, now)`,
changes the router's share, promotes in the registry, writes audit events and alerts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ..jsonable import jsonable
from .assign import CONTROL, TREATMENT
from .guardrails import GuardrailCheck, Guardrails, check_guardrails
from .summary import VariantSummary

ADVANCE, HOLD, ROLLBACK, COMPLETE = "advance", "hold", "rollback", "complete"
RUNNING, COMPLETED, ROLLED_BACK = "running", "completed", "rolled_back"


@dataclass(frozen=True)
class Stage:
    """One step of the ramp: the treatment share, and how long/how much before moving on."""

    share: float
    min_duration_s: float = 3600.0
    min_samples: int = 500  # treatment requests observed during the stage

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | float) -> Stage:
        if isinstance(data, (int, float)):
            return cls(float(data))
        return cls(float(data["share"]), float(data.get("min_duration_s", 3600.0)), int(data.get("min_samples", 500)))


DEFAULT_STAGES: tuple[Stage, ...] = (
    Stage(0.05, 3600.0, 500),
    Stage(0.20, 3600.0, 1000),
    Stage(0.50, 3600.0, 2000),
    Stage(1.00, 0.0, 0),
)


def validate_stages(stages: Sequence[Stage]) -> tuple[Stage, ...]:
    """Shares must be in (0, 1] and strictly increasing; durations and samples non-negative."""
    stages = tuple(stages)
    if not stages:
        raise ValueError("a rollout needs at least one stage")
    previous = 0.0
    for stage in stages:
        if not previous < stage.share <= 1.0:
            raise ValueError(f"stage shares must increase strictly within (0, 1]; got {[s.share for s in stages]}")
        if stage.min_duration_s < 0 or stage.min_samples < 0:
            raise ValueError("stage min_duration_s and min_samples must not be negative")
        previous = stage.share
    return stages


@dataclass(frozen=True)
class RolloutState:
    """Where a rollout stands; stored by the caller (as `to_dict()`), never mutated."""

    stage_started_at: datetime
    stages: tuple[Stage, ...] = DEFAULT_STAGES
    stage: int = 0
    status: str = RUNNING
    guardrails: Guardrails = field(default_factory=Guardrails)
    require_accuracy: bool = False  # hold until the accuracy guardrail can be judged

    def __post_init__(self) -> None:
        validate_stages(self.stages)
        if not 0 <= self.stage < len(self.stages):
            raise ValueError(f"stage index {self.stage} out of range for {len(self.stages)} stages")
        if self.stage_started_at.tzinfo is None:
            raise ValueError("stage_started_at must be timezone-aware (UTC)")

    @property
    def share(self) -> float:
        if self.status == ROLLED_BACK:
            return 0.0
        if self.status == COMPLETED:
            return 1.0
        return self.stages[self.stage].share

    def to_dict(self) -> dict[str, Any]:
        return jsonable({
            "stage": self.stage,
            "status": self.status,
            "share": self.share,
            "stage_started_at": self.stage_started_at.isoformat(),
            "stages": [vars(s) for s in self.stages],
            "guardrails": vars(self.guardrails),
            "require_accuracy": self.require_accuracy,
        })


@dataclass(frozen=True)
class Decision:
    """What to do now: the action, the treatment share to serve, and why."""

    action: str  # advance | hold | rollback | complete
    new_share: float
    stage: int  # stage index after the decision
    reasons: list[str]
    checks: list[GuardrailCheck] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return jsonable({
            "action": self.action,
            "new_share": self.new_share,
            "stage": self.stage,
            "reasons": list(self.reasons),
            "checks": [vars(c) for c in self.checks],
        })


def evaluate(
    state: RolloutState, observations: Mapping[str, VariantSummary], now: datetime
) -> Decision:
    """Decide from the observations of the current stage (keys "control" and "treatment")."""
    if state.status != RUNNING:
        return Decision(HOLD, state.share, state.stage, [f"rollout is {state.status}; nothing to do"])
    try:
        control, treatment = observations[CONTROL], observations[TREATMENT]
    except KeyError as exc:
        raise ValueError(f"observations need {CONTROL!r} and {TREATMENT!r}, got {sorted(observations)}") from exc
    stage = state.stages[state.stage]
    checks = check_guardrails(control, treatment, state.guardrails)

    breached = [c for c in checks if c.ok is False]
    if breached:
        reasons = [f"guardrail {c.name} breached at {stage.share:.0%}: {c.message}" for c in breached]
        return Decision(ROLLBACK, 0.0, state.stage, reasons, checks)

    waiting: list[str] = []
    elapsed = (now - state.stage_started_at).total_seconds()
    if elapsed < stage.min_duration_s:
        waiting.append(f"stage {state.stage + 1} at {stage.share:.0%} has run {elapsed:.0f} s of {stage.min_duration_s:.0f} s")
    if treatment.n < stage.min_samples:
        waiting.append(f"{treatment.n} of {stage.min_samples} treatment requests in this stage")
    for check in checks:
        if check.ok is None and (check.name not in ("accuracy", "abs_error") or state.require_accuracy):
            waiting.append(f"guardrail {check.name} {check.message}")
    if waiting:
        return Decision(HOLD, stage.share, state.stage, waiting, checks)

    ok = [f"stage {state.stage + 1} at {stage.share:.0%} healthy: " + "; ".join(c.message for c in checks if c.ok)]
    nxt = state.stage + 1
    if nxt >= len(state.stages) or state.stages[nxt].share >= 1.0:
        return Decision(COMPLETE, 1.0, len(state.stages) - 1, ok + ["ramp complete: promote the treatment"], checks)
    return Decision(ADVANCE, state.stages[nxt].share, nxt, ok + [f"advance to {state.stages[nxt].share:.0%}"], checks)


def apply(state: RolloutState, decision: Decision, now: datetime) -> RolloutState:
    """The state after acting on `decision` (a new stage restarts the stage clock)."""
    if decision.action == ROLLBACK:
        return replace(state, status=ROLLED_BACK)
    if decision.action == COMPLETE:
        return replace(state, status=COMPLETED, stage=decision.stage)
    if decision.action == ADVANCE:
        return replace(state, stage=decision.stage, stage_started_at=now)
    return state
