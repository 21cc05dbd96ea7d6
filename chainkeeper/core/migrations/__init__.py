"""Alembic migrations, driven from code (no alembic.ini needed).

``upgrade(db)`` brings a database to the head revision; ``current_revision(db)`` reads
where it is. The revision scripts live in ``versions/``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from chainkeeper.core.db import Database

_HERE = Path(__file__).parent


def _config(db: Database | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    if db is not None:
        # env.py runs the migration on this engine instead of opening its own.
        cfg.attributes["engine"] = db.engine
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "no migration scripts shipped"
    return head


def current_revision(db: Database) -> str | None:
    with db.translate_errors(), db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database, revision: str = "head") -> None:
    """Apply every migration up to ``revision`` (default: the newest)."""
    with db.translate_errors():
        command.upgrade(_config(db), revision)
