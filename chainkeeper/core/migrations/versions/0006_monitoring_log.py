"""monitoring hot path (issues 6 and 8): prediction-log columns and stored metric series.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

import chainkeeper.core.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch_alter_table: SQLite cannot add a NOT NULL column in place on every version;
    # the batch form works on both dialects.
    with op.batch_alter_table('predictions') as batch:
        batch.add_column(sa.Column('scores', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('pii_spans', sa.Integer(), server_default='0', nullable=False))
        batch.add_column(sa.Column('input_chars', sa.Integer(), nullable=True))
    op.create_table('metric_samples',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('labels', sa.JSON(), nullable=False),
    sa.Column('deployment', sa.String(length=128), nullable=True),
    sa.Column('value', sa.Double(), nullable=False),
    sa.Column('at', chainkeeper.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_metric_samples')),
    )
    op.create_index('ix_metric_samples_name_at', 'metric_samples', ['name', 'at'], unique=False)
    op.create_index(op.f('ix_metric_samples_deployment'), 'metric_samples', ['deployment'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_metric_samples_deployment'), table_name='metric_samples')
    op.drop_index('ix_metric_samples_name_at', table_name='metric_samples')
    op.drop_table('metric_samples')
    with op.batch_alter_table('predictions') as batch:
        batch.drop_column('input_chars')
        batch.drop_column('pii_spans')
        batch.drop_column('scores')
