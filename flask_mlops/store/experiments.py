"""Tables of A/B experiments and gradual rollouts (what every worker's router polls).

At most one running experiment per model is enforced by the database, not by a check
that could race: `running_model` holds the model name while the experiment runs and NULL
afterwards, under a unique constraint (NULLs never collide, on SQLite and PostgreSQL).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow

RUNNING = "running"
#: an experiment ends as one of these
STOPPED, PROMOTED, ROLLED_BACK, COMPLETED = "stopped", "promoted", "rolled_back", "completed"


class Experiment(Base):
    """One A/B test (or the traffic split of a rollout) between two versions of a model."""

    __tablename__ = "mlops_experiments"
    __table_args__ = (Index("ix_mlops_experiments_model_status", "model_name", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_name: Mapped[str] = mapped_column(String(200))
    #: the model name while running, else NULL: unique, so one running experiment per model
    running_model: Mapped[str | None] = mapped_column(String(200), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20), default="experiment")  # experiment | rollout
    control_version: Mapped[int]
    treatment_version: Mapped[int]
    share: Mapped[float]  # treatment's traffic share
    salt: Mapped[str] = mapped_column(String(64))
    unit_key: Mapped[str] = mapped_column(String(100), default="user_id")
    metric: Mapped[str] = mapped_column(String(50), default="accuracy")  # accuracy | positive_rate
    plan: Mapped[dict[str, Any]] = mapped_column(default=dict)  # alpha, power, baseline, mde, planned_*
    guardrails: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default=RUNNING)
    outcome: Mapped[str | None] = mapped_column(Text)  # why it ended
    actor: Mapped[str] = mapped_column(String(200), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Rollout(Base):
    """The stage schedule of a gradual rollout; its traffic split is its experiment's `share`."""

    __tablename__ = "mlops_rollouts"

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("mlops_experiments.id"), unique=True)
    model_name: Mapped[str] = mapped_column(String(200), index=True)
    stages: Mapped[list[Any]] = mapped_column(default=list)  # [{share, min_duration_s, min_samples}]
    stage: Mapped[int] = mapped_column(default=0)
    stage_started_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(20), default=RUNNING)  # running | completed | rolled_back | stopped
    on_breach: Mapped[str] = mapped_column(String(20), default="keep")  # keep | archive the treatment version
    require_accuracy: Mapped[bool] = mapped_column(default=False)
    last_decision: Mapped[dict[str, Any]] = mapped_column(default=dict)
    history: Mapped[list[Any]] = mapped_column(default=list)  # decisions that changed something
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
