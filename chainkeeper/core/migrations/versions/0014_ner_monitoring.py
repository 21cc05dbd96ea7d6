"""issue 14: token-classification monitoring (entity spans in the log and in feedback).

- ``predictions.entities``: a tagger's answer, the entities it served for the text
  (type, start, end, score, and the entity's text redacted like ``input_text``);
  NULL for a classifier's prediction.
- ``feedback.spans``: the true entities of a tagger's prediction (type, start, end, offsets
  into the text as it was sent); NULL for a classifier's feedback, which has ``label``.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (nullable, no default): no table copy on SQLite, so the foreign keys
    # that point at predictions (feedback) never see the table dropped and recreated.
    op.add_column("predictions", sa.Column("entities", sa.JSON, nullable=True))
    op.add_column("feedback", sa.Column("spans", sa.JSON, nullable=True))


def downgrade() -> None:
    op.drop_column("feedback", "spans")  # SQLite 3.35+ drops a column in place
    op.drop_column("predictions", "entities")
