"""ORM classes of monitoring: the prediction log."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from chainkeeper.core.db import Base, UTCDateTime, utcnow


class SqlPrediction(Base):
    __tablename__ = "predictions"

    # The request id returned to the caller (one per text served).
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    deployment_id: Mapped[int] = mapped_column(sa.ForeignKey("deployments.id"), index=True)
    model_version_id: Mapped[int] = mapped_column(sa.ForeignKey("model_versions.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    input_hash: Mapped[str] = mapped_column(sa.String(64))
    input_text: Mapped[str] = mapped_column(sa.Text)
    label: Mapped[str] = mapped_column(sa.String(255))
    score: Mapped[float]
    latency_ms: Mapped[float]
