"""Alembic migrations, driven from code (no alembic.ini needed).

``upgrade(db)`` brings a database to the head revision; ``current_revision(db)`` reads
where it is. The revision scripts live in ``versions/``.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from chainkeeper.core.db import Database

if TYPE_CHECKING:
    from alembic.config import Config

_HERE = Path(__file__).parent
_REVISION = re.compile(r'^(down_revision|revision)\s*=\s*(?:"([^"]*)"|None)', re.MULTILINE)


def _config(db: Database | None = None) -> Config:
    from alembic.config import Config  # alembic loads only to migrate (~0.15 s)

    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    if db is not None:
        # env.py runs the migration on this engine instead of opening its own.
        cfg.attributes["engine"] = db.engine
    return cfg


@cache
def head_revision() -> str:
    """The newest revision shipped: the one no script revises.

    Read from the scripts' ``revision`` / ``down_revision`` lines rather than through
    Alembic, so every command that opens the store (and checks it is at this head) stays
    fast; ``alembic_head_revision`` is Alembic's answer, and a test holds them equal.
    """
    revisions: set[str] = set()
    revised: set[str] = set()
    for script in (_HERE / "versions").glob("*.py"):
        for key, value in _REVISION.findall(script.read_text(encoding="utf-8")):
            (revisions if key == "revision" else revised).add(value)
    heads = revisions - revised - {""}
    assert len(heads) == 1, f"the migration scripts have {len(heads)} heads: {sorted(heads)}"
    head: str = heads.pop()
    return head


def alembic_head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "no migration scripts shipped"
    return head


def current_revision(db: Database) -> str | None:
    """The revision the database is at (None: never initialised)."""
    with db.translate_errors(), db.engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        revision: str | None = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        return revision


def upgrade(db: Database, revision: str = "head") -> None:
    """Apply every migration up to ``revision`` (default: the newest)."""
    from alembic import command

    with db.translate_errors():
        command.upgrade(_config(db), revision)
