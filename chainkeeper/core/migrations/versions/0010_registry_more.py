"""registry stage, second part (issue 6): deployment-test thresholds per model name.

``gate_thresholds`` gains the budget of the deployment tests run on a version's
exported artefact: the p95 latency at a batch size, and the accuracy points an exported
form may lose against PyTorch. All nullable: a model name without them keeps the
evaluation gates only.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("max_p95_latency_ms", sa.Double()),
    ("latency_batch_size", sa.Integer()),
    ("max_export_delta_points", sa.Double()),
)


def upgrade() -> None:
    for name, type_ in _COLUMNS:
        op.add_column("gate_thresholds", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    # SQLite drops columns only by rebuilding the table: batch mode does that there and
    # plain ALTER TABLE on PostgreSQL.
    with op.batch_alter_table("gate_thresholds") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
