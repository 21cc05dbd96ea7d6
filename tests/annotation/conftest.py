"""Annotation fixtures: a BANKING77-style dataset version from the built-in sample,
a data steward and two annotators (real users in the store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainkeeper.annotation.schemas import LabelSchema, define_schema
from chainkeeper.apps.customer_service.sample import INTENTS, generate_sample
from chainkeeper.core.context import Context
from chainkeeper.data.ingest import import_file
from chainkeeper.data.versions import DatasetVersion, create_dataset_version
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.users import create_user

STEWARD = Actor("stella", frozenset({"data_steward"}))
ANA = Actor("ana", frozenset({"annotator"}))
BEN = Actor("ben", frozenset({"annotator"}))
ENGINEER = Actor("erin", frozenset({"ml_engineer"}))


def make_version(ctx: Context, folder: Path, *, per_intent: int = 5) -> DatasetVersion:
    """A dataset version of the customer-service sample (10 intents, English and Chinese)."""
    paths = generate_sample(folder, per_intent=per_intent)
    source = import_file(ctx, paths["test"], actor=STEWARD)
    return create_dataset_version(ctx, name="intents", source_ids=[source.id], actor=STEWARD)


def make_users(ctx: Context) -> None:
    create_user(ctx.db, STEWARD.name, roles=["data_steward"])
    for actor in (ANA, BEN):
        create_user(ctx.db, actor.name, roles=["annotator"])


@pytest.fixture
def version(ctx: Context, tmp_path: Path) -> DatasetVersion:
    make_users(ctx)
    return make_version(ctx, tmp_path / "sample")


@pytest.fixture
def schema(ctx: Context, version: DatasetVersion) -> LabelSchema:
    return define_schema(ctx.db, name="intents", kind="single", actor=STEWARD,
                         labels=[f"{i}: the customer's intent is {i.replace('_', ' ')}" for i in INTENTS],
                         guidelines="Pick the one intent the customer wants served.")
