"""training stage (issue 5): tables and columns added by that stage.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

import chainkeeper.core.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The live curves of a run (loss, learning rate, samples/s, dev metrics), one row per
    # point, so the CLI and the UI can plot a run while it trains.
    op.create_table(
        "run_points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("at", chainkeeper.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_points_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_points")),
    )
    with op.batch_alter_table("run_points", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_run_points_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("run_points", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_run_points_run_id"))
    op.drop_table("run_points")
