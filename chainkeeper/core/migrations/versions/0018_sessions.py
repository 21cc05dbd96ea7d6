"""issue 15 item 4: server-side sessions and user administration.

- ``tokens.kind``: 'token' (an API token) or 'session' (a web sign-in, accepted only as
  the session cookie and revoked by signing out, a password change or an admin);
  sign-ins stored before this revision (named 'web session') become sessions.
- ``tokens.created_address`` (where a session was signed in from) and
  ``tokens.last_seen_at`` (when a credential last authenticated a request).
- ``users.deleted_at``: a deleted user's row stays, since the ledger names it.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

import chainkeeper.core.db

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_tokens = sa.table("tokens", sa.column("name", sa.String), sa.column("kind", sa.String))


def upgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=16), server_default="token", nullable=False))
        batch.add_column(sa.Column("created_address", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("last_seen_at", chainkeeper.core.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("deleted_at", chainkeeper.core.db.UTCDateTime(timezone=True), nullable=True))
    # Before this revision a sign-in was a token named 'web session' (issue_session_token).
    op.get_bind().execute(_tokens.update().where(_tokens.c.name == "web session").values(kind="session"))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("deleted_at")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("last_seen_at")
        batch.drop_column("created_address")
        batch.drop_column("kind")
