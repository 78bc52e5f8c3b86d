"""Drift runs and alerts: `mlops_drift_runs` (trend of every run) and `mlops_alerts` (sent or not).

A drift run is also written in full to `<log_dir>/drift_reports/<timestamp>.json`; the
row keeps the summary (level, share drifted, per-feature levels and scores) and the path.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, Float, Index, String, Text, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from .base import Base, utcnow

REPORTS_SUBDIR = "drift_reports"


class DriftRun(Base):
    __tablename__ = "mlops_drift_runs"
    __table_args__ = (Index("ix_mlops_drift_runs_model_created", "model_name", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    level: Mapped[str | None] = mapped_column(String(16))
    share_drifted: Mapped[float | None] = mapped_column(Float)
    n_rows: Mapped[int] = mapped_column(default=0)
    window: Mapped[dict[str, Any]] = mapped_column(default=dict)
    features: Mapped[dict[str, Any]] = mapped_column(default=dict)
    report_path: Mapped[str | None] = mapped_column(String(1000))
    trigger: Mapped[str] = mapped_column(String(50), default="api")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "model": self.model_name,
            "version": self.model_version,
            "status": self.status,
            "level": self.level,
            "share_drifted": self.share_drifted,
            "n_rows": self.n_rows,
            "window": self.window,
            "features": self.features,
            "report_path": self.report_path,
            "trigger": self.trigger,
        }


class Alert(Base):
    __tablename__ = "mlops_alerts"
    __table_args__ = (Index("ix_mlops_alerts_key_created", "key", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    key: Mapped[str] = mapped_column(String(300))
    model_name: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(50))
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(String(50))
    sent: Mapped[bool] = mapped_column(Boolean, default=False)  # False: suppressed by the cool-down
    delivered: Mapped[bool | None] = mapped_column(Boolean)  # webhook outcome; None without a webhook
    delivery_error: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "key": self.key,
            "model": self.model_name,
            "source": self.source,
            "level": self.level,
            "message": self.message,
            "reason": self.reason,
            "sent": self.sent,
            "delivered": self.delivered,
            "delivery_error": self.delivery_error,
        }


def write_report_file(log_dir: str | Path, created_at: datetime, report: dict[str, Any], model: str) -> Path:
    """The full drift report as JSON under `<log_dir>/drift_reports/` (atomic rename)."""
    folder = Path(log_dir) / REPORTS_SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    stamp = created_at.strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"{stamp}-{model}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"model": model, "created_at": created_at.isoformat(), **report}, default=str))
    os.replace(tmp, path)
    return path


def list_drift_runs(session: Session, *, model: str | None = None, limit: int = 30, before_id: int | None = None) -> list[dict[str, Any]]:
    """Newest drift runs first (the dashboard's trend and `GET /monitoring/drift/runs`)."""
    query = select(DriftRun).order_by(DriftRun.id.desc()).limit(limit)
    if model is not None:
        query = query.where(DriftRun.model_name == model)
    if before_id is not None:
        query = query.where(DriftRun.id < before_id)
    return [row.to_dict() for row in session.scalars(query)]


def delete_drift_runs(session: Session, before: datetime) -> list[str]:
    """Retention: delete the drift runs created before `before`; return their report files."""
    paths = [p for p in session.scalars(select(DriftRun.report_path).where(DriftRun.created_at < before)) if p]
    session.execute(delete(DriftRun).where(DriftRun.created_at < before))
    return paths


def last_sent_alerts(session: Session, keys: list[str]) -> dict[str, Alert]:
    """The last alert actually sent for each condition key (what de-duplication compares to)."""
    out: dict[str, Alert] = {}
    if not keys:
        return out
    rows = session.scalars(select(Alert).where(Alert.key.in_(keys), Alert.sent.is_(True)).order_by(Alert.id))
    for row in rows:
        out[row.key] = row
    return out


def list_alerts(session: Session, *, model: str | None = None, limit: int = 100, before_id: int | None = None, sent_only: bool = False) -> list[dict[str, Any]]:
    query = select(Alert).order_by(Alert.id.desc()).limit(limit)
    if model is not None:
        query = query.where(Alert.model_name == model)
    if before_id is not None:
        query = query.where(Alert.id < before_id)
    if sent_only:
        query = query.where(Alert.sent.is_(True))
    return [row.to_dict() for row in session.scalars(query)]


__all__ = ["Alert", "DriftRun", "last_sent_alerts", "list_alerts", "delete_drift_runs", "list_drift_runs", "write_report_file"]
