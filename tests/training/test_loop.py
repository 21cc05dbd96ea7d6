"""The training loop on a real tiny model: it learns, it is seeded, it stops when asked."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from chainkeeper.core.errors import InvalidInput
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.loop import (
    StepReport,
    length_grouped_batches,
    linear_warmup_decay,
    pad_batch,
    predict_labels,
    sample_indices,
    seed_everything,
    train_classifier,
)
from chainkeeper.training.model import ClassifierMeta, TextClassifier

# Two classes a bag of words separates: money words vs weather words.
_MONEY = ["my card payment failed", "refund my transfer please", "the bank charged a fee",
          "where is my money transfer", "card declined at the shop", "exchange rate for my payment"]
_WEATHER = ["it is sunny and warm today", "heavy rain and wind tonight", "snow falls on the hills",
            "the forecast says thunder", "cloudy skies with light rain", "a hot and humid afternoon"]
TEXTS = _MONEY * 4 + _WEATHER * 4
LABELS = [0] * 24 + [1] * 24
NAMES = ["money", "weather"]

FAST = dict(batch_size=8, learning_rate=5e-3, head_lr_multiplier=1.0, warmup_ratio=0.1, dropout=0.0,
            log_every_steps=5)


def _model(base: Path, seed: int = 13) -> tuple[TextClassifier, object]:
    seed_everything(seed)
    return TextClassifier.from_base(base, ClassifierMeta(labels=NAMES, max_length=32), dropout=0.0)


def test_tiny_model_learns_a_separable_toy_set(tiny_model_dir: Path) -> None:
    model, tokenizer = _model(tiny_model_dir)
    reports: list[StepReport] = []
    result = train_classifier(model, tokenizer, TEXTS, LABELS, TrainConfig(epochs=6, **FAST),
                              on_step=reports.append)
    assert result.steps == 36 and result.samples == 6 * 48 and not result.stopped_early
    assert result.losses[-1][1] < 0.5 * result.losses[0][1]  # the loss fell by more than half
    predicted = predict_labels(model, tokenizer, TEXTS)  # type: ignore[arg-type]
    accuracy = sum(p == NAMES[y] for p, y in zip(predicted, LABELS, strict=True)) / len(LABELS)
    assert accuracy >= 0.95
    # Reports every 5 steps plus the last, with a learning rate that rose then decayed to 0.
    assert [r.step for r in reports] == [5, 10, 15, 20, 25, 30, 35, 36]
    assert reports[-1].learning_rate == pytest.approx(0.0)
    assert all(r.samples_per_s > 0 and r.total_steps == 36 for r in reports)


def test_same_seed_gives_the_same_weights(tiny_model_dir: Path) -> None:
    config = TrainConfig(max_steps=4, **FAST)
    first, tokenizer = _model(tiny_model_dir)
    train_classifier(first, tokenizer, TEXTS, LABELS, config)
    second, _ = _model(tiny_model_dir)
    train_classifier(second, tokenizer, TEXTS, LABELS, config)
    assert torch.equal(first.head.weight, second.head.weight)


def test_should_stop_ends_the_loop_between_steps(tiny_model_dir: Path) -> None:
    model, tokenizer = _model(tiny_model_dir)
    calls = {"n": 0}

    def stop_after_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    result = train_classifier(model, tokenizer, TEXTS, LABELS, TrainConfig(epochs=2, **FAST),
                              should_stop=stop_after_three)
    assert result.stopped_early and result.steps == 3
    assert result.losses and result.losses[-1][0] == 3  # the partial window's loss is kept


def test_limit_train_and_max_steps_cap_the_work(tiny_model_dir: Path) -> None:
    model, tokenizer = _model(tiny_model_dir)
    result = train_classifier(model, tokenizer, TEXTS, LABELS, TrainConfig(epochs=5, limit_train=16, **FAST))
    assert result.samples == 5 * 16 and result.steps == 10
    result = train_classifier(model, tokenizer, TEXTS, LABELS, TrainConfig(epochs=5, max_steps=7, **FAST))
    assert result.steps == 7  # max_steps crosses epoch boundaries and wins over epochs


def test_on_eval_runs_every_n_steps_in_eval_mode(tiny_model_dir: Path) -> None:
    model, tokenizer = _model(tiny_model_dir)
    seen: list[tuple[int, bool]] = []
    train_classifier(model, tokenizer, TEXTS, LABELS, TrainConfig(max_steps=6, eval_every_steps=2, **FAST),
                     on_eval=lambda step: seen.append((step, model.training)))
    assert seen == [(2, False), (4, False), (6, False)]


@pytest.mark.parametrize(
    ("texts", "labels", "fragment"),
    [
        pytest.param([], [], "no training rows", id="empty"),
        pytest.param(["a", "b"], [0], "2 texts but 1 labels", id="length-mismatch"),
        pytest.param(["a", "b"], [0, 2], "Label id 2 is out of range", id="label-out-of-range"),
    ],
)
def test_bad_training_input_is_refused(tiny_model_dir: Path, texts: list[str], labels: list[int],
                                       fragment: str) -> None:
    model, tokenizer = _model(tiny_model_dir)
    with pytest.raises(InvalidInput) as err:
        train_classifier(model, tokenizer, texts, labels, TrainConfig())
    assert fragment in err.value.message


def test_schedule_warms_up_linearly_then_decays_to_zero() -> None:
    factors = [linear_warmup_decay(s, total_steps=10, warmup_steps=4) for s in range(11)]
    assert factors[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert factors[4] == 1.0
    assert factors[4:] == sorted(factors[4:], reverse=True) and factors[10] == 0.0
    assert linear_warmup_decay(0, total_steps=5, warmup_steps=0) == 1.0


def test_length_grouped_batches_cover_every_row_once_with_little_padding() -> None:
    lengths = [(i * 37) % 60 + 1 for i in range(1000)]
    batches = length_grouped_batches(lengths, batch_size=16, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert all(len(b) <= 16 for b in batches)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.1 * sum(lengths)  # vs ~1.9x when batches are drawn at random
    assert batches == length_grouped_batches(lengths, batch_size=16, seed=3)
    assert batches != length_grouped_batches(lengths, batch_size=16, seed=4)


def test_pad_batch_pads_to_the_longest_row_with_a_mask() -> None:
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_sample_indices_is_seeded_and_keeps_order() -> None:
    picked = sample_indices(100, 10, seed=1)
    assert len(picked) == 10 and picked == sorted(picked) and picked == sample_indices(100, 10, seed=1)
    assert sample_indices(5, None, seed=1) == [0, 1, 2, 3, 4]
    assert sample_indices(5, 50, seed=1) == [0, 1, 2, 3, 4]
