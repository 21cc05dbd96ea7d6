"""registry and serving (issue 6): tables and columns added by that stage.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

import chainkeeper.core.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('gate_thresholds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('min_macro_f1', sa.Double(), nullable=True),
    sa.Column('min_slice_macro_f1', sa.Double(), nullable=True),
    sa.Column('max_drop_vs_production', sa.Double(), nullable=True),
    sa.Column('updated_by', sa.String(length=128), nullable=False),
    sa.Column('updated_at', chainkeeper.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gate_thresholds')),
    sa.UniqueConstraint('name', name=op.f('uq_gate_thresholds_name')),
    )
    op.create_table('gate_results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=False),
    sa.Column('gate', sa.String(length=64), nullable=False),
    sa.Column('passed', sa.Boolean(), nullable=False),
    sa.Column('value', sa.Double(), nullable=True),
    sa.Column('threshold', sa.Double(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('evaluated_by', sa.String(length=128), nullable=False),
    sa.Column('evaluated_at', chainkeeper.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'],
                            name=op.f('fk_gate_results_model_version_id_model_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gate_results')),
    )
    op.create_index(op.f('ix_gate_results_model_version_id'), 'gate_results', ['model_version_id'], unique=False)
    op.create_table('deployment_routes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('deployment_id', sa.Integer(), nullable=False),
    sa.Column('primary_version_id', sa.Integer(), nullable=False),
    sa.Column('candidate_version_id', sa.Integer(), nullable=True),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('percent', sa.Integer(), nullable=False),
    sa.Column('previous_version_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', chainkeeper.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'],
                            name=op.f('fk_deployment_routes_deployment_id_deployments')),
    sa.ForeignKeyConstraint(['primary_version_id'], ['model_versions.id'],
                            name=op.f('fk_deployment_routes_primary_version_id_model_versions')),
    sa.ForeignKeyConstraint(['candidate_version_id'], ['model_versions.id'],
                            name=op.f('fk_deployment_routes_candidate_version_id_model_versions')),
    sa.ForeignKeyConstraint(['previous_version_id'], ['model_versions.id'],
                            name=op.f('fk_deployment_routes_previous_version_id_model_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deployment_routes')),
    )
    op.create_index(op.f('ix_deployment_routes_deployment_id'), 'deployment_routes', ['deployment_id'], unique=False)
    op.create_table('shadow_predictions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=False),
    sa.Column('deployment_id', sa.Integer(), nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=False),
    sa.Column('label', sa.String(length=256), nullable=False),
    sa.Column('score', sa.Double(), nullable=False),
    sa.Column('served_label', sa.String(length=256), nullable=False),
    sa.Column('at', chainkeeper.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'],
                            name=op.f('fk_shadow_predictions_deployment_id_deployments')),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'],
                            name=op.f('fk_shadow_predictions_model_version_id_model_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shadow_predictions')),
    )
    op.create_index(op.f('ix_shadow_predictions_request_id'), 'shadow_predictions', ['request_id'], unique=False)
    op.create_index(op.f('ix_shadow_predictions_deployment_id'), 'shadow_predictions', ['deployment_id'],
                    unique=False)
    op.create_table('deployment_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('deployment_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('rate_per_s', sa.Double(), nullable=True),
    sa.Column('burst', sa.Integer(), nullable=True),
    sa.Column('expires_at', chainkeeper.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', chainkeeper.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', chainkeeper.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'],
                            name=op.f('fk_deployment_keys_deployment_id_deployments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deployment_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_deployment_keys_key_hash')),
    )
    op.create_index(op.f('ix_deployment_keys_deployment_id'), 'deployment_keys', ['deployment_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_deployment_keys_deployment_id'), table_name='deployment_keys')
    op.drop_table('deployment_keys')
    op.drop_index(op.f('ix_shadow_predictions_deployment_id'), table_name='shadow_predictions')
    op.drop_index(op.f('ix_shadow_predictions_request_id'), table_name='shadow_predictions')
    op.drop_table('shadow_predictions')
    op.drop_index(op.f('ix_deployment_routes_deployment_id'), table_name='deployment_routes')
    op.drop_table('deployment_routes')
    op.drop_index(op.f('ix_gate_results_model_version_id'), table_name='gate_results')
    op.drop_table('gate_results')
    op.drop_table('gate_thresholds')
