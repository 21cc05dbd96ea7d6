"""Test accuracy of a fine-tuned MiniLM on a text,label dataset, resumable.

Trains ``train_classifier`` (our loop, no store, no job) on the whole ``train.csv`` of a
dataset under ``../shared/datasets`` for several epochs, scores ``test.csv`` after each
epoch (printed for the curve; the reported figure is the last epoch's, fixed in advance,
never the best one) and prints wall time, settings and the classic per-class report.

    python benchmarks/train_accuracy.py financial_sentiment --epochs 4
    python benchmarks/train_accuracy.py banking77 --epochs 5 --lr 1.5e-4 --schedule cosine

Resumable: the loop's checkpoint goes to ``--checkpoint-dir`` (default
``/tmp/chainkeeper-bench/<dataset>``) at every epoch's end and every 100 steps; running
the same command again continues from it (a checkpoint of another config is ignored).
Other processes on the machine slow every figure: the load average is printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from _common import datasets_dir, load_average, read_csv  # noqa: E402  (benchmarks/ is the script's folder)

from chainkeeper.core.settings import default_base_model
from chainkeeper.training.checkpoints import load_checkpoint, remove_checkpoint, save_checkpoint
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.evaluation import classification_metrics, format_report
from chainkeeper.training.loop import StepReport, predict_labels, seed_everything, train_classifier
from chainkeeper.training.model import ClassifierMeta, TextClassifier


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="folder under the datasets dir with train.csv and test.csv")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--head-lr-multiplier", type=float, default=20.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--schedule", choices=["linear", "cosine", "constant"], default="cosine")
    parser.add_argument("--warmup", type=float, default=0.06)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 on a shared, busy machine: no threads waiting on each other)")
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    folder = datasets_dir() / args.dataset
    if not (folder / "train.csv").is_file() or not (folder / "test.csv").is_file():
        print(f"{folder} lacks train.csv/test.csv. Set CHAINKEEPER_DATASETS_DIR to the folder holding "
              f"{args.dataset}/.", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    workdir = args.checkpoint_dir or Path("/tmp/chainkeeper-bench") / args.dataset
    config = TrainConfig(epochs=args.epochs, learning_rate=args.lr, head_lr_multiplier=args.head_lr_multiplier,
                         batch_size=args.batch_size, max_length=args.max_length, schedule=args.schedule,
                         warmup_ratio=args.warmup, dropout=args.dropout, seed=args.seed,
                         checkpoint_every_steps=100, log_every_steps=50)
    train_texts, train_labels = read_csv(folder / "train.csv")
    test_texts, test_labels = read_csv(folder / "test.csv")
    label_names = sorted(set(train_labels))
    index = {name: i for i, name in enumerate(label_names)}
    print(f"{args.dataset}: {len(train_texts)} train rows, {len(test_texts)} test rows, {len(label_names)} labels")
    print(f"base model {default_base_model()}\n{load_average()}, torch threads {torch.get_num_threads()}")
    print(f"config: {config.model_dump(exclude={'labels', 'class_weights'})}", flush=True)

    seed_everything(config.seed)
    model, tokenizer = TextClassifier.from_base(
        default_base_model(), ClassifierMeta(labels=label_names, pooling=config.pooling, max_length=config.max_length),
        dropout=config.dropout)
    resume = load_checkpoint(workdir)
    if resume is not None and TrainConfig(**resume["config"]) != config:
        print(f"ignoring the checkpoint in {workdir}: it was written with another config")
        resume = None
    if resume is not None:
        print(f"resuming from step {resume['step']} (epoch {resume['epoch'] + 1})")
    test_curve: list[tuple[int, float]] = list(resume.get("test_curve", [])) if resume else []
    started = time.perf_counter()
    prior_s = float(resume.get("wall_s", 0.0)) if resume else 0.0

    def report(r: StepReport) -> None:
        print(f"  step {r.step}/{r.total_steps} epoch {r.epoch + 1} loss {r.loss:.4f} lr {r.learning_rate:.2e} "
              f"{r.samples_per_s:.0f} samples/s {prior_s + time.perf_counter() - started:.0f}s", flush=True)

    def checkpoint(state: dict) -> None:
        if state["batch_in_epoch"] == 0:  # an epoch's end: score test for the curve
            model.eval()
            predicted = predict_labels(model, tokenizer, test_texts, batch_size=config.eval_batch_size)
            model.train()
            acc = classification_metrics(test_labels, predicted, label_names)["accuracy"]
            test_curve.append((state["epoch"], acc))
            print(f"  after epoch {state['epoch']}: test accuracy {acc:.4f} ({load_average()})", flush=True)
        state["test_curve"] = list(test_curve)
        state["wall_s"] = prior_s + time.perf_counter() - started
        save_checkpoint(workdir, state)

    result = train_classifier(model, tokenizer, train_texts, [index[y] for y in train_labels], config,
                              on_step=report, on_checkpoint=checkpoint, resume=resume)
    predicted = predict_labels(model, tokenizer, test_texts, batch_size=config.eval_batch_size)
    metrics = classification_metrics(test_labels, predicted, label_names)
    wall = prior_s + time.perf_counter() - started
    print(f"\n{args.dataset} test ({len(test_texts)} rows): accuracy {metrics['accuracy']:.4f}, "
          f"macro-F1 {metrics['macro_f1']:.4f}")
    print(f"trained {result.steps} steps, {config.epochs} epochs, wall {wall:.0f}s (this process "
          f"{result.seconds:.0f}s, {result.samples_per_s:.1f} samples/s"
          + (f", resumed from step {result.resumed_from_step}" if result.resumed_from_step else "") + ")")
    print("test accuracy by epoch: " + ", ".join(f"{e}: {a:.4f}" for e, a in test_curve))
    if len(label_names) <= 10:
        print(format_report(metrics, digits=4))
    print(load_average() + " — the machine is shared; other processes slow these timings")
    remove_checkpoint(workdir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
