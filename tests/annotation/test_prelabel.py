"""Pre-labels from a registered (tiny, real) model version, and the active-learning order."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainkeeper.annotation.prelabel import prelabel_project, submit_prelabel
from chainkeeper.annotation.projects import assign_batches, create_project, get_project
from chainkeeper.annotation.schemas import LabelSchema
from chainkeeper.annotation.tasks import annotator_queue
from chainkeeper.apps.customer_service.sample import INTENTS
from chainkeeper.core.context import Context
from chainkeeper.core.errors import Forbidden, InvalidInput
from chainkeeper.core.jobs import JobState
from chainkeeper.core.worker import Worker
from chainkeeper.data.versions import DatasetVersion
from chainkeeper.registry.versions import ModelVersion
from tests.annotation.conftest import ANA, STEWARD
from tests.model_rows import registered


@pytest.fixture(scope="module")
def intents_classifier(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from chainkeeper.training.model import ClassifierMeta, TextClassifier

    torch.manual_seed(3)
    model, tokenizer = TextClassifier.from_base(tiny_model_dir, ClassifierMeta(labels=list(INTENTS), max_length=32))
    return model.save(tmp_path_factory.mktemp("intents-classifier"), tokenizer)


@pytest.fixture
def model_version(ctx: Context, intents_classifier: Path) -> ModelVersion:
    return registered(ctx, "intents", model_artifact=ctx.artifacts.put_tree(intents_classifier))


def test_prelabels_carry_confidence_and_order_an_active_queue(ctx: Context, version: DatasetVersion,
                                                              schema: LabelSchema, model_version: ModelVersion) -> None:
    project = create_project(ctx, name="al", dataset_version_id=version.id, schema_id=schema.id, actor=STEWARD,
                             queue_order="active")
    assign_batches(ctx, project.id, annotators=[ANA.name], actor=STEWARD)
    with pytest.raises(Forbidden):
        prelabel_project(ctx, project.id, model_version.id, ANA)
    with pytest.raises(InvalidInput, match="Unknown active-learning strategy"):
        prelabel_project(ctx, project.id, model_version.id, STEWARD, strategy="loudest")
    result = prelabel_project(ctx, project.id, model_version.id, STEWARD, strategy="entropy")
    assert result == {"items": version.stats["rows"], "prelabelled": version.stats["rows"],
                      "in_schema": version.stats["rows"], "strategy": "entropy", "reordered": True}
    queue = annotator_queue(ctx, project.id, ANA)
    for task in queue:
        pre = task.prelabel
        assert pre["label"] in INTENTS and 0 < pre["confidence"] <= 1 and pre["in_schema"]
        assert max(pre["scores"].values()) == pytest.approx(pre["confidence"], abs=1e-5)
    from chainkeeper.annotation.tables import SqlAnnotationItem

    with ctx.db.session() as s:
        scores = {i.id: i.al_score for i in s.query(SqlAnnotationItem).filter_by(project_id=project.id)}
    in_queue = [scores[t.item_id] for t in queue]
    assert in_queue == sorted(in_queue, reverse=True)  # most uncertain first
    # A rerun with the same version and strategy has nothing left to do (resume).
    again = prelabel_project(ctx, project.id, model_version.id, STEWARD, strategy="entropy")
    assert again["prelabelled"] == 0
    assert get_project(ctx.db, project.id).prelabel_model_version_id == model_version.id


def test_prelabelling_runs_as_a_job(ctx: Context, version: DatasetVersion, schema: LabelSchema,
                                    model_version: ModelVersion) -> None:
    project = create_project(ctx, name="job", dataset_version_id=version.id, schema_id=schema.id, actor=STEWARD)
    job = submit_prelabel(ctx, project.id, model_version.id, STEWARD, strategy="margin")
    finished = Worker(ctx, worker_id="w-prelabel").run_one()
    assert finished is not None and finished.id == job.id and finished.state == JobState.SUCCEEDED
    assert finished.result["prelabelled"] == version.stats["rows"] and finished.result["reordered"] is False
    assert finished.progress == pytest.approx(100.0)
