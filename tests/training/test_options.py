"""The fuller config: optimisers, schedules, accumulation, early stopping, class weights,
and the bad inputs that must stop a run with a clear message."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput
from chainkeeper.core.jobs import JobState
from chainkeeper.core.worker import Worker
from chainkeeper.training.config import TrainConfig, parse_train_config
from chainkeeper.training.loop import class_weight_vector, lr_multiplier, train_classifier
from chainkeeper.training.runs import RunState, count_runs, get_run, start_training_run
from tests.training.test_loop import FAST, LABELS, TEXTS, _model
from tests.training.test_runs import ALICE, _dataset_version


def test_cosine_and_constant_schedules_after_warm_up() -> None:
    assert lr_multiplier("cosine", 2, total_steps=10, warmup_steps=2) == 1.0
    assert lr_multiplier("cosine", 6, total_steps=10, warmup_steps=2) == pytest.approx(0.5)
    assert lr_multiplier("cosine", 10, total_steps=10, warmup_steps=2) == pytest.approx(0.0)
    assert lr_multiplier("constant", 9, total_steps=10, warmup_steps=2) == 1.0
    assert lr_multiplier("constant", 0, total_steps=10, warmup_steps=2) == pytest.approx(1 / 3)


def test_balanced_class_weights_follow_n_over_k_times_count() -> None:
    # 6 rows, 3 classes: counts 3, 2, 1 -> 6/(3*3), 6/(3*2), 6/(3*1)
    weights = class_weight_vector([0, 0, 0, 1, 1, 2], ["a", "b", "c"], "balanced")
    assert weights is not None and weights.tolist() == pytest.approx([2 / 3, 1.0, 2.0])
    table = class_weight_vector([0, 1], ["a", "b"], {"b": 3.0})
    assert table is not None and table.tolist() == [1.0, 3.0]
    assert class_weight_vector([0, 1], ["a", "b"], "none") is None
    with pytest.raises(InvalidInput, match="'zebra'"):
        class_weight_vector([0, 1], ["a", "b"], {"zebra": 2.0})


def test_sgd_cosine_and_gradient_accumulation_take_the_expected_steps(tiny_model_dir: Path) -> None:
    model, tokenizer = _model(tiny_model_dir)
    config = TrainConfig(epochs=2, optimizer="sgd", momentum=0.9, schedule="cosine",
                         gradient_accumulation_steps=4, class_weights="balanced",
                         **{**FAST, "learning_rate": 5e-2})
    result = train_classifier(model, tokenizer, TEXTS, LABELS, config)
    # 48 rows / batch 8 = 6 batches per epoch -> ceil(6 / 4) = 2 optimiser steps per epoch
    assert result.steps == 4 and result.samples == 2 * 48
    assert math.isfinite(result.final_loss)


def test_early_stopping_ends_the_loop_when_the_dev_metric_stalls(tiny_model_dir: Path) -> None:
    model, tokenizer = _model(tiny_model_dir)
    evaluated: list[int] = []

    def flat_dev(step: int) -> float:
        evaluated.append(step)
        return 0.5  # never improves after the first evaluation

    config = TrainConfig(epochs=10, eval_every_steps=2, early_stopping_patience=2, **FAST)
    result = train_classifier(model, tokenizer, TEXTS, LABELS, config, on_eval=flat_dev)
    assert evaluated == [2, 4, 6]  # best at 2, no gain at 4 and 6 -> stop
    assert result.steps == 6 < config.total_steps(len(TEXTS))
    assert result.stop_reason == "early_stopping" and result.stopped_early


def _poisoned_run(tiny_model_dir: Path, at_step: int) -> tuple[InvalidInput, list[dict[str, Any]]]:
    """Train, turning the head's weights to NaN after optimiser step ``at_step``."""
    model, tokenizer = _model(tiny_model_dir)
    saved: list[dict[str, Any]] = []

    def poison(step: int) -> None:
        if step == at_step:
            with torch.no_grad():
                model.head.weight.fill_(float("nan"))

    # 48 rows at batch 8: checkpoints at steps 5 (every 5), 6 (epoch end), 10, ...
    config = TrainConfig(max_steps=30, checkpoint_every_steps=5, eval_every_steps=1, **FAST)
    with pytest.raises(InvalidInput) as err:
        train_classifier(model, tokenizer, TEXTS, LABELS, config, on_eval=poison,
                         on_checkpoint=lambda state: saved.append({"step": state["step"],
                                                                   "head": state["model"]["head.weight"].clone()}))
    return err.value, saved


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tiny_model_dir: Path) -> None:
    error, saved = _poisoned_run(tiny_model_dir, at_step=8)
    assert "loss became nan at step 9" in error.message and "checkpoint" in (error.hint or "")
    assert [s["step"] for s in saved] == [5, 6]
    assert torch.isfinite(saved[-1]["head"]).all()


def test_non_finite_weights_never_overwrite_the_last_good_checkpoint(tiny_model_dir: Path) -> None:
    error, saved = _poisoned_run(tiny_model_dir, at_step=10)  # a checkpoint step
    assert "stopped being finite numbers at step 10" in error.message
    assert [s["step"] for s in saved] == [5, 6]


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        pytest.param({"early_stopping_patience": 2}, "needs eval_every_steps", id="patience-without-eval"),
        pytest.param({"optimizer": "adam"}, "optimizer='adam'", id="unknown-optimizer"),
        pytest.param({"schedule": "step"}, "schedule='step'", id="unknown-schedule"),
        pytest.param({"gradient_accumulation_steps": 0}, "gradient_accumulation_steps=0", id="zero-accumulation"),
        pytest.param({"class_weights": "sometimes"}, "class_weights", id="bad-class-weights"),
        pytest.param({"labels": ["only"]}, "at least two", id="one-label-map"),
    ],
)
def test_impossible_options_are_refused_with_the_key(values: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_train_config(values)
    assert fragment in err.value.message


def test_a_max_length_above_the_model_limit_is_refused_before_anything_is_stored(
        ctx: Context, tmp_path: Path, tiny_model_dir: Path) -> None:
    version_id = _dataset_version(ctx, tmp_path)
    with pytest.raises(InvalidInput) as err:
        start_training_run(ctx, dataset_version_id=version_id, config=TrainConfig(max_length=512), actor=ALICE,
                           base_model=tiny_model_dir)
    assert "max_length=512" in err.value.message and "128" in err.value.message
    assert count_runs(ctx.db) == 0


def test_a_model_folder_without_a_tokenizer_is_refused(ctx: Context, tmp_path: Path, tiny_model_dir: Path) -> None:
    version_id = _dataset_version(ctx, tmp_path)
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, bare / name)
    with pytest.raises(InvalidInput, match="has no tokenizer"):
        start_training_run(ctx, dataset_version_id=version_id, config=TrainConfig(), actor=ALICE, base_model=bare)
    assert count_runs(ctx.db) == 0


def test_labels_missing_from_the_label_map_fail_the_run_with_their_names(
        ctx: Context, tmp_path: Path, tiny_model_dir: Path) -> None:
    version_id = _dataset_version(ctx, tmp_path)
    config = TrainConfig(max_steps=2, labels=["money", "sports"], max_length=16)
    run = start_training_run(ctx, dataset_version_id=version_id, config=config, actor=ALICE,
                             base_model=tiny_model_dir)
    job = Worker(ctx).run_one()
    assert job is not None and job.state == JobState.FAILED
    done = get_run(ctx.db, run.id)
    assert done.state == RunState.FAILED and done.model_artifact is None
    assert "'weather'" in done.metrics["error"] and "label map" in done.metrics["error"]


def test_early_stopping_in_a_job_records_why_it_stopped(ctx: Context, tmp_path: Path, tiny_model_dir: Path) -> None:
    version_id = _dataset_version(ctx, tmp_path)
    # A learning rate this small cannot move the dev metric: the second evaluation stops it.
    config = TrainConfig(epochs=20, batch_size=4, learning_rate=1e-12, head_lr_multiplier=1.0, max_length=16,
                         eval_every_steps=1, early_stopping_patience=1, dropout=0.0)
    run = start_training_run(ctx, dataset_version_id=version_id, config=config, actor=ALICE,
                             base_model=tiny_model_dir)
    assert Worker(ctx).run_one().state == JobState.SUCCEEDED  # type: ignore[union-attr]
    train = get_run(ctx.db, run.id).metrics["train"]
    assert train["stop_reason"] == "early_stopping"
    assert train["steps"] == 2 and [p["step"] for p in train["dev_curve"]] == [1, 2]
