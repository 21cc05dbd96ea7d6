"""The ``train`` job: train, evaluate and store the model of one run.

``run_training_job`` is the handler the chain's job table (``chainkeeper.chain.jobs``)
registers for ``train``. It is the I/O edge of training: it records the run's reproducibility record,
reads the dataset version, builds the model, hands plain lists to the loop (which knows
nothing of stores or jobs), scores the dev and test splits, stores the model folder in
the artefact store and writes the outcome on the run. The worker records the job's own
end state from what this function returns or raises.

The task decides the model and the scores: sequence classification here, multi-label
in ``multilabel``, token classification in ``tagging_job``, masked/causal language
modelling in ``pretraining_job``; all share ``Checkpointing``, ``Reporter`` and
``store_model_folder``.

Importing this module loads no torch (the job table imports it in every process): the
loop, the model and the task trainers are imported when a job runs.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Registers every stage's tables: a worker process that imports only this module must still
# resolve the runs table's foreign key to dataset_versions when it flushes a run.
import chainkeeper.core.schema  # noqa: F401
from chainkeeper.core.errors import InvalidInput, JobCancelled
from chainkeeper.core.jobs import JobHandle
from chainkeeper.data import get_dataset_version, read_dataset_rows
from chainkeeper.training.calibration import (
    calibration_report,
    length_bucket,
    slice_metrics,
)
from chainkeeper.training.checkpoints import (
    load_checkpoint,
    remove_checkpoint,
    run_folder,
    save_checkpoint,
)
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.evaluation import classification_metrics, language_metrics
from chainkeeper.training.reproducibility import build_record
from chainkeeper.training.runs import (
    LANGUAGE_MODEL_TASKS,
    TASK_TOKEN_CLASSIFICATION,
    Run,
    check_trainable,
    clear_run_points,
    fail_run,
    finish_run,
    mark_run_running,
    record_reproducibility,
    record_run_points,
)

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.core.db import Database
    from chainkeeper.training.loop import StepReport, TrainResult
    from chainkeeper.training.model import TextClassifier
    from chainkeeper.training.vocabulary import VocabularyExtension

# Share of the progress bar given to training; evaluation and storing take the rest.
TRAIN_SHARE = 90.0
# At most this many progress writes per second: a tiny model takes hundreds of steps a
# second, and each write is a transaction the API and other workers wait behind.
PROGRESS_WRITES_PER_S = 2.0
# Written into the model folder: a saved model carries the config that made it.
RUN_FILE = "chainkeeper_run.json"


@dataclass(frozen=True)
class Split:
    texts: list[str]
    labels: list[str]
    groups: list[str] | None = None  # each row's value of the declared slice column
    group_name: str | None = None


def load_split(ctx: Context, dataset_version_id: int, split: str, *, slice_column: str | None = None) -> Split:
    """The labelled rows of one split of a dataset version (unlabelled rows are skipped:
    they await annotation and can neither train nor score a model).

    Args:
        slice_column: a metadata column whose values group the rows for per-slice
            metrics; ignored when the version has no such column.
    """
    table = read_dataset_rows(ctx, dataset_version_id, split)
    texts, labels = table.column("text").to_pylist(), table.column("label").to_pylist()
    keep = [i for i, y in enumerate(labels) if y]
    groups = None
    if slice_column is not None and slice_column in table.column_names:
        values = table.column(slice_column).to_pylist()
        groups = ["(missing)" if values[i] is None else str(values[i]) for i in keep]
    return Split(texts=[texts[i] for i in keep], labels=[labels[i] for i in keep], groups=groups,
                 group_name=slice_column if groups is not None else None)


def evaluate_split(model: TextClassifier, tokenizer: Any, split: Split, *, batch_size: int,
                   full: bool = False) -> dict[str, Any]:
    """Predict every row of a split and score the predictions against its labels.

    Args:
        full: also measure calibration (ECE, reliability bins) and metrics per slice
            (``split.groups`` when the config declared a slice column, and text-length
            buckets always); the dev curve during training skips these.
    """
    from chainkeeper.training.loop import (
        predict_labels,  # torch: loaded when a model is scored
    )

    if not full:
        predicted = predict_labels(model, tokenizer, split.texts, batch_size=batch_size)
        return classification_metrics(split.labels, predicted, model.meta.labels)
    model.eval()
    probs = model.predict_proba(tokenizer, list(split.texts), batch_size=batch_size)  # (n, n_labels)
    confidence, best = probs.max(dim=-1)
    predicted = [model.meta.labels[i] for i in best.tolist()]
    metrics = classification_metrics(split.labels, predicted, model.meta.labels)
    metrics["calibration"] = calibration_report(
        confidence.tolist(), [p == t for p, t in zip(predicted, split.labels, strict=True)])
    slices = {"text length": slice_metrics(split.labels, predicted, [length_bucket(t) for t in split.texts],
                                           model.meta.labels)}
    if split.groups is not None:
        slices[split.group_name or "group"] = slice_metrics(split.labels, predicted, split.groups,
                                                            model.meta.labels)
    metrics["slices"] = slices
    metrics["by_language"] = language_metrics(split.texts, split.labels, predicted)
    return metrics


class Reporter:
    """Turns the loop's step reports into job progress (throttled), log lines and curve
    points of the run."""

    def __init__(self, job: JobHandle, db: Database, run_id: int) -> None:
        self.job = job
        self.db = db
        self.run_id = run_id
        self.last_write = 0.0

    def step(self, report: StepReport) -> None:
        line = (f"step {report.step}/{report.total_steps} epoch {report.epoch + 1} loss {report.loss:.4f} "
                f"lr {report.learning_rate:.2e} {report.samples_per_s:.1f} samples/s")
        self.job.log(line)
        record_run_points(self.db, self.run_id, report.step, {
            "loss": report.loss, "learning_rate": report.learning_rate, "samples_per_s": report.samples_per_s})
        self.progress(TRAIN_SHARE * report.step / report.total_steps, line, force=report.step == report.total_steps)

    def progress(self, percent: float, message: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_write >= 1.0 / PROGRESS_WRITES_PER_S:
            self.job.progress(percent, message)
            self.last_write = now


def run_training_job(ctx: Context, job: JobHandle) -> dict[str, Any]:
    """Train, evaluate and store the model of the run named by ``job.params["run_id"]``.

    Args:
        ctx: the worker's context (settings, store, artefacts).
        job: the job handle: params, progress, log, cancel flag.

    Returns:
        ``{"run_id", "model_artifact", "metrics": {"dev"?: {accuracy, macro_f1}, "test"?: ...}}``.

    Raises:
        JobCancelled: a cancel was requested; the run is marked ``cancelled``.
        InvalidInput, NotFound, ChainkeeperError: the run is marked ``failed`` with the
            message, and the error is re-raised for the worker to record.
    """
    try:
        run_id = int(job.params["run_id"])
    except (KeyError, TypeError, ValueError):
        raise InvalidInput(f"A train job needs an integer 'run_id' parameter, got {job.params!r}.") from None
    run = mark_run_running(ctx.db, run_id)
    job.log(f"run {run.id} ({run.task}): dataset version {run.dataset_version_id}, base model {run.base_model}")
    try:
        job.check_cancelled()
        _record_reproducibility(ctx, run)
        metrics, digest = _train_evaluate_store(ctx, job, run)
    except BaseException as exc:
        cancelled = isinstance(exc, JobCancelled)
        error = None if cancelled else (str(exc) or type(exc).__name__)
        fail_run(ctx.db, run.id, cancelled=cancelled, error=error)
        raise
    finish_run(ctx.db, run.id, metrics=metrics, model_artifact=digest)
    summary = {split: headline_metrics(m) for split, m in metrics.items() if split in ("dev", "test")}
    return {"run_id": run.id, "model_artifact": digest, "metrics": summary}


# The numbers of a split that summarise it, whichever the task: accuracy and macro-F1
# (classification), entity-level f1/precision/recall (tagging), loss and perplexity (LM).
HEADLINE_KEYS = ("accuracy", "macro_f1", "f1", "precision", "recall", "loss", "perplexity")


def headline_metrics(split_metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of one split's metrics (see ``HEADLINE_KEYS``)."""
    return {k: split_metrics[k] for k in HEADLINE_KEYS if k in split_metrics}


def _threads(ctx: Context) -> int:
    return ctx.settings.torch_threads or os.cpu_count() or 1


def _record_reproducibility(ctx: Context, run: Run) -> None:
    version = get_dataset_version(ctx.db, run.dataset_version_id)
    record_reproducibility(ctx.db, run.id, build_record(run.train_config, dataset_hash=version.content_hash,
                                                        torch_threads=_threads(ctx)))


def _train_evaluate_store(ctx: Context, job: JobHandle, run: Run) -> tuple[dict[str, Any], str]:
    """Run the task the run was started for (``run.task``, chosen from the data)."""
    import torch

    torch.set_num_threads(_threads(ctx))
    if run.task == TASK_TOKEN_CLASSIFICATION:
        from chainkeeper.training.tagging_job import train_tagger_run

        return train_tagger_run(ctx, job, run)
    if run.task in LANGUAGE_MODEL_TASKS:
        from chainkeeper.training.pretraining_job import pretrain_run

        return pretrain_run(ctx, job, run)
    if run.train_config.multi_label_separator is not None:
        from chainkeeper.training.multilabel import train_multilabel_run

        return train_multilabel_run(ctx, job, run)
    return _train_classifier_run(ctx, job, run)


class Checkpointing:
    """A run's checkpoint folder: what to resume from, and how to save (with the extra
    state a task keeps, such as its dev curve)."""

    def __init__(self, ctx: Context, job: JobHandle, run: Run) -> None:
        self.job = job
        self.workdir = run_folder(ctx.settings.home, run.id)
        resume = load_checkpoint(self.workdir)
        if resume is not None and TrainConfig(**resume["config"]) != run.train_config:
            # A checkpoint of another config cannot continue this one: start from step 0.
            job.log("ignoring a checkpoint written with a different config; starting from step 0")
            resume = None
        if resume is not None:
            job.log(f"resumed from step {resume['step']} (checkpoint of attempt {resume.get('attempt', '?')})")
        self.resume = resume
        self.dev_curve: list[dict[str, float]] = list(resume.get("dev_curve", [])) if resume else []
        clear_run_points(ctx.db, run.id, after_step=int(resume["step"]) if resume is not None else -1)

    def save(self, state: dict[str, Any]) -> None:
        """The loop's ``on_checkpoint``: write the state with the dev curve so far."""
        state["dev_curve"] = list(self.dev_curve)
        state["attempt"] = self.job.job.attempts
        save_checkpoint(self.workdir, state)
        self.job.log(f"checkpoint at step {state['step']}")


def check_finished_training(job: JobHandle, config: TrainConfig, result: TrainResult) -> None:
    """After the loop: stop on a cancel, log an early stop and the speed."""
    job.check_cancelled()  # the loop stopped early because a cancel was asked
    if result.stop_reason == "early_stopping":
        job.log(f"early stopping at step {result.steps}: dev {config.early_stopping_metric} did not improve "
                f"for {config.early_stopping_patience} evaluations")
    job.log(f"trained {result.steps} steps in {result.seconds:.1f}s ({result.samples_per_s:.1f} samples/s)")


def store_model_folder(ctx: Context, job: JobHandle, run: Run, write: Callable[[Path], Any],
                       checkpoints: Checkpointing) -> str:
    """Write the trained model into a folder (``write(folder)``), add the run file, put
    the folder in the artefact store and drop the checkpoint it supersedes.

    Returns:
        The folder's manifest digest.
    """
    with tempfile.TemporaryDirectory(prefix="chainkeeper-run-") as tmp:
        folder = Path(tmp) / "model"
        write(folder)
        (folder / RUN_FILE).write_text(json.dumps({
            "run_id": run.id, "task": run.task, "dataset_version_id": run.dataset_version_id,
            "base_model": run.base_model, "config": run.config,
        }, indent=2, sort_keys=True), encoding="utf-8")
        digest = ctx.artifacts.put_tree(folder)
    job.log(f"model stored as {digest[:12]}")
    remove_checkpoint(checkpoints.workdir)  # the stored model supersedes it; a failed run keeps its last one
    return digest


def _train_classifier_run(ctx: Context, job: JobHandle, run: Run) -> tuple[dict[str, Any], str]:
    from chainkeeper.training.loop import seed_everything, train_classifier
    from chainkeeper.training.model import ClassifierMeta, TextClassifier
    from chainkeeper.training.vocabulary import learn_new_rows

    config = run.train_config
    reporter = Reporter(job, ctx.db, run.id)

    reporter.progress(0.0, "reading the dataset version", force=True)
    label_names = check_trainable(ctx, run.dataset_version_id)
    train = load_split(ctx, run.dataset_version_id, "train")
    dev = load_split(ctx, run.dataset_version_id, "dev", slice_column=config.slice_column)
    test = load_split(ctx, run.dataset_version_id, "test", slice_column=config.slice_column)
    job.log(f"rows: train {len(train.texts)}, dev {len(dev.texts)}, test {len(test.texts)}; "
            f"{len(label_names)} labels")

    label_names = check_label_map(label_names, config.labels, {"train": train, "dev": dev, "test": test})
    check_dev_for_early_stopping(config, run, has_dev=bool(dev.texts))

    seed_everything(config.seed)  # before from_base: the head's initialisation is seeded too
    meta = ClassifierMeta(labels=label_names, pooling=config.pooling, max_length=config.max_length)
    model, tokenizer = TextClassifier.from_base(Path(run.base_model), meta, dropout=config.dropout,
                                                attention_dropout=config.attention_dropout,
                                                head_dropout=config.head_dropout)
    tokenizer, extension = extend_for_run(job, config, model.encoder, tokenizer, train.texts)
    checkpoints = Checkpointing(ctx, job, run)

    def evaluate_dev(step: int) -> float | None:
        if not dev.texts:
            return None
        m = evaluate_split(model, tokenizer, dev, batch_size=config.eval_batch_size)
        checkpoints.dev_curve.append({"step": step, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]})
        record_run_points(ctx.db, run.id, step, {"dev_accuracy": m["accuracy"], "dev_macro_f1": m["macro_f1"]})
        job.log(f"step {step}: dev accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}")
        return float(m[config.early_stopping_metric])

    index = {name: i for i, name in enumerate(label_names)}
    with learn_new_rows(model.encoder, extension):
        result = train_classifier(
            model, tokenizer, train.texts, [index[y] for y in train.labels], config,
            on_step=reporter.step, should_stop=lambda: job.cancel_requested, on_eval=evaluate_dev,
            on_checkpoint=checkpoints.save, resume=checkpoints.resume,
        )
    check_finished_training(job, config, result)

    metrics: dict[str, Any] = {"train": train_metrics(result, len(train.texts), checkpoints.dev_curve,
                                                      vocabulary=extension)}
    for name, split in (("dev", dev), ("test", test)):
        if split.texts:
            reporter.progress(TRAIN_SHARE + (3 if name == "dev" else 6), f"evaluating on {name}", force=True)
            metrics[name] = evaluate_split(model, tokenizer, split, batch_size=config.eval_batch_size, full=True)
            job.log(f"{name}: accuracy {metrics[name]['accuracy']:.4f}, macro-F1 {metrics[name]['macro_f1']:.4f} "
                    f"on {len(split.texts)} rows")
        job.check_cancelled()

    reporter.progress(98.0, "storing the model", force=True)
    digest = store_model_folder(ctx, job, run, lambda folder: model.save(folder, tokenizer), checkpoints)
    return metrics, digest


def check_dev_for_early_stopping(config: TrainConfig, run: Run, *, has_dev: bool) -> None:
    """Raises InvalidInput when early stopping is asked for and there is no dev split."""
    if config.early_stopping_patience is not None and not has_dev:
        raise InvalidInput(
            f"early_stopping_patience={config.early_stopping_patience} needs a dev split, and dataset version "
            f"{run.dataset_version_id} has no labelled dev rows.",
            hint="Create a dataset version with a dev split, or unset early_stopping_patience.",
        )


def check_label_map(data_labels: Sequence[str], declared: Sequence[str] | None,
                    splits: dict[str, Split]) -> list[str]:
    """The head's labels: the declared label map when there is one, else the data's.

    Args:
        data_labels: the labels the dataset version has.
        declared: ``config.labels``, or None.
        splits: the splits read, by name, to name where an unknown label occurs.

    Returns:
        The labels in output order.

    Raises:
        InvalidInput: a row's label is missing from the declared map (names the label,
            the split and how many rows carry it).
    """
    if declared is None:
        return list(data_labels)
    allowed = set(declared)
    for name, split in splits.items():
        missing = sorted({y for y in split.labels if y not in allowed})
        if missing:
            count = sum(1 for y in split.labels if y not in allowed)
            raise InvalidInput(
                f"The {name} split has {count} row(s) labelled {', '.join(map(repr, missing))}, "
                f"which the label map ({', '.join(declared)}) does not contain.",
                hint="Add the label(s) to 'labels' in the config, or relabel those rows in a new dataset version.",
            )
    return list(declared)


def train_metrics(result: TrainResult, rows: int, dev_curve: Sequence[dict[str, float]], *,
                  vocabulary: VocabularyExtension | None = None) -> dict[str, Any]:
    """What a run stores about its training: rows, steps, speed, loss and dev curves, and
    the vocabulary extension when ``extend_vocab`` was on."""
    metrics = {
        "rows": rows, "steps": result.steps, "seconds": round(result.seconds, 3),
        "samples_per_s": round(result.samples_per_s, 2), "final_loss": result.final_loss,
        "loss_curve": [[step, loss] for step, loss in result.losses], "dev_curve": list(dev_curve),
        "stop_reason": result.stop_reason, "resumed_from_step": result.resumed_from_step,
    }
    if vocabulary is not None:
        metrics["vocabulary"] = vocabulary.record()
    return metrics


def extend_for_run(job: JobHandle, config: TrainConfig, encoder: Any, tokenizer: Any,
                   texts: Sequence[str]) -> tuple[Any, VocabularyExtension | None]:
    """Apply ``config.extend_vocab``: the tokenizer to train with, and what was added
    (None when the option is off). See ``training.vocabulary``."""
    if not config.extend_vocab:
        return tokenizer, None
    from chainkeeper.training.vocabulary import extend_vocabulary  # torch: loaded when a job runs

    extended, extension = extend_vocabulary(encoder, tokenizer, texts, seed=config.seed)
    if extension.added:
        job.log(f"vocabulary: added {len(extension.added)} characters the base read as [UNK] "
                f"({extension.unk_share_before:.1%} of training tokens were [UNK], "
                f"now {extension.unk_share_after:.1%})")
    return extended, extension
