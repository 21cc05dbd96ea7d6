"""issue 14: schedules of recurring jobs (the scheduler) and delayed jobs.

A ``schedules`` row is a recurring job: the scheduler (``core.scheduler``, a loop apart
from the workers) queues an ordinary short job of its kind every ``every_s`` seconds,
claiming each firing by moving ``next_run_at`` with a compare-and-set update. Jobs gain
``not_before``: a delayed job (a webhook's retry after its back-off) is not claimed earlier.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

import chainkeeper.core.db

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, chainkeeper.core.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.add_column("jobs", _time("not_before", True))
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("project", sa.String(length=128), nullable=True),
        sa.Column("every_s", sa.Double(), nullable=False),
        _time("next_run_at"),
        _time("last_run_at", True),
        sa.Column("last_job_id", sa.Integer(), nullable=True),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        _time("created_at"),
        sa.ForeignKeyConstraint(["last_job_id"], ["jobs.id"], name=op.f("fk_schedules_last_job_id_jobs"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("name", name=op.f("uq_schedules_name")),
    )
    op.create_index("ix_schedules_project", "schedules", ["project"])
    op.create_index("ix_schedules_next_run_at", "schedules", ["next_run_at"])


def downgrade() -> None:
    op.drop_index("ix_schedules_next_run_at", table_name="schedules")
    op.drop_index("ix_schedules_project", table_name="schedules")
    op.drop_table("schedules")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("not_before")
