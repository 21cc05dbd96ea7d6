"""Test helpers: the rows and files a registered, served model needs, made cheaply.

A real run trains for seconds to minutes; the registry, serving and API tests only need
a *succeeded run* pointing at a real model folder. These helpers insert the dataset
version and run rows directly (the data and training stages test their own paths) and
finish the run through the training stage's public ``finish_run``. The model is a real
``TextClassifier`` on the 2-layer ``tiny_model_dir`` encoder, stored with ``put_tree``.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from chainkeeper.core.context import Context
from chainkeeper.data.tables import SqlDatasetVersion
from chainkeeper.governance.actors import Actor
from chainkeeper.registry.versions import ModelVersion, Stage, register_model_version, transition_stage
from chainkeeper.training.model import ClassifierMeta, TextClassifier
from chainkeeper.training.runs import finish_run
from chainkeeper.training.tables import SqlRun

LABELS = ["balance", "card_lost", "refund", "transfer", "greeting", "goodbye"]
METRICS = {"test": {"accuracy": 0.91, "macro_f1": 0.88}}
ENGINEER = Actor("erin", frozenset({"ml_engineer"}))
RELEASER = Actor("rory", frozenset({"release_manager"}))


def save_tiny_classifier(tiny_model_dir: Path, dest: Path) -> Path:
    """A real classifier folder (tiny encoder, 6 labels, seeded head) at ``dest``."""
    import torch

    torch.manual_seed(1)
    model, tokenizer = TextClassifier.from_base(tiny_model_dir, ClassifierMeta(labels=LABELS, max_length=32))
    return model.save(dest, tokenizer)


def insert_run(ctx: Context, *, model_artifact: str | None, succeeded: bool = True,
               metrics: dict[str, Any] | None = None, author: str = ENGINEER.name) -> int:
    """A dataset version row and a run on it; finished as succeeded when asked."""
    with ctx.db.session() as s:
        dataset = SqlDatasetVersion(name=f"ds-{uuid.uuid4().hex[:8]}", version=1, content_hash="c" * 64,
                                    snapshot_artifact="d" * 64, state="released", owner=author, created_by=author)
        s.add(dataset)
        s.flush()
        run = SqlRun(task="sequence-classification", dataset_version_id=dataset.id, base_model="tiny",
                     state="queued", created_by=author)
        s.add(run)
        s.flush()
        run_id = run.id
    if succeeded:
        finish_run(ctx.db, run_id, metrics=metrics if metrics is not None else METRICS,
                   model_artifact=model_artifact or "")
    return run_id


def registered(ctx: Context, name: str, *, model_artifact: str = "a" * 64) -> ModelVersion:
    """A new candidate version of ``name`` from a fresh succeeded run."""
    return register_model_version(ctx, run_id=insert_run(ctx, model_artifact=model_artifact), name=name,
                                  actor=ENGINEER)


def in_production(ctx: Context, name: str, *, model_artifact: str = "a" * 64) -> ModelVersion:
    """A new version of ``name`` moved candidate → staging → production."""
    version = registered(ctx, name, model_artifact=model_artifact)
    transition_stage(ctx, version.id, Stage.STAGING, actor=RELEASER)
    return transition_stage(ctx, version.id, Stage.PRODUCTION, actor=RELEASER, comment="approved")
