"""issue 15 item 2: a keyed, anchored audit ledger.

Each ledger entry records the ledger key its HMAC was made with (``key_id``; the keys
live outside the database, ``governance.ledger_keys``). Entries already stored keep no
key id and their plain sha256 hash: they verify as before, and the first keyed entry
seals them (its HMAC covers their head).

The downgrade drops the column. Entries made with a key then no longer verify under the
older code (it recomputes plain sha256): downgrade only a store whose ledger you will
not need to verify with that older version.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_ledger", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_ledger", schema=None) as batch_op:
        batch_op.drop_column("key_id")
