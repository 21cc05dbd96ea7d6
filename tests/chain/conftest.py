"""Two projects side by side, for the tests that services decide authorisation by the
object's own project.

Project "news" holds one object of every kind (source, dataset version, run, model
version, deployment), made by actors with global roles. ``outsider`` holds *every*
built-in role, but only inside project "support": every protected service function must
refuse them on a "news" object, and leave the store as it was.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from chainkeeper.core.context import Context
from chainkeeper.core.schema import metadata
from chainkeeper.data.ingest import import_csv
from chainkeeper.data.sources import Source
from chainkeeper.data.versions import DatasetVersion, create_dataset_version, release_dataset_version
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.roles import BuiltinRole
from chainkeeper.registry.versions import ModelVersion, register_model_version, transition_stage
from chainkeeper.serving.deployments import Deployment, deploy_model_version
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.runs import Run, finish_run, get_run, start_training_run

ALL_ROLES = frozenset(role.value for role in BuiltinRole)
STEWARD = Actor("nina", frozenset({"data_steward"}))
APPROVER = Actor("noah", frozenset({"data_steward"}))
ENGINEER = Actor("ned", frozenset({"ml_engineer"}))
RELEASER = Actor("nora", frozenset({"release_manager"}))
OUTSIDER = Actor("sam", scoped_roles=frozenset((role, "support") for role in ALL_ROLES))
INSIDER = Actor("sue", scoped_roles=frozenset((role, "news") for role in ALL_ROLES))


@dataclass(frozen=True)
class Projects:
    """The "news" project's objects and the two scoped actors."""

    source: Source
    dataset: DatasetVersion
    run: Run
    model: ModelVersion
    deployment: Deployment
    outsider: Actor = OUTSIDER
    insider: Actor = INSIDER


def _rows(path: Path) -> Path:
    rows = [("shares of acme fell sharply today", "negative"), ("acme beat profit forecasts", "positive")] * 12
    rows += [("markets were quiet this morning", "neutral")] * 12
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


@pytest.fixture
def projects(ctx: Context, tmp_path: Path) -> Projects:
    """Project "news": a released dataset, a succeeded run, a production model, a deployment."""
    source = import_csv(ctx, _rows(tmp_path / "news.csv"), actor=STEWARD)
    version = create_dataset_version(ctx, name="news", source_ids=[source.id], actor=STEWARD)
    version = release_dataset_version(ctx, version.id, actor=APPROVER)
    run = start_training_run(ctx, dataset_version_id=version.id, config=TrainConfig(epochs=1), actor=ENGINEER)
    # No worker trains it: the record of a succeeded run is all authorisation needs.
    finish_run(ctx.db, run.id, metrics={"test": {"accuracy": 0.9, "macro_f1": 0.9}}, model_artifact="0" * 64)
    model = register_model_version(ctx, run_id=run.id, name="news-sentiment", actor=ENGINEER)
    transition_stage(ctx, model.id, "staging", actor=RELEASER, comment="fixture")
    model = transition_stage(ctx, model.id, "production", actor=RELEASER, comment="fixture")
    deployment = deploy_model_version(ctx, name="news-sentiment", model_version_id=model.id, actor=RELEASER)
    return Projects(source=source, dataset=version, run=get_run(ctx.db, run.id), model=model, deployment=deployment)


def table_counts(ctx: Context) -> dict[str, int]:
    """Rows per table, to show a refused call changed nothing."""
    with ctx.db.engine.connect() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in metadata.sorted_tables}


# A case calls one protected service function as ``projects.outsider`` on a "news" object.
ScopeCase = Callable[[Context, Projects, Path], object]
