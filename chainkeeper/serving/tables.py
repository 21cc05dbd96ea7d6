"""ORM classes of serving: deployments, their routing records, shadow answers and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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


class SqlRoute(Base):
    """One immutable routing record of a deployment; the newest row is the live one.

    A change never edits a row: it inserts a new one, so a request that read a route
    keeps a consistent picture until it finishes.
    """

    __tablename__ = "deployment_routes"

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(sa.ForeignKey("deployments.id"), index=True)
    primary_version_id: Mapped[int] = mapped_column(sa.ForeignKey("model_versions.id"))
    candidate_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("model_versions.id"))
    mode: Mapped[str] = mapped_column(sa.String(16), default="single")
    percent: Mapped[int] = mapped_column(default=0)
    previous_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("model_versions.id"))
    reason: Mapped[str] = mapped_column(sa.String(32))
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SqlShadowPrediction(Base):
    """What a shadow candidate answered to a request it saw but did not answer."""

    __tablename__ = "shadow_predictions"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    deployment_id: Mapped[int] = mapped_column(sa.ForeignKey("deployments.id"), index=True)
    model_version_id: Mapped[int] = mapped_column(sa.ForeignKey("model_versions.id"))
    label: Mapped[str] = mapped_column(sa.String(256))
    score: Mapped[float]
    served_label: Mapped[str] = mapped_column(sa.String(256))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SqlDeploymentKey(Base):
    """An API key of one deployment; only the SHA-256 of its secret is stored."""

    __tablename__ = "deployment_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(sa.ForeignKey("deployments.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(128))
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    rate_per_s: Mapped[float | None]
    burst: Mapped[int | None]
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
