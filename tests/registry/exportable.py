"""Test helper: a model version that can really be exported, without training.

Export scores each form on the test split of the dataset version the run trained on,
so the version needs a real, stored dataset version: one is created from a small CSV
(through the data stage's own services) whose labels are the tiny classifier's. The run
row points at it and at a real ``TextClassifier`` folder; it is finished through the
training stage's public ``finish_run``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from chainkeeper.core.context import Context
from chainkeeper.governance.actors import Actor
from chainkeeper.registry.versions import ModelVersion, register_model_version
from chainkeeper.training.runs import finish_run
from chainkeeper.training.tables import SqlRun
from tests.model_rows import LABELS, METRICS, save_tiny_classifier

STEWARD = Actor("sven", frozenset({"data_steward"}))
TEXTS = ["where is my balance", "I lost my card", "please refund me", "send money abroad", "hello there",
         "bye for now", "what is on my account", "card stolen on the bus", "money back please",
         "transfer to my sister", "good morning", "see you later"]


def classifier_folder(tiny_model_dir: Path, dest: Path, *, without_tokenizer: bool = False) -> Path:
    """A saved tiny classifier; optionally with its tokenizer files removed."""
    folder = save_tiny_classifier(tiny_model_dir, dest)
    if without_tokenizer:
        for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
            (folder / name).unlink(missing_ok=True)
    return folder


def exportable_version(ctx: Context, folder: Path, tmp_path: Path, *, name: str = "intents",
                       author: str = "erin") -> ModelVersion:
    """A candidate version of ``name`` on ``folder``, trained (on paper) on a real dataset version."""
    from chainkeeper.data.ingest import import_csv
    from chainkeeper.data.versions import create_dataset_version

    sources = []
    for split, suffix in (("train", " today"), ("test", "")):
        path = tmp_path / f"{name}-{split}.csv"
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows((text + suffix, LABELS[i % len(LABELS)]) for i, text in enumerate(TEXTS))
        sources.append(import_csv(ctx, path, actor=STEWARD, split=split).id)
    dataset = create_dataset_version(ctx, name=f"{name}-data", source_ids=sources, actor=STEWARD)
    with ctx.db.session() as s:
        run = SqlRun(task="sequence-classification", dataset_version_id=dataset.id, base_model="tiny",
                     state="queued", created_by=author)
        s.add(run)
        s.flush()
        run_id = run.id
    finish_run(ctx.db, run_id, metrics=METRICS, model_artifact=ctx.artifacts.put_tree(folder))
    return register_model_version(ctx, run_id=run_id, name=name, actor=Actor(author, frozenset({"ml_engineer"})))
