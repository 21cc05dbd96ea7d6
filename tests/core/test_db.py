from pathlib import Path

import pytest
import sqlalchemy as sa

from chainkeeper.core import migrations
from chainkeeper.core.context import Context
from chainkeeper.core.db import Database, verify_schema
from chainkeeper.core.errors import ConfigError, SchemaError, StoreError
from chainkeeper.core.jobs import get_job, submit_job
from chainkeeper.core.schema import metadata
from chainkeeper.core.settings import load_settings


def test_migrations_create_every_table_from_empty(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
    with pytest.raises(SchemaError, match="chainkeeper init"):
        verify_schema(db)
    migrations.upgrade(db)
    verify_schema(db)
    names = set(sa.inspect(db.engine).get_table_names())
    assert {t.name for t in metadata.sorted_tables} <= names


def test_sqlite_runs_in_wal_mode_with_foreign_keys(ctx: Context) -> None:
    with ctx.db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


@pytest.mark.postgres
def test_migrations_on_postgres_match_the_models(postgres_database_url: str) -> None:
    db = Database(postgres_database_url)
    verify_schema(db)
    names = set(sa.inspect(db.engine).get_table_names())
    assert {t.name for t in metadata.sorted_tables} <= names
    db.dispose()


def test_basic_crud_and_aware_utc_times(any_ctx: Context) -> None:
    job = submit_job(any_ctx, "sleep", {"steps": 1}, actor="alice")
    again = get_job(any_ctx.db, job.id)
    assert again.params == {"steps": 1} and again.created_by == "alice"
    assert again.created_at.tzinfo is not None and again.created_at.utcoffset().total_seconds() == 0


def test_unreachable_postgres_is_a_clear_store_error(tmp_path: Path) -> None:
    settings = load_settings({}, home=tmp_path, database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(StoreError, match=r"cannot be used.*") as info:
        Context.open(settings)
    assert "CHAINKEEPER_DATABASE_URL" in str(info.value)


@pytest.mark.parametrize(
    "url",
    [pytest.param("mysql://root@localhost/x", id="unsupported"), pytest.param("not a url", id="malformed")],
)
def test_bad_database_urls_name_the_valid_schemes(url: str) -> None:
    with pytest.raises(ConfigError, match="sqlite"):
        Database(url)


def test_an_old_schema_is_refused_with_the_upgrade_step(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    migrations.upgrade(db)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0000'")
    with pytest.raises(SchemaError, match="needs .*chainkeeper init"):
        verify_schema(db)
