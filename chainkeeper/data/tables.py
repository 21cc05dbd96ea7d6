"""ORM classes of the data stage: imported sources and dataset versions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from chainkeeper.core.db import Base, UTCDateTime, utcnow


class SqlSource(Base):
    """One imported file (or crawl): where it came from, its checksum, who brought it."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    uri: Mapped[str] = mapped_column(sa.Text)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    rows_accepted: Mapped[int]
    rows_quarantined: Mapped[int] = mapped_column(default=0)
    # Parquet of the accepted rows with their origin (line number), in the artefact store.
    rows_artifact: Mapped[str] = mapped_column(sa.String(64))
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Added by migration 0002: how the input was read (connector, decoding, its options).
    format: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    encoding: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)


class SqlDatasetVersion(Base):
    """An immutable dataset version: a Parquet snapshot named by its content hash."""

    __tablename__ = "dataset_versions"
    __table_args__ = (sa.UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), index=True)
    version: Mapped[int]
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    snapshot_artifact: Mapped[str] = mapped_column(sa.String(64))
    source_ids: Mapped[list[Any]] = mapped_column(default=list)
    schema: Mapped[dict[str, Any]] = mapped_column(default=dict)
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)
    recipe: Mapped[list[Any]] = mapped_column(default=list)
    split_seed: Mapped[int] = mapped_column(default=0)
    state: Mapped[str] = mapped_column(sa.String(16), default="draft")
    owner: Mapped[str] = mapped_column(sa.String(128))
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
