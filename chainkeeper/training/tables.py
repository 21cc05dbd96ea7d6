"""ORM classes of the training stage: runs and their curve points."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from chainkeeper.core.db import Base, UTCDateTime, utcnow


class SqlRun(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    task: Mapped[str] = mapped_column(sa.String(32))
    dataset_version_id: Mapped[int] = mapped_column(sa.ForeignKey("dataset_versions.id"), index=True)
    base_model: Mapped[str] = mapped_column(sa.Text)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(sa.String(16), default="queued")
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Manifest digest of the trained model folder in the artefact store.
    model_artifact: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    job_id: Mapped[int | None] = mapped_column(sa.ForeignKey("jobs.id"), nullable=True)
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Seed, library versions, dataset and config hashes, code version (migration 0009).
    reproducibility: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True, default=dict)
    # Migration 0012: the reason given to train on an unreleased dataset version (NULL:
    # it was released), and the hyper-parameter search a run belongs to (a trial, with
    # Optuna's trial number, or the best config's run, with none).
    draft_override: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    search_job_id: Mapped[int | None] = mapped_column(sa.ForeignKey("jobs.id"), nullable=True, index=True)
    trial: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)


class SqlRunPoint(Base):
    """One point of a run's live curves: (step, name, value), e.g. (120, "loss", 0.41)."""

    __tablename__ = "run_points"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(sa.Integer)
    name: Mapped[str] = mapped_column(sa.String(32))
    value: Mapped[float] = mapped_column(sa.Float)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
