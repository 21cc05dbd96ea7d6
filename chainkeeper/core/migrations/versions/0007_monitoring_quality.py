"""monitoring quality (issue 8): feedback and drift results.

Live quality is not stored: it is computed from the log and the feedback when asked,
so feedback that arrives after a window still counts in it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

import chainkeeper.core.db

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, chainkeeper.core.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table('feedback',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('label', sa.String(length=255), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('given_by', sa.String(length=128), nullable=False),
    _time('given_at'),
    sa.Column('revisions', sa.Integer(), nullable=False),
    sa.Column('previous_label', sa.String(length=255), nullable=True),
    sa.ForeignKeyConstraint(['request_id'], ['predictions.id'], name=op.f('fk_feedback_request_id_predictions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_feedback')),
    sa.UniqueConstraint('request_id', name=op.f('uq_feedback_request_id')),
    )
    op.create_table('drift_results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('deployment_id', sa.Integer(), nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=False),
    sa.Column('check_name', sa.String(length=32), nullable=False),
    sa.Column('statistic', sa.Double(), nullable=False),
    sa.Column('threshold', sa.Double(), nullable=False),
    sa.Column('p_value', sa.Double(), nullable=True),
    sa.Column('drifted', sa.Boolean(), nullable=False),
    _time('window_start'),
    _time('window_end'),
    sa.Column('window_size', sa.Integer(), nullable=False),
    sa.Column('reference', sa.Text(), nullable=False),
    sa.Column('reference_dataset_version_id', sa.Integer(), nullable=True),
    sa.Column('reference_size', sa.Integer(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    _time('created_at'),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'],
                            name=op.f('fk_drift_results_deployment_id_deployments')),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'],
                            name=op.f('fk_drift_results_model_version_id_model_versions')),
    sa.ForeignKeyConstraint(['reference_dataset_version_id'], ['dataset_versions.id'],
                            name=op.f('fk_drift_results_reference_dataset_version_id_dataset_versions')),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_drift_results_job_id_jobs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_drift_results')),
    )
    op.create_index(op.f('ix_drift_results_deployment_id'), 'drift_results', ['deployment_id'], unique=False)
    op.create_index(op.f('ix_drift_results_window_end'), 'drift_results', ['window_end'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_drift_results_window_end'), table_name='drift_results')
    op.drop_index(op.f('ix_drift_results_deployment_id'), table_name='drift_results')
    op.drop_table('drift_results')
    op.drop_table('feedback')
