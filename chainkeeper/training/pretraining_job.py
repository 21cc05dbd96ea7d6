"""The ``train`` job of a pre-training run: continue a base model, or build one from
scratch with a tokenizer trained on the corpus, on a dataset version's texts; score the
dev and test texts by loss and perplexity; store the model folder.

Called by ``jobs.run_training_job`` for runs whose task is ``masked-lm`` or
``causal-lm``; it shares the classifier's checkpoints, resume, progress, curves and
model storage. The stored folder is a plain Hugging Face model: a later run names it
as its base model to fine-tune.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainkeeper.core.jobs import JobHandle
from chainkeeper.data import read_dataset_rows
from chainkeeper.training.jobs import (
    TRAIN_SHARE,
    Checkpointing,
    Reporter,
    check_dev_for_early_stopping,
    check_finished_training,
    store_model_folder,
    train_metrics,
)
from chainkeeper.training.loop import seed_everything
from chainkeeper.training.pretraining import (
    Objective,
    build_scratch_model,
    build_tokenizer,
    evaluate_language_model,
    load_language_model,
    save_language_model,
    train_language_model,
)
from chainkeeper.training.runs import Run, check_corpus, record_run_points

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from chainkeeper.core.context import Context

__all__ = ["load_texts", "pretrain_run"]

# Where a from-scratch run keeps its trained tokenizer, beside the checkpoint: a resumed
# attempt must reuse the vocabulary its checkpoint's embeddings were trained with.
TOKENIZER_FOLDER = "tokenizer"


def load_texts(ctx: Context, dataset_version_id: int, split: str) -> list[str]:
    """The non-empty texts of one split (labels, if any, are ignored)."""
    return [t for t in read_dataset_rows(ctx, dataset_version_id, split).column("text").to_pylist() if t and t.strip()]


def pretrain_run(ctx: Context, job: JobHandle, run: Run) -> tuple[dict[str, Any], str]:
    """Pre-train, evaluate and store the language model of a pre-training run.

    Returns:
        The run's metrics (``train``, and per split ``loss``, ``perplexity``, ``texts``,
        ``tokens``) and the stored model folder's digest.
    """
    from transformers import AutoTokenizer

    config = run.train_config
    objective: Objective = "causal-lm" if run.task == "causal-lm" else "masked-lm"
    reporter = Reporter(job, ctx.db, run.id)
    reporter.progress(0.0, "reading the dataset version", force=True)
    check_corpus(ctx, run.dataset_version_id)
    texts = {name: load_texts(ctx, run.dataset_version_id, name) for name in ("train", "dev", "test")}
    job.log("texts: " + ", ".join(f"{n} {len(t)}" for n, t in texts.items()) + f"; objective {objective}")
    check_dev_for_early_stopping(config, run, has_dev=bool(texts["dev"]))
    checkpoints = Checkpointing(ctx, job, run)

    seed_everything(config.seed)
    if config.from_scratch is not None:
        saved = checkpoints.workdir / TOKENIZER_FOLDER
        if checkpoints.resume is not None and saved.is_dir():
            tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(saved, local_files_only=True)
        else:
            tokenizer = build_tokenizer(texts["train"], config.from_scratch.tokenizer, config.from_scratch.vocab_size,
                                        config.max_length)
            tokenizer.save_pretrained(saved)
        job.log(f"trained a {config.from_scratch.tokenizer} tokenizer of {len(tokenizer)} tokens on the corpus")
        seed_everything(config.seed)  # the model's initialisation does not depend on the tokenizer's path
        model = build_scratch_model(tokenizer, objective, config.from_scratch, config.max_length)
    else:
        model, tokenizer = load_language_model(Path(run.base_model), objective, dropout=config.dropout)
    job.log(f"model: {type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} parameters")

    def score(split_texts: list[str]) -> dict[str, Any]:
        return evaluate_language_model(model, tokenizer, split_texts, objective=objective,
                                       max_length=config.max_length, mlm_probability=config.mlm_probability,
                                       batch_size=config.eval_batch_size, seed=config.seed)

    def evaluate_dev(step: int) -> float | None:
        if not texts["dev"]:
            return None
        m = score(texts["dev"])
        checkpoints.dev_curve.append({"step": step, "loss": m["loss"], "perplexity": m["perplexity"]})
        record_run_points(ctx.db, run.id, step, {"dev_loss": m["loss"], "dev_perplexity": m["perplexity"]})
        job.log(f"step {step}: dev loss {m['loss']:.4f}, perplexity {m['perplexity']:.2f}")
        return -float(m["loss"])  # early stopping wants higher-is-better

    result = train_language_model(model, tokenizer, texts["train"], config, objective, on_step=reporter.step,
                                  should_stop=lambda: job.cancel_requested, on_eval=evaluate_dev,
                                  on_checkpoint=checkpoints.save, resume=checkpoints.resume)
    check_finished_training(job, config, result)

    metrics: dict[str, Any] = {"train": train_metrics(result, len(texts["train"]), checkpoints.dev_curve)}
    for offset, name in ((3, "dev"), (6, "test")):
        if texts[name]:
            reporter.progress(TRAIN_SHARE + offset, f"evaluating on {name}", force=True)
            metrics[name] = score(texts[name])
            job.log(f"{name}: loss {metrics[name]['loss']:.4f}, perplexity {metrics[name]['perplexity']:.2f} "
                    f"on {metrics[name]['texts']} texts")
        job.check_cancelled()

    reporter.progress(98.0, "storing the model", force=True)
    digest = store_model_folder(ctx, job, run, lambda folder: save_language_model(model, tokenizer, folder),
                                checkpoints)
    return metrics, digest
