"""The ``train`` job: fine-tune, evaluate and store the model of one run.

``run_training_job`` is the handler ``chainkeeper.core.jobs.HANDLERS`` names for
``train``. It is the I/O edge of training: it reads the dataset version, builds the
classifier, hands plain lists to ``train_classifier`` (which knows nothing of stores or
jobs), scores the dev and test splits with ``classification_metrics``, stores the model
folder in the artefact store and writes the outcome on the run. The worker records the
job's own end state from what this function returns or raises.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from chainkeeper.core.errors import InvalidInput, JobCancelled
from chainkeeper.core.jobs import JobHandle
from chainkeeper.training.evaluation import classification_metrics
from chainkeeper.training.loop import StepReport, TrainResult, predict_labels, seed_everything, train_classifier
from chainkeeper.training.model import ClassifierMeta, TextClassifier
from chainkeeper.training.runs import Run, check_trainable, fail_run, finish_run, mark_run_running

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

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


def load_split(ctx: Context, dataset_version_id: int, split: str) -> Split:
    """The labelled rows of one split of a dataset version (unlabelled rows are skipped:
    they await annotation and can neither train nor score a model)."""
    from chainkeeper.data.versions import read_dataset_rows

    table = read_dataset_rows(ctx, dataset_version_id, split)
    texts, labels = table.column("text").to_pylist(), table.column("label").to_pylist()
    keep = [i for i, y in enumerate(labels) if y]
    return Split(texts=[texts[i] for i in keep], labels=[labels[i] for i in keep])


def evaluate_split(model: TextClassifier, tokenizer: Any, split: Split, *, batch_size: int) -> dict[str, Any]:
    """Predict every row of a split and score the predictions against its labels."""
    predicted = predict_labels(model, tokenizer, split.texts, batch_size=batch_size)
    return classification_metrics(split.labels, predicted, model.meta.labels)


class _Reporter:
    """Turns the loop's step reports into job progress (throttled) and log lines."""

    def __init__(self, job: JobHandle) -> None:
        self.job = job
        self.last_write = 0.0

    def step(self, report: StepReport) -> None:
        line = (f"step {report.step}/{report.total_steps} epoch {report.epoch + 1} loss {report.loss:.4f} "
                f"lr {report.learning_rate:.2e} {report.samples_per_s:.1f} samples/s")
        self.job.log(line)
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
    job.log(f"run {run.id}: dataset version {run.dataset_version_id}, base model {run.base_model}")
    try:
        job.check_cancelled()
        metrics, digest = _train_evaluate_store(ctx, job, run)
    except BaseException as exc:
        cancelled = isinstance(exc, JobCancelled)
        error = None if cancelled else (str(exc) or type(exc).__name__)
        fail_run(ctx.db, run.id, cancelled=cancelled, error=error)
        raise
    finish_run(ctx.db, run.id, metrics=metrics, model_artifact=digest)
    summary = {split: {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
               for split, m in metrics.items() if split in ("dev", "test")}
    return {"run_id": run.id, "model_artifact": digest, "metrics": summary}


def _train_evaluate_store(ctx: Context, job: JobHandle, run: Run) -> tuple[dict[str, Any], str]:
    config = run.train_config
    torch.set_num_threads(ctx.settings.torch_threads or os.cpu_count() or 1)
    reporter = _Reporter(job)

    reporter.progress(0.0, "reading the dataset version", force=True)
    label_names = check_trainable(ctx, run.dataset_version_id)
    train = load_split(ctx, run.dataset_version_id, "train")
    dev = load_split(ctx, run.dataset_version_id, "dev")
    test = load_split(ctx, run.dataset_version_id, "test")
    job.log(f"rows: train {len(train.texts)}, dev {len(dev.texts)}, test {len(test.texts)}; "
            f"{len(label_names)} labels")

    seed_everything(config.seed)  # before from_base: the head's initialisation is seeded too
    meta = ClassifierMeta(labels=label_names, pooling=config.pooling, max_length=config.max_length)
    model, tokenizer = TextClassifier.from_base(Path(run.base_model), meta, dropout=config.dropout)

    dev_curve: list[dict[str, float]] = []

    def evaluate_dev(step: int) -> None:
        if dev.texts:
            m = evaluate_split(model, tokenizer, dev, batch_size=config.eval_batch_size)
            dev_curve.append({"step": step, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]})
            job.log(f"step {step}: dev accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}")

    index = {name: i for i, name in enumerate(label_names)}
    result = train_classifier(
        model, tokenizer, train.texts, [index[y] for y in train.labels], config,
        on_step=reporter.step, should_stop=lambda: job.cancel_requested, on_eval=evaluate_dev,
    )
    job.check_cancelled()  # the loop stopped early because a cancel was asked
    job.log(f"trained {result.steps} steps in {result.seconds:.1f}s ({result.samples_per_s:.1f} samples/s)")

    metrics: dict[str, Any] = {"train": _train_metrics(result, len(train.texts), dev_curve)}
    for name, split in (("dev", dev), ("test", test)):
        if split.texts:
            reporter.progress(TRAIN_SHARE + (3 if name == "dev" else 6), f"evaluating on {name}", force=True)
            metrics[name] = evaluate_split(model, tokenizer, split, batch_size=config.eval_batch_size)
            job.log(f"{name}: accuracy {metrics[name]['accuracy']:.4f}, macro-F1 {metrics[name]['macro_f1']:.4f} "
                    f"on {len(split.texts)} rows")
        job.check_cancelled()

    reporter.progress(98.0, "storing the model", force=True)
    with tempfile.TemporaryDirectory(prefix="chainkeeper-run-") as tmp:
        folder = model.save(Path(tmp) / "model", tokenizer)
        (folder / RUN_FILE).write_text(json.dumps({
            "run_id": run.id, "dataset_version_id": run.dataset_version_id, "base_model": run.base_model,
            "config": run.config,
        }, indent=2, sort_keys=True), encoding="utf-8")
        digest = ctx.artifacts.put_tree(folder)
    job.log(f"model stored as {digest[:12]}")
    return metrics, digest


def _train_metrics(result: TrainResult, rows: int, dev_curve: Sequence[dict[str, float]]) -> dict[str, Any]:
    return {
        "rows": rows, "steps": result.steps, "seconds": round(result.seconds, 3),
        "samples_per_s": round(result.samples_per_s, 2), "final_loss": result.final_loss,
        "loss_curve": [[step, loss] for step, loss in result.losses], "dev_curve": list(dev_curve),
    }
