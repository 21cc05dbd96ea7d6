"""data stage (issue 4): tables and columns added by that stage.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

import chainkeeper.core.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # How each source was read: the connector, the decoding, and its options (delimiter,
    # declared schema, ...). Nullable/defaulted so sources imported before stay valid.
    with op.batch_alter_table("sources") as batch:
        batch.add_column(sa.Column("format", sa.String(16), nullable=True))
        batch.add_column(sa.Column("encoding", sa.String(32), nullable=True))
        batch.add_column(sa.Column("options", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("options")
        batch.drop_column("encoding")
        batch.drop_column("format")
