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


def test_the_fast_schema_check_agrees_with_alembic(tmp_path: Path) -> None:
    """Opening a store reads the head from the scripts and the revision with one query, not
    through Alembic (which would cost every CLI command ~0.15 s); both must say what Alembic says."""
    from alembic.runtime.migration import MigrationContext

    assert migrations.head_revision() == migrations.alembic_head_revision()
    db = Database(f"sqlite:///{tmp_path / 'meta.db'}")
    assert migrations.current_revision(db) is None  # never initialised
    migrations.upgrade(db, "0010")
    with db.engine.connect() as conn:
        assert migrations.current_revision(db) == MigrationContext.configure(conn).get_current_revision() == "0010"
    migrations.upgrade(db)
    assert migrations.current_revision(db) == migrations.head_revision()
    db.dispose()


def test_runs_recorded_before_vocabulary_extension_say_they_had_none(tmp_path: Path) -> None:
    """Migration 0016: a stored config without ``extend_vocab`` reads back as false, not as
    the new default; a config that has the key keeps it."""
    from chainkeeper.data.tables import SqlDatasetVersion
    from chainkeeper.training.runs import Run, _to_run
    from chainkeeper.training.tables import SqlRun

    db = Database(f"sqlite:///{tmp_path / 'meta.db'}")
    migrations.upgrade(db, "0015")
    with db.session() as s:
        dataset = SqlDatasetVersion(name="ds", version=1, content_hash="c" * 64, snapshot_artifact="d" * 64,
                                    state="released", owner="emil", created_by="emil")
        s.add(dataset)
        s.flush()
        old = {"epochs": 1.0, "learning_rate": 2e-4}
        s.add_all([SqlRun(task="sequence-classification", dataset_version_id=dataset.id, base_model="tiny",
                          state="succeeded", created_by="emil", config=config)
                   for config in (old, {**old, "extend_vocab": True})])
    migrations.upgrade(db)
    with db.session() as s:
        runs: list[Run] = [_to_run(row) for row in s.scalars(sa.select(SqlRun).order_by(SqlRun.id))]
    assert [r.train_config.extend_vocab for r in runs] == [False, True]
    db.dispose()
