"""ORM classes of annotation (issue 7). Migration: core/migrations/versions/0005_annotation.py.

A label schema is versioned (``name``, ``version``): changing it adds a row, and every
annotation keeps the id of the version it was made under. A project takes the rows of a
dataset version as items; assignments put items in annotators' queues (k of them on the
overlap items); each annotator writes at most one annotation per item, guarded by its
``version`` (optimistic concurrency); an adjudication settles an item annotators
disagreed on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from chainkeeper.core.db import Base, UTCDateTime, utcnow

__all__ = ["SqlLabelSchema", "SqlAnnotationProject", "SqlAnnotationItem", "SqlAssignment", "SqlAnnotation",
           "SqlAdjudication"]


class SqlLabelSchema(Base):
    """One version of a label schema: its kind, labels (with descriptions) and guidelines."""

    __tablename__ = "label_schemas"
    __table_args__ = (sa.UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), index=True)
    version: Mapped[int]
    kind: Mapped[str] = mapped_column(sa.String(16))
    labels: Mapped[list[Any]] = mapped_column(default=list)
    guidelines: Mapped[str] = mapped_column(sa.Text, default="")
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SqlAnnotationProject(Base):
    """Rows of a dataset version to label under one schema version."""

    __tablename__ = "annotation_projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    dataset_version_id: Mapped[int] = mapped_column(sa.ForeignKey("dataset_versions.id"), index=True)
    schema_id: Mapped[int] = mapped_column(sa.ForeignKey("label_schemas.id"))
    row_filter: Mapped[dict[str, Any]] = mapped_column(default=dict)
    overlap_k: Mapped[int] = mapped_column(default=1)
    overlap_fraction: Mapped[float] = mapped_column(default=0.0)
    queue_order: Mapped[str] = mapped_column(sa.String(16), default="random")
    order_key: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    seed: Mapped[int] = mapped_column(default=13)
    state: Mapped[str] = mapped_column(sa.String(16), default="open")
    prelabel_model_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("model_versions.id"),
                                                                  nullable=True)
    exported_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("dataset_versions.id"), nullable=True)
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SqlAnnotationItem(Base):
    """One row of the project's dataset version, with its pre-label and its outcome."""

    __tablename__ = "annotation_items"
    __table_args__ = (sa.UniqueConstraint("project_id", "row_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("annotation_projects.id", ondelete="CASCADE"), index=True)
    row_id: Mapped[int]
    text: Mapped[str] = mapped_column(sa.Text)
    # Queue position: lower comes first (random, metadata or active-learning order).
    position: Mapped[float] = mapped_column(default=0.0)
    overlap: Mapped[bool] = mapped_column(default=False)
    prelabel: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    al_score: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    # open -> done (one answer, or all agree) | disputed -> adjudicated
    state: Mapped[str] = mapped_column(sa.String(16), default="open", index=True)
    final: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    version: Mapped[int] = mapped_column(default=0)


class SqlAssignment(Base):
    """An item in one annotator's queue, in one batch."""

    __tablename__ = "annotation_assignments"
    __table_args__ = (sa.UniqueConstraint("item_id", "annotator"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("annotation_projects.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(sa.ForeignKey("annotation_items.id", ondelete="CASCADE"), index=True)
    annotator: Mapped[str] = mapped_column(sa.String(128), index=True)
    batch: Mapped[int] = mapped_column(default=1)
    assigned_by: Mapped[str] = mapped_column(sa.String(128))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SqlAnnotation(Base):
    """One annotator's answer on one item; ``version`` rises with every save."""

    __tablename__ = "annotations"
    __table_args__ = (sa.UniqueConstraint("item_id", "annotator"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("annotation_projects.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(sa.ForeignKey("annotation_items.id", ondelete="CASCADE"), index=True)
    annotator: Mapped[str] = mapped_column(sa.String(128), index=True)
    schema_id: Mapped[int] = mapped_column(sa.ForeignKey("label_schemas.id"))
    # {"label": ...} | {"labels": [...]} | {"spans": [[start, end, label], ...]}; {} when skipped.
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(sa.String(16), default="labelled")
    flagged: Mapped[bool] = mapped_column(default=False)
    comment: Mapped[str] = mapped_column(sa.Text, default="")
    version: Mapped[int] = mapped_column(default=1)
    seconds: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SqlAdjudication(Base):
    """A decision on an item annotators disagreed on: its value, method and who decided."""

    __tablename__ = "adjudications"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("annotation_projects.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(sa.ForeignKey("annotation_items.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(sa.String(16))
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    note: Mapped[str] = mapped_column(sa.Text, default="")
    decided_by: Mapped[str] = mapped_column(sa.String(128))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
