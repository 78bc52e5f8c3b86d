"""Tables of the registry mirror, deployment pointers and the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow

PRODUCTION = "production"  #: the alias every worker serves


class ModelVersion(Base):
    """One registered version: what the workers need to load and verify it, without MLflow."""

    __tablename__ = "mlops_model_versions"
    __table_args__ = (UniqueConstraint("model_name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int]
    model_uri: Mapped[str] = mapped_column(String(1000))
    run_id: Mapped[str | None] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    threshold: Mapped[float | None]
    semver: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(20), default="registered")
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    profile: Mapped[str | None] = mapped_column(Text)  # reference profile JSON (never pickle)
    #: the input contract this version was registered with (specs.spec_to_dict) and how
    #: serving feeds it ({"input": {"columns", "dtypes"}} for estimators fitted on DataFrames)
    spec: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Alias(Base):
    """Which version an alias (production, challenger, ...) points at; polled by every worker."""

    __tablename__ = "mlops_aliases"

    model_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    alias: Mapped[str] = mapped_column(String(50), primary_key=True)
    version: Mapped[int]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AuditEvent(Base):
    """Who changed what, when and why: answers 'which version served at time T'."""

    __tablename__ = "mlops_audit_events"
    __table_args__ = (Index("ix_mlops_audit_model_ts", "model_name", "ts"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ts: Mapped[datetime] = mapped_column(default=utcnow)
    model_name: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50))
    version: Mapped[int | None]
    previous_version: Mapped[int | None]
    actor: Mapped[str] = mapped_column(String(200), default="system")
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
