"""ORM classes of the core: jobs, their log lines, workers, and the schedules of recurring jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from chainkeeper.core.db import Base, UTCDateTime, utcnow


class SqlJob(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(64), index=True)
    # The project of the object the job works on (authorisation scope); None: no project.
    project: Mapped[str | None] = mapped_column(sa.String(128), nullable=True, index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    progress: Mapped[float] = mapped_column(default=0.0)
    message: Mapped[str] = mapped_column(sa.Text, default="")
    result: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    worker_id: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A delayed job (a webhook's retry after its back-off) is not claimed before this time.
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SqlJobLog(Base):
    __tablename__ = "job_logs"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    line: Mapped[str] = mapped_column(sa.Text)


class SqlWorker(Base):
    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    hostname: Mapped[str] = mapped_column(sa.String(255))
    pid: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    state: Mapped[str] = mapped_column(sa.String(16), default="idle")


class SqlSchedule(Base):
    """A recurring job: the scheduler queues ``kind`` with ``params`` every ``every_s`` seconds."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(64))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The project of the object the jobs work on, as a job's (authorisation scope).
    project: Mapped[str | None] = mapped_column(sa.String(128), nullable=True, index=True)
    every_s: Mapped[float]
    # The firing the scheduler waits for; moved forward by a compare-and-set update.
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_job_id: Mapped[int | None] = mapped_column(sa.ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True)
    runs: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
    paused: Mapped[bool] = mapped_column(default=False)
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
