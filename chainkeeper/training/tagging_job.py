"""The ``train`` job of a token-classification run: fine-tune a tagger on a dataset
version's ``tokens`` and ``tags``, score dev and test by entity (seqeval) and by token,
store the tagger as a model folder.

Called by ``jobs.run_training_job`` for runs whose task is ``token-classification``; it
shares the classifier's checkpoints, resume, progress, curves and model storage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainkeeper.core.errors import InvalidInput
from chainkeeper.core.jobs import JobHandle
from chainkeeper.data import read_dataset_rows
from chainkeeper.training.jobs import (
    TRAIN_SHARE,
    Checkpointing,
    Reporter,
    check_dev_for_early_stopping,
    check_finished_training,
    extend_for_run,
    store_model_folder,
    train_metrics,
)
from chainkeeper.training.loop import seed_everything
from chainkeeper.training.runs import Run, check_taggable, record_run_points
from chainkeeper.training.tokens import (
    TokenTagger,
    entity_metrics,
    predict_tags,
    train_token_tagger,
)
from chainkeeper.training.vocabulary import learn_new_rows

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["TaggedSplit", "check_tag_map", "load_tagged_split", "train_tagger_run"]


@dataclass(frozen=True)
class TaggedSplit:
    sentences: list[list[str]]
    tags: list[list[str]]


def load_tagged_split(ctx: Context, dataset_version_id: int, split: str) -> TaggedSplit:
    """The tagged sentences of one split (sentences without tags are skipped).

    Raises:
        InvalidInput: a sentence whose tokens and tags differ in length.
    """
    table = read_dataset_rows(ctx, dataset_version_id, split)
    if "tokens" not in table.column_names:
        return TaggedSplit([], [])
    sentences, tags = [], []
    for row_id, words, row_tags in zip(table.column("row_id").to_pylist(), table.column("tokens").to_pylist(),
                                       table.column("tags").to_pylist(), strict=True):
        if not words or not row_tags:
            continue
        if len(words) != len(row_tags):
            raise InvalidInput(f"Row {row_id} of the {split} split has {len(words)} tokens but {len(row_tags)} tags.",
                               hint="Fix the CoNLL source and create a new dataset version.")
        sentences.append(list(words))
        tags.append(list(row_tags))
    return TaggedSplit(sentences, tags)


def check_tag_map(data_tags: Sequence[str], declared: Sequence[str] | None,
                  splits: dict[str, TaggedSplit]) -> list[str]:
    """The tagger's tags: the declared map (``config.labels``) when there is one, else
    the data's.

    Raises:
        InvalidInput: a split uses a tag the declared map lacks (names it, the split and
            how many tokens carry it).
    """
    if declared is None:
        return list(data_tags)
    allowed = set(declared)
    for name, split in splits.items():
        missing = sorted({t for row in split.tags for t in row if t not in allowed})
        if missing:
            count = sum(1 for row in split.tags for t in row if t not in allowed)
            raise InvalidInput(
                f"The {name} split has {count} token(s) tagged {', '.join(map(repr, missing))}, "
                f"which the label map ({', '.join(declared)}) does not contain.",
                hint="Add the tag(s) to 'labels' in the config, or fix those rows in a new dataset version.")
    return list(declared)


def train_tagger_run(ctx: Context, job: JobHandle, run: Run) -> tuple[dict[str, Any], str]:
    """Train, evaluate and store the tagger of a token-classification run.

    Returns:
        The run's metrics (``train``, and per split entity-level ``precision``,
        ``recall``, ``f1``, ``per_type``, ``report`` with the token-level ``token``
        report) and the stored model's digest.
    """
    config = run.train_config
    reporter = Reporter(job, ctx.db, run.id)
    reporter.progress(0.0, "reading the dataset version", force=True)
    tags = check_taggable(ctx, run.dataset_version_id)
    splits = {name: load_tagged_split(ctx, run.dataset_version_id, name) for name in ("train", "dev", "test")}
    train, dev = splits["train"], splits["dev"]
    job.log("sentences: " + ", ".join(f"{n} {len(s.sentences)}" for n, s in splits.items()) + f"; {len(tags)} tags")
    tags = check_tag_map(tags, config.labels, splits)
    check_dev_for_early_stopping(config, run, has_dev=bool(dev.sentences))

    seed_everything(config.seed)
    model, tokenizer = TokenTagger.from_base(Path(run.base_model), tags, dropout=config.dropout,
                                             attention_dropout=config.attention_dropout,
                                             head_dropout=config.head_dropout, max_length=config.max_length)
    tokenizer, extension = extend_for_run(job, config, model.encoder, tokenizer,
                                          [" ".join(words) for words in train.sentences])
    checkpoints = Checkpointing(ctx, job, run)

    def evaluate_dev(step: int) -> float | None:
        if not dev.sentences:
            return None
        m = entity_metrics(dev.tags, predict_tags(model, tokenizer, dev.sentences, max_length=config.max_length,
                                                  batch_size=config.eval_batch_size), tags)
        point = {"step": step, "accuracy": m["token"]["accuracy"], "macro_f1": m["token"]["macro_f1"], "f1": m["f1"]}
        checkpoints.dev_curve.append(point)
        record_run_points(ctx.db, run.id, step, {"dev_entity_f1": m["f1"], "dev_accuracy": point["accuracy"]})
        job.log(f"step {step}: dev entity F1 {m['f1']:.4f}, token accuracy {point['accuracy']:.4f}")
        # Early stopping watches entity F1 (what NER is judged on) unless accuracy was asked.
        return float(point["accuracy"] if config.early_stopping_metric == "accuracy" else m["f1"])

    with learn_new_rows(model.encoder, extension):
        result = train_token_tagger(model, tokenizer, train.sentences, train.tags, config, on_step=reporter.step,
                                    should_stop=lambda: job.cancel_requested, on_eval=evaluate_dev,
                                    on_checkpoint=checkpoints.save, resume=checkpoints.resume)
    check_finished_training(job, config, result)

    metrics: dict[str, Any] = {"train": train_metrics(result, len(train.sentences), checkpoints.dev_curve,
                                                      vocabulary=extension)}
    for offset, name in ((3, "dev"), (6, "test")):
        split = splits[name]
        if split.sentences:
            reporter.progress(TRAIN_SHARE + offset, f"evaluating on {name}", force=True)
            predicted = predict_tags(model, tokenizer, split.sentences, max_length=config.max_length,
                                     batch_size=config.eval_batch_size)
            metrics[name] = {**entity_metrics(split.tags, predicted, tags), "sentences": len(split.sentences)}
            job.log(f"{name}: entity F1 {metrics[name]['f1']:.4f} (P {metrics[name]['precision']:.4f}, "
                    f"R {metrics[name]['recall']:.4f}) on {len(split.sentences)} sentences")
        job.check_cancelled()

    reporter.progress(98.0, "storing the model", force=True)
    digest = store_model_folder(ctx, job, run, lambda folder: model.save(folder, tokenizer), checkpoints)
    return metrics, digest
