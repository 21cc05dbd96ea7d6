"""A support assistant on a real chain, made fast: for the assistant's service, API, CLI and web tests.

``train_sample_classifier`` fine-tunes the tiny 2-layer encoder on the built-in sample
(10 intents, EN and 中文) with the training stage's own loop; ``build_support_world``
stores the sample as a released dataset version with train/dev/test splits (rows
inserted directly, as ``tests/monitoring/chain.py`` does; the data stage tests its own
path), records the run, registers, promotes and deploys the model as ``support``,
imports and releases the sample's knowledge base through the data stage and creates the
assistant ``helpdesk`` through its service (which builds the index with the real MiniLM
and fits the out-of-scope threshold on the dev split).
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

from chainkeeper.apps.customer_service.knowledge import write_knowledge_base
from chainkeeper.apps.customer_service.sample import generate_sample
from chainkeeper.apps.support.assistants import SupportApp, create_support_app
from chainkeeper.apps.support.knowledge import import_knowledge_base
from chainkeeper.core.context import Context
from chainkeeper.data.versions import release_dataset_version
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.users import create_user
from chainkeeper.registry.versions import ModelVersion, Stage, register_model_version, transition_stage
from chainkeeper.serving.deployments import deploy_model_version
from chainkeeper.serving.runtime import PredictorCache
from chainkeeper.training.runs import finish_run
from chainkeeper.training.tables import SqlRun
from tests.monitoring.chain import store_dataset_version

STEWARD = Actor("dana", frozenset({"data_steward"}))
APPROVER = Actor("eli", frozenset({"data_steward"}))
ENGINEER = Actor("erin", frozenset({"ml_engineer"}))
RELEASER = Actor("rory", frozenset({"release_manager"}))
AGENT = Actor("agnes", frozenset({"support_agent"}))
OPERATOR = Actor("otto", frozenset({"operator"}))
APP = "helpdesk"
DEPLOYMENT = "support"


def sample_rows(folder: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The built-in sample's (text, label) rows: train and test."""
    files = generate_sample(folder)

    def read(path: Path) -> list[tuple[str, str]]:
        with open(path, encoding="utf-8", newline="") as f:
            return [(r["text"], r["label"]) for r in csv.DictReader(f)]

    return read(files["train"]), read(files["test"])


def train_sample_classifier(tiny_model_dir: Path, dest: Path) -> Path:
    """The tiny encoder fine-tuned on the sample's train rows; saved at ``dest``."""
    import torch

    from chainkeeper.training.config import parse_train_config
    from chainkeeper.training.loop import train_classifier
    from chainkeeper.training.model import ClassifierMeta, TextClassifier

    train, _ = sample_rows(dest / "sample")
    labels = sorted({y for _, y in train})
    torch.manual_seed(1)
    model, tokenizer = TextClassifier.from_base(tiny_model_dir, ClassifierMeta(labels=labels, max_length=48))
    train_classifier(model, tokenizer, [t for t, _ in train], [labels.index(y) for _, y in train],
                     parse_train_config({"epochs": 8, "learning_rate": 3e-3, "batch_size": 16}))
    return model.eval().save(dest / "model", tokenizer)


@dataclass
class SupportWorld:
    ctx: Context
    app: SupportApp
    version: ModelVersion
    predictors: PredictorCache
    test_rows: list[tuple[str, str]]
    knowledge_version_id: int


def build_support_world(ctx: Context, classifier_dir: Path, folder: Path) -> SupportWorld:
    """The chain behind the assistant ``helpdesk`` (see the module's docstring); users for the cast."""
    for actor in (STEWARD, APPROVER, ENGINEER, RELEASER, AGENT, OPERATOR):
        create_user(ctx.db, actor.name, roles=sorted(actor.roles))
    train, test = sample_rows(folder / "sample")
    random.Random(3).shuffle(train)
    dev_count = len(train) // 5
    rows = [(t, y, "dev" if i < dev_count else "train") for i, (t, y) in enumerate(train)]
    dataset_id = store_dataset_version(ctx, rows + [(t, y, "test") for t, y in test], name="intents")
    with ctx.db.session() as s:
        run = SqlRun(task="sequence-classification", dataset_version_id=dataset_id, base_model="tiny",
                     state="queued", created_by=ENGINEER.name)
        s.add(run)
        s.flush()
        run_id = run.id
    finish_run(ctx.db, run_id, metrics={"test": {"accuracy": 0.8, "macro_f1": 0.8}},
               model_artifact=ctx.artifacts.put_tree(classifier_dir))
    version = register_model_version(ctx, run_id=run_id, name="intents", actor=ENGINEER)
    transition_stage(ctx, version.id, Stage.STAGING, actor=RELEASER)
    version = transition_stage(ctx, version.id, Stage.PRODUCTION, actor=RELEASER)
    deploy_model_version(ctx, name=DEPLOYMENT, model_version_id=version.id, actor=RELEASER)
    _, kb = import_knowledge_base(ctx, write_knowledge_base(folder / "kb"), name="helpdesk-kb", actor=STEWARD)
    kb = release_dataset_version(ctx, kb.id, actor=APPROVER)
    predictors = PredictorCache(ctx, batching=False)
    app = create_support_app(ctx, predictors, name=APP, deployment=DEPLOYMENT, knowledge_version_id=kb.id,
                             actor=RELEASER)
    return SupportWorld(ctx=ctx, app=app, version=version, predictors=predictors, test_rows=test,
                        knowledge_version_id=kb.id)
