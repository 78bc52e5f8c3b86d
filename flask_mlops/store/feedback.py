"""Ground truth that arrives after the prediction: `mlops_feedback`, one row per prediction id.

Each row copies what performance monitoring needs from the logged prediction (model,
version, variant, time, prediction, probability) when the label arrives, so metrics
over a window are one indexed query, never a join against the JSONL log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Index, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from .base import Base, utcnow
from .predictions import parse_ts


class Feedback(Base):
    __tablename__ = "mlops_feedback"
    __table_args__ = (Index("ix_mlops_feedback_model_ts", "model_name", "prediction_ts"),)

    prediction_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str | None] = mapped_column(String(64))
    variant: Mapped[str | None] = mapped_column(String(64))
    prediction_ts: Mapped[datetime]
    prediction: Mapped[Any] = mapped_column(JSON, nullable=True)
    probability: Mapped[float | None] = mapped_column(Float)
    label: Mapped[Any] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(200), default="api")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {
            "prediction_id": self.prediction_id,
            "model": self.model_name,
            "model_version": self.model_version,
            "variant": self.variant,
            "prediction_ts": self.prediction_ts.isoformat(),
            "prediction": self.prediction,
            "probability": self.probability,
            "label": self.label,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class SaveResult:
    created: list[str]
    updated: list[str]


def existing_ids(session: Session, ids: Sequence[str]) -> set[str]:
    out: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        out.update(session.scalars(select(Feedback.prediction_id).where(Feedback.prediction_id.in_(chunk))))
    return out


def save_feedback(
    session: Session, labels: Mapping[str, Any], records: Mapping[str, Mapping[str, Any]], *, actor: str = "api"
) -> SaveResult:
    """Insert or overwrite one row per id in `labels`; `records` are the logged predictions.

    The caller decides what is allowed (unknown ids, duplicates); this only writes.
    """
    ids = list(labels)
    present = existing_ids(session, ids)
    created, updated = [], []
    for pid in ids:
        rec = records[pid]
        if pid in present:
            row = session.get(Feedback, pid)
            assert row is not None
            row.label, row.actor = labels[pid], actor
            updated.append(pid)
            continue
        probability = rec.get("probability")
        session.add(
            Feedback(
                prediction_id=pid,
                model_name=str(rec.get("model")),
                model_version=None if rec.get("model_version") is None else str(rec.get("model_version")),
                variant=rec.get("variant"),
                prediction_ts=parse_ts(str(rec["ts"])),
                prediction=rec.get("prediction"),
                probability=float(probability) if isinstance(probability, (int, float)) else None,
                label=labels[pid],
                actor=actor,
            )
        )
        created.append(pid)
    return SaveResult(created, updated)


def labelled(
    session: Session,
    model: str,
    *,
    version: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    last: int | None = None,
) -> list[Feedback]:
    """Feedback rows of a model in a window of prediction time, oldest first."""
    query = select(Feedback).where(Feedback.model_name == model)
    if version is not None:
        query = query.where(Feedback.model_version == str(version))
    if since is not None:
        query = query.where(Feedback.prediction_ts >= since)
    if until is not None:
        query = query.where(Feedback.prediction_ts < until)
    if last is not None:
        rows = list(session.scalars(query.order_by(Feedback.prediction_ts.desc()).limit(last)))
        return rows[::-1]
    return list(session.scalars(query.order_by(Feedback.prediction_ts)))


def count_since(session: Session, model: str, since: datetime | None) -> int:
    """Labels received since a moment (the retraining trigger on new labels)."""
    query = select(func.count()).select_from(Feedback).where(Feedback.model_name == model)
    if since is not None:
        query = query.where(Feedback.created_at >= since)
    return int(session.scalar(query) or 0)


def labels_for(session: Session, ids: Iterable[str]) -> dict[str, Any]:
    """Label by prediction id for the given ids (those without feedback are absent)."""
    id_list = [str(i) for i in ids]
    out: dict[str, Any] = {}
    for start in range(0, len(id_list), 500):
        chunk = id_list[start : start + 500]
        rows = session.execute(select(Feedback.prediction_id, Feedback.label).where(Feedback.prediction_id.in_(chunk)))
        out.update((pid, label) for pid, label in rows)
    return out


__all__ = ["Feedback", "SaveResult", "count_since", "existing_ids", "labelled", "labels_for", "save_feedback"]
