"""issue 16: the support assistant — applications, conversations and their messages.

Also grants the new actions to the built-in roles of a store made before them (a new
store gets them from ``chainkeeper init``'s seed): ``app.manage`` to release_manager,
``support.read`` to release_manager, operator, auditor and data_steward (who exports the
agents' answers as rows). The role ``support_agent`` is
seeded by ``init`` like every built-in role.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

import chainkeeper.core.db

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

GRANTS = [("release_manager", "app.manage"), ("release_manager", "support.read"), ("operator", "support.read"),
          ("auditor", "support.read"), ("data_steward", "support.read")]


def _time(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, chainkeeper.core.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "support_apps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("project", sa.String(length=128), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("knowledge_version_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.JSON(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        _time("created_at", nullable=False),
        _time("updated_at", nullable=False),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"],
                                name=op.f("fk_support_apps_deployment_id_deployments")),
        sa.ForeignKeyConstraint(["knowledge_version_id"], ["dataset_versions.id"],
                                name=op.f("fk_support_apps_knowledge_version_id_dataset_versions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_apps")),
        sa.UniqueConstraint("name", name=op.f("uq_support_apps_name")),
    )
    op.create_index("ix_support_apps_project", "support_apps", ["project"])
    op.create_index("ix_support_apps_deployment_id", "support_apps", ["deployment_id"])
    op.create_table(
        "support_conversations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=36), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("caller", sa.String(length=160), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("clarifications", sa.Integer(), nullable=False),
        sa.Column("handoff_reason", sa.String(length=200), nullable=True),
        _time("handed_over_at"),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("resolved_by", sa.String(length=128), nullable=True),
        _time("resolved_at"),
        sa.Column("labelled_message_id", sa.Integer(), nullable=True),
        sa.Column("resolved_intent", sa.String(length=128), nullable=True),
        sa.Column("resolution", sa.JSON(), nullable=True),
        sa.Column("exported_version_id", sa.Integer(), nullable=True),
        _time("created_at", nullable=False),
        _time("updated_at", nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["support_apps.id"],
                                name=op.f("fk_support_conversations_app_id_support_apps")),
        sa.ForeignKeyConstraint(["exported_version_id"], ["dataset_versions.id"],
                                name=op.f("fk_support_conversations_exported_version_id_dataset_versions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_conversations")),
        sa.UniqueConstraint("public_id", name=op.f("uq_support_conversations_public_id")),
    )
    op.create_index("ix_support_conversations_app_id", "support_conversations", ["app_id"])
    op.create_index("ix_support_conversations_state", "support_conversations", ["state"])
    op.create_index("ix_support_conversations_updated_at", "support_conversations", ["updated_at"])
    op.create_table(
        "support_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("sender", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("intent", sa.String(length=128), nullable=True),
        sa.Column("confidence", sa.Double(), nullable=True),
        sa.Column("scope_score", sa.Double(), nullable=True),
        sa.Column("articles", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=True),
        sa.Column("deployment_id", sa.Integer(), nullable=True),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("knowledge_version_id", sa.Integer(), nullable=True),
        sa.Column("author", sa.String(length=160), nullable=True),
        _time("at", nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["support_conversations.id"],
                                name=op.f("fk_support_messages_conversation_id_support_conversations"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_messages")),
    )
    op.create_index("ix_support_messages_conversation_id", "support_messages", ["conversation_id"])
    op.create_index("ix_support_messages_request_id", "support_messages", ["request_id"])
    roles = sa.table("roles", sa.column("name", sa.String))
    permissions = sa.table("permissions", sa.column("role", sa.String), sa.column("action", sa.String))
    bind = op.get_bind()
    present = set(bind.execute(sa.select(roles.c.name)).scalars())
    granted = {(r, a) for r, a in bind.execute(sa.select(permissions.c.role, permissions.c.action))}
    rows = [{"role": r, "action": a} for r, a in GRANTS if r in present and (r, a) not in granted]
    if rows:
        op.bulk_insert(permissions, rows)


def downgrade() -> None:
    permissions = sa.table("permissions", sa.column("role", sa.String), sa.column("action", sa.String))
    op.execute(permissions.delete().where(permissions.c.action.in_(["app.manage", "support.read", "support.answer"])))
    op.drop_index("ix_support_messages_request_id", table_name="support_messages")
    op.drop_index("ix_support_messages_conversation_id", table_name="support_messages")
    op.drop_table("support_messages")
    op.drop_index("ix_support_conversations_updated_at", table_name="support_conversations")
    op.drop_index("ix_support_conversations_state", table_name="support_conversations")
    op.drop_index("ix_support_conversations_app_id", table_name="support_conversations")
    op.drop_table("support_conversations")
    op.drop_index("ix_support_apps_deployment_id", table_name="support_apps")
    op.drop_index("ix_support_apps_project", table_name="support_apps")
    op.drop_table("support_apps")
