"""issue 14: runs recorded before vocabulary extension keep saying they did without it.

``TrainConfig.extend_vocab`` defaults to true for new runs (the Chinese parity route,
``training.vocabulary``). A run stored before it has no such key in ``runs.config``, so
reading it back would claim an extension the run never had, and re-running its config
would train differently. This sets ``extend_vocab: false`` on every stored config that
lacks the key.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_runs = sa.table("runs", sa.column("id", sa.Integer), sa.column("config", sa.JSON))


def upgrade() -> None:
    bind = op.get_bind()
    for run_id, config in bind.execute(sa.select(_runs.c.id, _runs.c.config)).all():
        if isinstance(config, dict) and "extend_vocab" not in config:
            bind.execute(_runs.update().where(_runs.c.id == run_id).values(config={**config, "extend_vocab": False}))


def downgrade() -> None:
    # An older version refuses unknown config keys: take the vocabulary keys out again.
    bind = op.get_bind()
    for run_id, config in bind.execute(sa.select(_runs.c.id, _runs.c.config)).all():
        if isinstance(config, dict) and {"extend_vocab", "new_tokens_lr_multiplier"} & set(config):
            kept = {k: v for k, v in config.items() if k not in ("extend_vocab", "new_tokens_lr_multiplier")}
            bind.execute(_runs.update().where(_runs.c.id == run_id).values(config=kept))
