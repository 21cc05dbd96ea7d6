"""issue 14: what a run was allowed to train on, and the search it belongs to.

- ``runs.draft_override``: the reason given to train on a dataset version that was not
  released (NULL: the version was released when the run started). A model of such a
  run cannot pass the ``model.promote`` gate while the version stays unreleased.
- ``runs.search_job_id`` and ``runs.trial``: a hyper-parameter search's trials are runs
  of their search (``trial`` is Optuna's trial number); the best config's run carries
  the search too, with no trial number.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, no table copy: on SQLite a batch copy would drop and recreate
    # "runs", and run_points' ON DELETE CASCADE must not see that drop. SQLite takes a
    # REFERENCES clause in ADD COLUMN, which Alembic does not emit there.
    op.add_column("runs", sa.Column("draft_override", sa.Text, nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE runs ADD COLUMN search_job_id INTEGER REFERENCES jobs (id)")
    else:
        op.add_column("runs", sa.Column("search_job_id", sa.Integer, nullable=True))
        op.create_foreign_key("fk_runs_search_job_id_jobs", "runs", "jobs", ["search_job_id"], ["id"])
    op.add_column("runs", sa.Column("trial", sa.Integer, nullable=True))
    op.create_index("ix_runs_search_job_id", "runs", ["search_job_id"])


def downgrade() -> None:
    op.drop_index("ix_runs_search_job_id", table_name="runs")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("fk_runs_search_job_id_jobs", "runs", type_="foreignkey")
    for column in ("trial", "search_job_id", "draft_override"):  # SQLite 3.35+ drops a column in place
        op.drop_column("runs", column)
