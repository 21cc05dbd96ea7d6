"""The bad inputs of issue 5's "Done when", each through the real service and job: a
clear message, the last good checkpoint kept, and never a registered model version."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch

from chainkeeper.core.context import Context
from chainkeeper.core.errors import Conflict, InvalidInput
from chainkeeper.core.jobs import JobState
from chainkeeper.core.worker import Worker
from chainkeeper.registry.versions import register_model_version
from chainkeeper.training.checkpoints import load_checkpoint, run_folder
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.runs import RunState, count_runs, get_run, start_training_run
from tests.training.test_runs import ALICE, _dataset_version, release

FAST = dict(batch_size=8, learning_rate=5e-3, head_lr_multiplier=1.0, dropout=0.0, max_length=16)


def _failed_run(ctx: Context, run_id: int) -> str:
    """Run the job; check it failed with no model and that registering it is refused."""
    job = Worker(ctx).run_one()
    assert job is not None and job.state == JobState.FAILED
    run = get_run(ctx.db, run_id)
    assert run.state == RunState.FAILED and run.model_artifact is None
    with pytest.raises(Conflict, match=f"Run {run_id} is failed"):
        register_model_version(ctx, run_id=run_id, name="broken", actor=ALICE)
    assert "Traceback" not in run.metrics["error"]
    return str(run.metrics["error"])


def test_labels_missing_from_the_label_map_fail_the_run_naming_label_and_split(
        ctx: Context, tmp_path: Path, tiny_model_dir: Path) -> None:
    run = start_training_run(ctx, dataset_version_id=_dataset_version(ctx, tmp_path), actor=ALICE,
                             base_model=tiny_model_dir,
                             config=TrainConfig(max_steps=2, labels=["money", "other"], **FAST))
    error = _failed_run(ctx, run.id)
    assert "labelled 'weather'" in error and "label map (money, other)" in error and "train split" in error


def test_an_empty_train_split_never_reaches_training(ctx: Context, tmp_path: Path) -> None:
    """The first guard is the data stage: it refuses to freeze a version whose train split
    is empty, so no run can start on one (``check_trainable`` is the second guard)."""
    from chainkeeper.data.ingest import import_file
    from chainkeeper.data.versions import create_dataset_version

    path = tmp_path / "test_only.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([["text", "label"], *[[f"row {i}", "a" if i % 2 else "b"] for i in range(10)]])
    source = import_file(ctx, path, actor=ALICE, split="test")
    with pytest.raises(InvalidInput, match="none in train") as err:
        create_dataset_version(ctx, name="test-only", source_ids=[source.id], actor=ALICE)
    assert "--split train" in (err.value.hint or "")  # the hint names the option as the shell spells it
    assert count_runs(ctx.db) == 0


def test_an_empty_dev_split_with_early_stopping_fails_with_what_to_do(ctx: Context, tmp_path: Path,
                                                                      tiny_model_dir: Path) -> None:
    from chainkeeper.data.ingest import import_file
    from chainkeeper.data.versions import create_dataset_version

    path = tmp_path / "train_only.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([["text", "label"], *[[f"row {i}", "a" if i % 2 else "b"] for i in range(10)]])
    source = import_file(ctx, path, actor=ALICE, split="train")
    version = create_dataset_version(ctx, name="train-only", source_ids=[source.id], actor=ALICE)
    run = start_training_run(ctx, dataset_version_id=release(ctx, version.id), actor=ALICE, base_model=tiny_model_dir,
                             config=TrainConfig(max_steps=4, eval_every_steps=2, early_stopping_patience=1, **FAST))
    assert "needs a dev split" in _failed_run(ctx, run.id)


def test_a_model_folder_without_a_tokenizer_is_refused(ctx: Context, tmp_path: Path, tiny_model_dir: Path) -> None:
    bare = tmp_path / "bare-model"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, bare / name)
    with pytest.raises(InvalidInput, match="has no tokenizer") as err:
        start_training_run(ctx, dataset_version_id=_dataset_version(ctx, tmp_path), config=TrainConfig(**FAST),
                           actor=ALICE, base_model=bare)
    assert "save_pretrained" in (err.value.hint or "")
    assert count_runs(ctx.db) == 0


def test_a_sequence_length_above_the_models_limit_is_refused(ctx: Context, tmp_path: Path,
                                                             tiny_model_dir: Path) -> None:
    with pytest.raises(InvalidInput, match="max_length=512 is above the base model's limit of 128") as err:
        start_training_run(ctx, dataset_version_id=_dataset_version(ctx, tmp_path), actor=ALICE,
                           base_model=tiny_model_dir, config=TrainConfig(**{**FAST, "max_length": 512}))
    assert "at most 128" in (err.value.hint or "")
    assert count_runs(ctx.db) == 0


def test_a_nan_loss_fails_the_run_and_keeps_the_last_good_checkpoint(ctx: Context, tmp_path: Path,
                                                                     tiny_model_dir: Path) -> None:
    # An absurd learning rate without clipping: SGD diverges and the loss turns NaN at
    # step 8 (seeded), after the step-7 checkpoint.
    absurd = TrainConfig(max_steps=60, batch_size=8, learning_rate=0.9, head_lr_multiplier=1000.0, optimizer="sgd",
                         max_grad_norm=1e30, warmup_ratio=0.0, dropout=0.0, max_length=16, checkpoint_every_steps=1)
    run = start_training_run(ctx, dataset_version_id=_dataset_version(ctx, tmp_path), config=absurd, actor=ALICE,
                             base_model=tiny_model_dir)
    error = _failed_run(ctx, run.id)
    assert "loss became nan" in error or "stopped being finite" in error
    kept = load_checkpoint(run_folder(ctx.settings.home, run.id))
    assert kept is not None and 0 < kept["step"] < 60
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())
