"""Migration 0020 (the support assistant): its tables, and the new actions granted to a store made before them."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from chainkeeper.core import migrations
from chainkeeper.core.db import Database
from chainkeeper.governance.bootstrap import seed_roles
from chainkeeper.governance.permissions import seed_permissions
from tests.conftest import POSTGRES_URL

NEW_ACTIONS = ("app.manage", "support.read", "support.answer")


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_0020_adds_the_tables_grants_the_new_actions_and_downgrades(tmp_path: Path, backend: str) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'm.db'}"
    else:  # a database of its own: the session's shared one must stay at head
        if not POSTGRES_URL:
            pytest.skip("CHAINKEEPER_TEST_POSTGRES_URL is not set; .ci/run sets it to the local PostgreSQL server")
        admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        name = f"ck_0020_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = sa.engine.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    db = Database(url)
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["engine"] = db.engine

    def tables() -> set[str]:
        return set(sa.inspect(db.engine).get_table_names())

    def grants() -> set[tuple[str, str]]:
        with db.engine.connect() as conn:
            return {(r, a) for r, a in conn.execute(sa.text("SELECT role, action FROM permissions"))
                    if a in NEW_ACTIONS}

    try:
        # A store initialised before 0020: its roles hold the matrix of that time.
        migrations.upgrade(db, "0019")
        seed_roles(db)
        seed_permissions(db)
        with db.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM permissions WHERE action IN ('app.manage', 'support.read', "
                                 "'support.answer')"))
            conn.execute(sa.text("DELETE FROM roles WHERE name = 'support_agent'"))
        migrations.upgrade(db)
        assert {"support_apps", "support_conversations", "support_messages"} <= tables()
        assert grants() == {("release_manager", "app.manage"), ("release_manager", "support.read"),
                            ("operator", "support.read"), ("auditor", "support.read"),
                            ("data_steward", "support.read")}
        seed_roles(db)  # what 'chainkeeper init' does next: the new built-in role with its grants
        seed_permissions(db)
        assert ("support_agent", "support.answer") in grants()
        command.downgrade(config, "0019")
        assert not {"support_apps", "support_conversations", "support_messages"} & tables() and grants() == set()
        migrations.upgrade(db)
        assert "support_messages" in tables()
    finally:
        db.dispose()
        if backend == "postgres":
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
