"""alerts and maintenance (issue 8): alert rules, alerts, notifications and tickets.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

import chainkeeper.core.db

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, chainkeeper.core.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table('alert_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('metric', sa.String(length=128), nullable=False),
    sa.Column('comparator', sa.String(length=2), nullable=False),
    sa.Column('threshold', sa.Double(), nullable=False),
    sa.Column('window_s', sa.Integer(), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('deployment_id', sa.Integer(), nullable=True),
    sa.Column('webhook_url', sa.Text(), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    _time('created_at'),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'],
                            name=op.f('fk_alert_rules_deployment_id_deployments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_rules')),
    sa.UniqueConstraint('name', name=op.f('uq_alert_rules_name')),
    )
    op.create_table('alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rule_id', sa.Integer(), nullable=False),
    sa.Column('deployment_id', sa.Integer(), nullable=False),
    sa.Column('open_key', sa.String(length=64), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('value', sa.Double(), nullable=False),
    sa.Column('threshold', sa.Double(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    _time('started_at'),
    _time('last_seen_at'),
    _time('notified_at', True),
    _time('resolved_at', True),
    sa.ForeignKeyConstraint(['rule_id'], ['alert_rules.id'], name=op.f('fk_alerts_rule_id_alert_rules')),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], name=op.f('fk_alerts_deployment_id_deployments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
    sa.UniqueConstraint('open_key', name=op.f('uq_alerts_open_key')),
    )
    op.create_index(op.f('ix_alerts_rule_id'), 'alerts', ['rule_id'], unique=False)
    op.create_index(op.f('ix_alerts_deployment_id'), 'alerts', ['deployment_id'], unique=False)
    op.create_index(op.f('ix_alerts_state'), 'alerts', ['state'], unique=False)
    op.create_table('alert_silences',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rule_id', sa.Integer(), nullable=True),
    sa.Column('deployment_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    _time('starts_at'),
    _time('ends_at'),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['rule_id'], ['alert_rules.id'], name=op.f('fk_alert_silences_rule_id_alert_rules')),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'],
                            name=op.f('fk_alert_silences_deployment_id_deployments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_silences')),
    )
    op.create_index(op.f('ix_alert_silences_ends_at'), 'alert_silences', ['ends_at'], unique=False)
    op.create_table('alert_notifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('alert_id', sa.Integer(), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('event', sa.String(length=16), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    _time('next_attempt_at'),
    sa.Column('last_error', sa.Text(), nullable=True),
    _time('created_at'),
    _time('delivered_at', True),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_alert_notifications_alert_id_alerts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_notifications')),
    )
    op.create_index(op.f('ix_alert_notifications_alert_id'), 'alert_notifications', ['alert_id'], unique=False)
    op.create_index(op.f('ix_alert_notifications_state'), 'alert_notifications', ['state'], unique=False)
    op.create_table('alert_delivery_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('notification_id', sa.Integer(), nullable=False),
    _time('at'),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('duration_ms', sa.Double(), nullable=False),
    sa.ForeignKeyConstraint(['notification_id'], ['alert_notifications.id'],
                            name=op.f('fk_alert_delivery_attempts_notification_id_alert_notifications')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_delivery_attempts')),
    )
    op.create_index(op.f('ix_alert_delivery_attempts_notification_id'), 'alert_delivery_attempts',
                    ['notification_id'], unique=False)
    op.create_table('maintenance_tickets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('alert_id', sa.Integer(), nullable=True),
    sa.Column('deployment_id', sa.Integer(), nullable=True),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('owner_role', sa.String(length=64), nullable=False),
    _time('opened_at'),
    sa.Column('acknowledged_by', sa.String(length=128), nullable=True),
    _time('acknowledged_at', True),
    sa.Column('time_to_acknowledge_s', sa.Double(), nullable=True),
    sa.Column('handed_over_by', sa.String(length=128), nullable=True),
    _time('handed_over_at', True),
    sa.Column('closed_by', sa.String(length=128), nullable=True),
    _time('closed_at', True),
    sa.Column('resolution', sa.Text(), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_maintenance_tickets_alert_id_alerts')),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'],
                            name=op.f('fk_maintenance_tickets_deployment_id_deployments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_maintenance_tickets')),
    )
    op.create_index(op.f('ix_maintenance_tickets_alert_id'), 'maintenance_tickets', ['alert_id'], unique=False)
    op.create_index(op.f('ix_maintenance_tickets_state'), 'maintenance_tickets', ['state'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_maintenance_tickets_state'), table_name='maintenance_tickets')
    op.drop_index(op.f('ix_maintenance_tickets_alert_id'), table_name='maintenance_tickets')
    op.drop_table('maintenance_tickets')
    op.drop_index(op.f('ix_alert_delivery_attempts_notification_id'), table_name='alert_delivery_attempts')
    op.drop_table('alert_delivery_attempts')
    op.drop_index(op.f('ix_alert_notifications_state'), table_name='alert_notifications')
    op.drop_index(op.f('ix_alert_notifications_alert_id'), table_name='alert_notifications')
    op.drop_table('alert_notifications')
    op.drop_index(op.f('ix_alert_silences_ends_at'), table_name='alert_silences')
    op.drop_table('alert_silences')
    op.drop_index(op.f('ix_alerts_state'), table_name='alerts')
    op.drop_index(op.f('ix_alerts_deployment_id'), table_name='alerts')
    op.drop_index(op.f('ix_alerts_rule_id'), table_name='alerts')
    op.drop_table('alerts')
    op.drop_table('alert_rules')
