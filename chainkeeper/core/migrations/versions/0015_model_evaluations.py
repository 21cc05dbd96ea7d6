"""issue 14: evaluations of model versions on a file are stored.

``model_evaluations``: one row per ``models evaluate`` (CLI) or ``POST
/api/models/{id}/evaluations``: the file's name and SHA-256, its format, rows scored and
skipped, the metrics of the test report and the out-of-scope figures, who and when.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

import chainkeeper.core.db

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("file", sa.String(length=255), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("out_of_scope", sa.JSON(), nullable=True),
        sa.Column("evaluated_by", sa.String(length=128), nullable=False),
        sa.Column("evaluated_at", chainkeeper.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"],
                                name=op.f("fk_model_evaluations_model_version_id_model_versions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_evaluations")),
    )
    op.create_index(op.f("ix_model_evaluations_model_version_id"), "model_evaluations", ["model_version_id"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_model_evaluations_model_version_id"), table_name="model_evaluations")
    op.drop_table("model_evaluations")
