"""ORM classes of serving: deployments."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from chainkeeper.core.db import Base, UTCDateTime, utcnow


class SqlDeployment(Base):
    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    model_version_id: Mapped[int] = mapped_column(sa.ForeignKey("model_versions.id"))
    state: Mapped[str] = mapped_column(sa.String(16), default="active")
    owner: Mapped[str] = mapped_column(sa.String(128))
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
