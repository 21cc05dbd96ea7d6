"""Shared fixtures: real stores, a real tiny model, a real server.

- ``settings``/``ctx``: a fresh SQLite file per test, copied from one migrated template
  (migrating once per session keeps the suite fast).
- ``any_ctx``: the same test on SQLite and, when CHAINKEEPER_TEST_POSTGRES_URL is set,
  on that PostgreSQL server in a database of its own, dropped at the end.
- ``tiny_model_dir``: a 2-layer BERT with seeded random weights and MiniLM's real
  WordPiece tokenizer, built on the fly (no download).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from chainkeeper.chain import open_context
from chainkeeper.core import migrations
from chainkeeper.core.context import Context
from chainkeeper.core.db import Database
from chainkeeper.core.schema import metadata
from chainkeeper.core.settings import Settings, load_settings
from chainkeeper.governance.bootstrap import seed_roles
from chainkeeper.governance.permissions import seed_permissions

REPO = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("CHAINKEEPER_TEST_POSTGRES_URL")


def _datasets_dir() -> Path:
    configured = os.environ.get("CHAINKEEPER_DATASETS_DIR")
    return Path(configured) if configured else REPO.parent / "shared" / "datasets"


DATASETS_DIR = _datasets_dir()


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CHAINKEEPER_* setting of the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("CHAINKEEPER_") and not key.startswith("CHAINKEEPER_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "datasets" in item.keywords and not (DATASETS_DIR / "banking77" / "train.csv").is_file():
            item.add_marker(pytest.mark.skip(
                reason=f"public datasets not found at {DATASETS_DIR} (set CHAINKEEPER_DATASETS_DIR); "
                "CI has them, a fresh clone without ../shared does not"))


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "chainkeeper.db"
    db = Database(f"sqlite:///{path}")
    migrations.upgrade(db)
    _seed(db)
    db.dispose()
    return path


def _seed(db: Database) -> None:
    """Built-in roles and the default permission matrix, as 'chainkeeper init' leaves them."""
    seed_roles(db)
    seed_permissions(db)


@pytest.fixture
def settings(tmp_path: Path, migrated_template: Path) -> Settings:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(migrated_template, home / "chainkeeper.db")
    return load_settings({}, home=home, heartbeat_s=0.2, stale_after_s=2.0, worker_poll_s=0.1)


@pytest.fixture
def ctx(settings: Settings) -> Iterator[Context]:
    context = open_context(settings)
    yield context
    context.close()


@pytest.fixture(scope="session")
def postgres_database_url() -> Iterator[str]:
    """A database of its own on the test PostgreSQL server, migrated once, dropped after."""
    if not POSTGRES_URL:
        pytest.skip("CHAINKEEPER_TEST_POSTGRES_URL is not set; .ci/run sets it to the local PostgreSQL server")
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"chainkeeper_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    db = Database(url)
    migrations.upgrade(db)
    db.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_ctx(request: pytest.FixtureRequest, tmp_path: Path, migrated_template: Path) -> Iterator[Context]:
    """The test runs once on SQLite and once on PostgreSQL (when configured)."""
    home = tmp_path / "home"
    home.mkdir()
    if request.param == "sqlite":
        shutil.copy(migrated_template, home / "chainkeeper.db")
        s = load_settings({}, home=home, heartbeat_s=0.2, stale_after_s=2.0, worker_poll_s=0.1)
    else:
        url = request.getfixturevalue("postgres_database_url")
        s = load_settings({}, home=home, database_url=url, heartbeat_s=0.2, stale_after_s=2.0, worker_poll_s=0.1)
        _truncate_all(url)
    context = open_context(s)
    if request.param == "postgres":
        _seed(context.db)
    yield context
    context.close()


def _truncate_all(url: str) -> None:
    engine = sa.create_engine(url)
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight BERT folder with the real MiniLM tokenizer (seeded)."""
    import torch
    from transformers import BertConfig, BertModel

    from chainkeeper.core.settings import default_base_model

    out = tmp_path_factory.mktemp("tiny-bert")
    base = default_base_model()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (base / name).is_file():
            shutil.copy(base / name, out / name)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    return DATASETS_DIR


@pytest.fixture(scope="session")
def support_classifier_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny encoder fine-tuned on the built-in sample's 10 intents (~0.8 test accuracy,
    ~30 s once per session): the support assistant's tests need an intent model that is
    right and confident often enough to answer. See ``tests/support_world.py``."""
    from tests.support_world import train_sample_classifier

    return train_sample_classifier(tiny_model_dir, tmp_path_factory.mktemp("support-classifier"))
