"""ORM classes of the registry: model versions, their stage history, gate thresholds and results."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from chainkeeper.core.db import Base, UTCDateTime, utcnow


class SqlModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (sa.UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), index=True)
    version: Mapped[int]
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id"), index=True)
    model_artifact: Mapped[str] = mapped_column(sa.String(64))
    stage: Mapped[str] = mapped_column(sa.String(16), default="candidate")
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    owner: Mapped[str] = mapped_column(sa.String(128))
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SqlStageTransition(Base):
    """Every stage change of a model version: answers 'what was in production when?'."""

    __tablename__ = "stage_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(sa.ForeignKey("model_versions.id"), index=True)
    from_stage: Mapped[str] = mapped_column(sa.String(16))
    to_stage: Mapped[str] = mapped_column(sa.String(16))
    actor: Mapped[str] = mapped_column(sa.String(128))
    comment: Mapped[str] = mapped_column(sa.Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SqlGateThresholds(Base):
    """The evaluation thresholds a model name's versions must meet before production."""

    __tablename__ = "gate_thresholds"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    min_macro_f1: Mapped[float | None]
    min_slice_macro_f1: Mapped[float | None]
    max_drop_vs_production: Mapped[float | None]
    # Deployment tests on the exported artefact (migration 0010): a latency budget turns them on.
    max_p95_latency_ms: Mapped[float | None]
    latency_batch_size: Mapped[int | None]
    max_export_delta_points: Mapped[float | None]
    updated_by: Mapped[str] = mapped_column(sa.String(128))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SqlGateResult(Base):
    """One gate evaluated on one model version: kept, so a decision can be shown later."""

    __tablename__ = "gate_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(sa.ForeignKey("model_versions.id"), index=True)
    gate: Mapped[str] = mapped_column(sa.String(64))
    passed: Mapped[bool]
    value: Mapped[float | None]
    threshold: Mapped[float | None]
    detail: Mapped[str] = mapped_column(sa.Text, default="")
    evaluated_by: Mapped[str] = mapped_column(sa.String(128))
    evaluated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SqlModelEvaluation(Base):
    """A model version scored on a file (``models evaluate``): kept, so the reading can be
    shown beside the version and cited in a review (migration 0015)."""

    __tablename__ = "model_evaluations"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(sa.ForeignKey("model_versions.id"), index=True)
    file: Mapped[str] = mapped_column(sa.String(255))
    file_sha256: Mapped[str] = mapped_column(sa.String(64))
    format: Mapped[str] = mapped_column(sa.String(16))
    rows: Mapped[int]
    skipped: Mapped[int]
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    out_of_scope: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    evaluated_by: Mapped[str] = mapped_column(sa.String(128))
    evaluated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
