"""Migration 0005 creates the annotation tables and its downgrade removes them."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import chainkeeper.core.migrations as migrations
from chainkeeper.annotation import tables
from chainkeeper.core.db import Database

ANNOTATION_TABLES = {t.__tablename__ for t in (tables.SqlLabelSchema, tables.SqlAnnotationProject,
                                               tables.SqlAnnotationItem, tables.SqlAssignment, tables.SqlAnnotation,
                                               tables.SqlAdjudication)}


def test_0005_upgrades_and_downgrades(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    migrations.upgrade(db, "0005")
    assert ANNOTATION_TABLES <= set(sa.inspect(db.engine).get_table_names())
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["engine"] = db.engine
    command.downgrade(config, "0004")
    assert not ANNOTATION_TABLES & set(sa.inspect(db.engine).get_table_names())
    migrations.upgrade(db, "0005")
    assert ANNOTATION_TABLES <= set(sa.inspect(db.engine).get_table_names())
    db.dispose()
