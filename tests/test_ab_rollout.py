"""The gradual-rollout state machine on simulated traffic: advance, hold, rollback, complete."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from flask_mlops.ab.rollout import (
    ADVANCE,
    COMPLETE,
    COMPLETED,
    DEFAULT_STAGES,
    HOLD,
    ROLLBACK,
    ROLLED_BACK,
    RolloutState,
    Stage,
    apply,
    evaluate,
)
from flask_mlops.ab.summary import VariantSummary, summarize

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def traffic(
    rng: np.random.Generator,
    requests: int,
    share: float,
    *,
    error_c: float = 0.002,
    error_t: float = 0.002,
    latency_t: float = 1.0,
    acc_c: float = 0.75,
    acc_t: float = 0.75,
    labelled: float = 0.5,
) -> dict[str, VariantSummary]:
    """One stage's worth of simulated requests, summarised per variant."""
    variant = (rng.random(requests) < share).astype(np.int8)
    is_t = variant == 1
    error = rng.random(requests) < np.where(is_t, error_t, error_c)
    latency = rng.lognormal(np.log(20.0), 0.4, requests) * np.where(is_t, latency_t, 1.0)
    correct = rng.random(requests) < np.where(is_t, acc_t, acc_c)
    outcome = np.where(rng.random(requests) < labelled, correct.astype(float), np.nan)
    control, treatment = summarize(variant, outcome, latency, error)
    return {"control": control, "treatment": treatment}


def test_healthy_traffic_advances_through_every_stage_and_completes() -> None:
    rng = np.random.default_rng(1)
    state, now = RolloutState(stage_started_at=T0), T0
    shares = [state.share]
    for _ in range(10):
        now += timedelta(hours=1, minutes=1)
        decision = evaluate(state, traffic(rng, 60_000, state.share), now)
        assert decision.action in (ADVANCE, COMPLETE), decision.reasons
        state = apply(state, decision, now)
        shares.append(state.share)
        if decision.action == COMPLETE:
            break
    assert shares == [0.05, 0.20, 0.50, 1.0]
    assert state.status == COMPLETED
    assert "promote" in decision.reasons[-1]


def test_holds_until_the_minimum_duration_and_sample() -> None:
    rng = np.random.default_rng(2)
    state = RolloutState(stage_started_at=T0)
    young = evaluate(state, traffic(rng, 60_000, 0.05), T0 + timedelta(minutes=30))
    assert young.action == HOLD and young.new_share == 0.05 and "1800 s of 3600 s" in young.reasons[0]
    thin = evaluate(state, traffic(rng, 4_000, 0.05), T0 + timedelta(hours=2))  # ~200 treatment requests
    assert thin.action == HOLD and "of 500 treatment requests" in thin.reasons[0]
    unjudged = evaluate(state, traffic(rng, 60_000, 0.05, labelled=0.0), T0 + timedelta(hours=2))
    assert unjudged.action == ADVANCE  # accuracy is optional unless required
    strict = RolloutState(stage_started_at=T0, require_accuracy=True)
    waiting = evaluate(strict, traffic(rng, 60_000, 0.05, labelled=0.0), T0 + timedelta(hours=2))
    assert waiting.action == HOLD and "accuracy" in waiting.reasons[0]


def test_rolls_back_on_an_injected_error_rate_breach() -> None:
    rng = np.random.default_rng(3)
    state = RolloutState(stage_started_at=T0, stage=1)  # at 20 %
    decision = evaluate(state, traffic(rng, 20_000, 0.20, error_t=0.05), T0 + timedelta(minutes=5))
    assert decision.action == ROLLBACK and decision.new_share == 0.0
    assert "error_rate" in decision.reasons[0]
    rolled = apply(state, decision, T0)
    assert rolled.status == ROLLED_BACK and rolled.share == 0.0
    assert evaluate(rolled, traffic(rng, 1000, 0.0), T0).action == HOLD  # nothing more happens


def test_rolls_back_on_latency_and_on_accuracy() -> None:
    rng = np.random.default_rng(4)
    state = RolloutState(stage_started_at=T0)
    slow = evaluate(state, traffic(rng, 20_000, 0.05, latency_t=2.0), T0 + timedelta(minutes=5))
    assert slow.action == ROLLBACK and "latency_p95" in slow.reasons[0]
    worse = evaluate(state, traffic(rng, 40_000, 0.05, acc_t=0.60), T0 + timedelta(minutes=5))
    assert worse.action == ROLLBACK and "accuracy" in worse.reasons[0]


def test_equal_variants_rarely_roll_back_over_many_seeds() -> None:
    """Noise alone must not trip the guardrails at a 5 % stage (≤ 2 % false rollbacks)."""
    state = RolloutState(stage_started_at=T0)
    rollbacks = sum(
        evaluate(state, traffic(np.random.default_rng(seed), 14_000, 0.05), T0 + timedelta(hours=2)).action == ROLLBACK
        for seed in range(200)
    )
    assert rollbacks <= 4


def test_custom_stages_complete_after_the_last_partial_stage() -> None:
    rng = np.random.default_rng(5)
    stages = (Stage(0.1, 0, 100), Stage(0.5, 0, 100))
    state = RolloutState(stage_started_at=T0, stages=stages)
    first = evaluate(state, traffic(rng, 10_000, 0.1), T0)
    assert (first.action, first.new_share) == (ADVANCE, 0.5)
    state = apply(state, first, T0)
    last = evaluate(state, traffic(rng, 10_000, 0.5), T0)
    assert (last.action, last.new_share) == (COMPLETE, 1.0)


def test_state_validation_and_serialisation() -> None:
    with pytest.raises(ValueError, match="increase"):
        RolloutState(stage_started_at=T0, stages=(Stage(0.5), Stage(0.2)))
    with pytest.raises(ValueError, match="timezone"):
        RolloutState(stage_started_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="observations"):
        evaluate(RolloutState(stage_started_at=T0), {}, T0)
    data = RolloutState(stage_started_at=T0).to_dict()
    assert data["share"] == 0.05 and len(data["stages"]) == len(DEFAULT_STAGES)
    assert Stage.from_dict({"share": 0.3, "min_samples": 10}) == Stage(0.3, 3600.0, 10)
