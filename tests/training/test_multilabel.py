"""Multi-label classification: metrics against hand-computed values, and a run whose
rows carry several labels joined by a separator."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput
from chainkeeper.core.worker import Worker
from chainkeeper.training.config import TrainConfig, parse_train_config
from chainkeeper.training.model import TextClassifier
from chainkeeper.training.multilabel import multilabel_metrics, predict_label_sets, split_labels
from chainkeeper.training.runs import RunState, get_run, run_report_html, start_training_run
from tests.training.test_runs import ALICE, _dataset_version


def test_split_labels_strips_and_drops_empties_and_repeats() -> None:
    assert split_labels(" billing | urgent||billing ", "|") == ["billing", "urgent"]
    assert split_labels(None, "|") == []


def test_multilabel_metrics_by_hand() -> None:
    labels = ["a", "b", "c"]
    truth = [["a", "b"], ["c"], ["a"]]
    guess = [["a"], ["c", "b"], ["a"]]
    m = multilabel_metrics(truth, guess, labels)
    # a: tp 2, fp 0, fn 0; b: tp 0, fp 1, fn 1; c: tp 1, fp 0, fn 0
    assert m["accuracy"] == pytest.approx(1 / 3)  # only row 3 has exactly the right set
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 1}
    assert m["micro_precision"] == pytest.approx(3 / 4) and m["micro_recall"] == pytest.approx(3 / 4)
    assert m["macro_f1"] == pytest.approx((1 + 0 + 1) / 3)
    assert m["hamming_loss"] == pytest.approx(2 / 9)
    assert m["weighted_f1"] == pytest.approx((2 * 1 + 1 * 0 + 1 * 1) / 4)
    with pytest.raises(InvalidInput, match="'z'"):
        multilabel_metrics([["z"]], [["a"]], labels)


def test_multi_label_options_are_validated() -> None:
    with pytest.raises(InvalidInput, match="class_weights is not supported"):
        parse_train_config({"multi_label_separator": "|", "class_weights": "balanced"})
    with pytest.raises(InvalidInput, match="multi_label_threshold=1.5"):
        parse_train_config({"multi_label_threshold": 1.5})


def test_a_multi_label_run_trains_sigmoids_and_stores_set_metrics(ctx: Context, tmp_path: Path,
                                                                  tiny_model_dir: Path) -> None:
    rows = [(f"card payment failed {i}", "money") for i in range(12)] + \
           [(f"storm and rain tonight {i}", "weather") for i in range(12)] + \
           [(f"storm flooded the bank branch, card payment failed {i}", "money|weather") for i in range(12)]
    version_id = _dataset_version(ctx, tmp_path, rows)
    config = TrainConfig(epochs=8, batch_size=8, learning_rate=5e-3, head_lr_multiplier=1.0, dropout=0.0,
                         max_length=32, multi_label_separator="|")
    run = start_training_run(ctx, dataset_version_id=version_id, config=config, actor=ALICE,
                             base_model=tiny_model_dir)
    job = Worker(ctx).run_one()
    assert job is not None and job.state == "succeeded", job and job.error
    done = get_run(ctx.db, run.id)
    assert done.state == RunState.SUCCEEDED
    test = done.metrics["test"]
    assert test["multi_label"] and test["labels"] == ["money", "weather"] and test["micro_f1"] >= 0.8
    assert "Per class" in run_report_html(ctx, run.id, actor=ALICE)
    model, tokenizer = TextClassifier.load(ctx.artifacts.get_tree(done.model_artifact, tmp_path / "m"))
    assert model.meta.multi_label
    assert predict_label_sets(model, tokenizer, ["storm flooded the bank branch, card payment failed 3"]) == \
        [["money", "weather"]]
