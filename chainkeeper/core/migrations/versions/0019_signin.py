"""issue 15 item 5: sign-in throttling.

``login_attempts`` (a row per attempt: 300 failed sign-ins were 300 rows and 300 ledger
entries) gives way to ``signin_attempts``, a row per (user name, address) that counts:
the failure streak the exponential back-off reads, the last success (an address the
user is familiar from), and the failures not yet written to the ledger (at most one
``login.failed`` entry per pair and hour). The old rows only fed a 15-minute limit, so
they are dropped, not carried over; downgrade likewise leaves the old table empty.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

import chainkeeper.core.db

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def _time(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, chainkeeper.core.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "signin_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_name", sa.String(length=128), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        _time("last_failure_at"),
        _time("last_success_at"),
        sa.Column("unreported", sa.Integer(), nullable=False),
        _time("first_unreported_at"),
        _time("reported_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signin_attempts")),
        sa.UniqueConstraint("user_name", "address", name=op.f("uq_signin_attempts_user_name_address")),
    )
    op.create_index("ix_signin_attempts_address", "signin_attempts", ["address"])
    op.create_index("ix_signin_attempts_last_failure_at", "signin_attempts", ["last_failure_at"])
    for column in ("user_name", "at", "address"):
        op.drop_index(f"ix_login_attempts_{column}", table_name="login_attempts")
    op.drop_table("login_attempts")


def downgrade() -> None:
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_name", sa.String(length=128), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        _time("at", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_attempts")),
    )
    for column in ("address", "at", "user_name"):
        op.create_index(f"ix_login_attempts_{column}", "login_attempts", [column])
    op.drop_index("ix_signin_attempts_last_failure_at", table_name="signin_attempts")
    op.drop_index("ix_signin_attempts_address", table_name="signin_attempts")
    op.drop_table("signin_attempts")

