"""chain layer (issue 13): a job records the project it works in.

Authorisation of jobs (read, cancel, retry) follows the project of the object the job
works on — a training run's dataset, a model's project — recorded when the job is
queued. NULL for jobs of no project (alert evaluation, the demo sleep job), which only
global roles see.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("project", sa.String(128), nullable=True))
    op.create_index("ix_jobs_project", "jobs", ["project"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_project")
        batch.drop_column("project")
