"""Multi-label classification: several labels per text, one sigmoid per label.

A text-classification dataset version carries one label string per row; with
``multi_label_separator`` set (say ``"|"``), ``"billing|urgent"`` means both labels.
The classifier keeps its encoder, pooling and linear head; the loss becomes binary
cross-entropy over a multi-hot target, and a label is predicted when its probability
reaches ``multi_label_threshold``.

Metrics (values in, values out, ``zero_division=0`` as scikit-learn): per label
precision/recall/F1/support, micro, macro and weighted averages, subset accuracy (every
label of the row right, ``accuracy``) and the Hamming loss (share of wrong label
decisions). The job part (``train_multilabel_run``) shares the classifier's
checkpoints, resume, curves and model storage.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from chainkeeper.core.errors import InvalidInput
from chainkeeper.core.jobs import JobHandle
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.loop import (
    TrainResult,
    fit,
    pad_batch,
    sample_indices,
    seed_everything,
    tokenize_once,
)
from chainkeeper.training.model import ClassifierMeta, TextClassifier
from chainkeeper.training.vocabulary import learn_new_rows

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.training.runs import Run

__all__ = ["multilabel_metrics", "predict_label_sets", "split_labels", "train_multilabel_classifier",
           "train_multilabel_run"]


def split_labels(label: str | None, separator: str) -> list[str]:
    """The labels of one row: the string cut at ``separator``, stripped, empties dropped,
    in first-seen order without repeats."""
    seen: dict[str, None] = {}
    for part in (label or "").split(separator):
        if part.strip():
            seen.setdefault(part.strip(), None)
    return list(seen)


def multilabel_metrics(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]],
                       labels: Sequence[str]) -> dict[str, Any]:
    """Scores of label sets against gold label sets.

    Returns:
        ``accuracy`` (subset accuracy), ``hamming_loss``, ``micro_f1``, ``macro_f1``,
        ``weighted_f1``, micro/macro precision and recall, ``per_class`` (as
        ``classification_metrics``), ``labels`` and ``support`` (rows).

    Raises:
        InvalidInput: no rows, lengths differ, or a label outside ``labels``.
    """
    if not y_true:
        raise InvalidInput("Cannot score zero rows.")
    if len(y_true) != len(y_pred):
        raise InvalidInput(f"{len(y_true)} gold label sets but {len(y_pred)} predicted.")
    known = set(labels)
    unknown = sorted({y for row in (*y_true, *y_pred) for y in row if y not in known})
    if unknown:
        raise InvalidInput(f"Label(s) not in the label set: {', '.join(map(repr, unknown[:5]))}.")
    tp = dict.fromkeys(labels, 0)
    fp = dict.fromkeys(labels, 0)
    fn = dict.fromkeys(labels, 0)
    exact = 0
    for truth, guess in zip(y_true, y_pred, strict=True):
        t, g = set(truth), set(guess)
        exact += t == g
        for y in t & g:
            tp[y] += 1
        for y in g - t:
            fp[y] += 1
        for y in t - g:
            fn[y] += 1

    def ratio(a: int, b: int) -> float:
        return a / b if b else 0.0

    def f1(p: float, r: float) -> float:
        return 2 * p * r / (p + r) if p + r else 0.0

    per_class = {}
    for y in labels:
        p, r = ratio(tp[y], tp[y] + fp[y]), ratio(tp[y], tp[y] + fn[y])
        per_class[y] = {"precision": p, "recall": r, "f1-score": f1(p, r), "support": tp[y] + fn[y]}
    k, n = len(labels), len(y_true)
    micro_p = ratio(sum(tp.values()), sum(tp.values()) + sum(fp.values()))
    micro_r = ratio(sum(tp.values()), sum(tp.values()) + sum(fn.values()))
    support = sum(c["support"] for c in per_class.values())
    return {
        "accuracy": exact / n,
        "hamming_loss": (sum(fp.values()) + sum(fn.values())) / (n * k),
        "micro_precision": micro_p, "micro_recall": micro_r, "micro_f1": f1(micro_p, micro_r),
        "macro_precision": sum(c["precision"] for c in per_class.values()) / k,
        "macro_recall": sum(c["recall"] for c in per_class.values()) / k,
        "macro_f1": sum(c["f1-score"] for c in per_class.values()) / k,
        "weighted_f1": sum(c["f1-score"] * c["support"] for c in per_class.values()) / support if support else 0.0,
        "support": n, "labels": list(labels), "per_class": per_class, "multi_label": True,
    }


def train_multilabel_classifier(model: TextClassifier, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
                                label_sets: Sequence[Sequence[int]], config: TrainConfig, **hooks: Any) -> TrainResult:
    """Fine-tune a classifier in place on texts and their sets of label ids.

    Args:
        label_sets: the label ids of each text (each in ``range(len(model.meta.labels))``).
        **hooks: ``on_step``, ``should_stop``, ``on_eval``, ``on_checkpoint``, ``resume``
            (see ``loop.fit``).

    Raises:
        InvalidInput: no texts, lengths differ, or a label id out of range.
    """
    if not texts:
        raise InvalidInput("There are no training rows.", hint="Check the dataset version's train split.")
    if len(texts) != len(label_sets):
        raise InvalidInput(f"{len(texts)} texts but {len(label_sets)} label sets were given for training.")
    k = len(model.meta.labels)
    if any(not 0 <= y < k for row in label_sets for y in row):
        raise InvalidInput(f"A label id is out of range for {k} labels.")
    seed_everything(config.seed)
    keep = sample_indices(len(texts), config.limit_train, config.seed)
    token_ids = tokenize_once(tokenizer, [texts[i] for i in keep], config.max_length)
    targets = torch.zeros(len(keep), k)  # (n, k) multi-hot
    for row, i in enumerate(keep):
        targets[row, list(label_sets[i])] = 1.0
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    loss_fn = nn.BCEWithLogitsLoss()

    def batch_loss(batch: list[int]) -> torch.Tensor:
        input_ids, attention_mask = pad_batch([token_ids[i] for i in batch], pad_id)  # (b, t)
        loss: torch.Tensor = loss_fn(model(input_ids, attention_mask), targets[batch])  # logits (b, k)
        return loss

    return fit(model, [len(ids) for ids in token_ids], batch_loss, config, **hooks)


def predict_label_sets(model: TextClassifier, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], *,
                       batch_size: int = 128) -> list[list[str]]:
    """The labels whose probability reaches ``model.meta.threshold``, per text."""
    probs = model.predict_proba(tokenizer, list(texts), batch_size=batch_size)  # (n, k) sigmoids
    return [[model.meta.labels[j] for j in (row >= model.meta.threshold).nonzero().flatten().tolist()]
            for row in probs]


def train_multilabel_run(ctx: Context, job: JobHandle, run: Run) -> tuple[dict[str, Any], str]:
    """Train, evaluate and store the classifier of a multi-label run.

    Raises:
        InvalidInput: fewer than two labels in the train split, or a label outside the
            declared map.
    """
    from chainkeeper.training.jobs import (
        TRAIN_SHARE,
        Checkpointing,
        Reporter,
        Split,
        check_dev_for_early_stopping,
        check_finished_training,
        check_label_map,
        extend_for_run,
        load_split,
        store_model_folder,
        train_metrics,
    )

    config = run.train_config
    sep = config.multi_label_separator
    assert sep is not None  # dispatched on it
    reporter = Reporter(job, ctx.db, run.id)
    reporter.progress(0.0, "reading the dataset version", force=True)
    splits = {name: load_split(ctx, run.dataset_version_id, name) for name in ("train", "dev", "test")}
    sets = {name: [split_labels(y, sep) for y in s.labels] for name, s in splits.items()}
    found = sorted({y for row in sets["train"] for y in row})
    if len(found) < 2:
        raise InvalidInput(f"The train split has {len(found)} distinct label(s) after splitting on {sep!r}; "
                           "a classifier needs at least two.", hint="Check multi_label_separator and the labels.")
    # The label map check reads labels one by one: give it every label of every row.
    exploded = {name: Split(texts=[], labels=[y for row in rows for y in row]) for name, rows in sets.items()}
    labels = check_label_map(found, config.labels, exploded)
    job.log("rows: " + ", ".join(f"{n} {len(s.texts)}" for n, s in splits.items()) + f"; {len(labels)} labels")
    check_dev_for_early_stopping(config, run, has_dev=bool(splits["dev"].texts))

    seed_everything(config.seed)
    meta = ClassifierMeta(labels=labels, pooling=config.pooling, max_length=config.max_length, multi_label=True,
                          threshold=config.multi_label_threshold)
    model, tokenizer = TextClassifier.from_base(Path(run.base_model), meta, dropout=config.dropout,
                                                attention_dropout=config.attention_dropout,
                                                head_dropout=config.head_dropout)
    tokenizer, extension = extend_for_run(job, config, model.encoder, tokenizer, splits["train"].texts)
    checkpoints = Checkpointing(ctx, job, run)
    index = {y: i for i, y in enumerate(labels)}

    def score(name: str) -> dict[str, Any]:
        predicted = predict_label_sets(model, tokenizer, splits[name].texts, batch_size=config.eval_batch_size)
        return multilabel_metrics(sets[name], predicted, labels)

    def evaluate_dev(step: int) -> float | None:
        if not splits["dev"].texts:
            return None
        m = score("dev")
        checkpoints.dev_curve.append({"step": step, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]})
        job.log(f"step {step}: dev subset accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}")
        return float(m[config.early_stopping_metric])

    with learn_new_rows(model.encoder, extension):
        result = train_multilabel_classifier(
            model, tokenizer, splits["train"].texts, [[index[y] for y in row] for row in sets["train"]], config,
            on_step=reporter.step, should_stop=lambda: job.cancel_requested, on_eval=evaluate_dev,
            on_checkpoint=checkpoints.save, resume=checkpoints.resume)
    check_finished_training(job, config, result)
    metrics: dict[str, Any] = {"train": train_metrics(result, len(splits["train"].texts), checkpoints.dev_curve,
                                                      vocabulary=extension)}
    for offset, name in ((3, "dev"), (6, "test")):
        if splits[name].texts:
            reporter.progress(TRAIN_SHARE + offset, f"evaluating on {name}", force=True)
            metrics[name] = score(name)
            job.log(f"{name}: subset accuracy {metrics[name]['accuracy']:.4f}, "
                    f"micro-F1 {metrics[name]['micro_f1']:.4f}")
        job.check_cancelled()
    reporter.progress(98.0, "storing the model", force=True)
    digest = store_model_folder(ctx, job, run, lambda folder: model.save(folder, tokenizer), checkpoints)
    return metrics, digest
