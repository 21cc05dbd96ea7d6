"""ORM classes of the registry: model versions and their stage history."""

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
